-- Extend the lease of a request in progress, only while the caller still holds it.
-- KEYS[1] the record; ARGV[1] lease token, ARGV[2] lease lifetime ms
-- Returns 1 when renewed, 0 when the lease is not the caller's (expired, taken over, done).
local lease = tonumber(ARGV[2])
if not lease or lease < 1 then
  return redis.error_reply('ERR idempotency_renew: bad lease')
end
local rec = redis.call('HMGET', KEYS[1], 'state', 'token')
if rec[1] == 'p' and rec[2] == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], lease)
  return 1
end
return 0
