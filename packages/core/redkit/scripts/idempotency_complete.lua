-- Store the response of a request in progress, only while the caller still holds its lease.
-- KEYS[1] the record; ARGV[1] lease token, ARGV[2] status, ARGV[3] headers (JSON),
-- ARGV[4] body (raw bytes), ARGV[5] retention ms
-- Returns 1 when stored (or already stored by this caller: a re-sent call changes nothing),
-- 0 when the lease is not the caller's (it expired and maybe another request took over).
local ttl = tonumber(ARGV[5])
if not ttl or ttl < 1 or not tonumber(ARGV[2]) then
  return redis.error_reply('ERR idempotency_complete: bad arguments')
end
local rec = redis.call('HMGET', KEYS[1], 'state', 'token')
if rec[2] ~= ARGV[1] then
  return 0
end
if rec[1] == 'd' then
  return 1
end
if rec[1] ~= 'p' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'd', 'status', ARGV[2], 'headers', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
