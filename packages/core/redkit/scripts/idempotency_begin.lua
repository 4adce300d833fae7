-- Begin a request carrying an Idempotency-Key: take the lease, or report who has the key.
-- KEYS[1] the record (a hash: state, fp, token; once done also status, headers, body)
-- ARGV[1] request fingerprint, ARGV[2] caller's lease token, ARGV[3] lease lifetime ms
-- Returns one of
--   {1}                          started: the lease is this caller's (a new record, or a re-sent
--                                begin finding its own token: then begin is safe to re-send)
--   {2, pttl}                    in progress under another token; pttl = ms left on its lease
--   {3, status, headers, body}   done: the stored response, to replay
--   {4}                          the record belongs to a request with another fingerprint
local lease = tonumber(ARGV[3])
if not lease or lease < 1 or ARGV[1] == '' or ARGV[2] == '' then
  return redis.error_reply('ERR idempotency_begin: bad arguments')
end
local rec = redis.call('HMGET', KEYS[1], 'state', 'fp', 'token')
local state = rec[1]
if not state then
  redis.call('HSET', KEYS[1], 'state', 'p', 'fp', ARGV[1], 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], lease)
  return {1}
end
if rec[2] ~= ARGV[1] then
  return {4}
end
if state == 'p' then
  if rec[3] == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], lease)
    return {1}
  end
  return {2, redis.call('PTTL', KEYS[1])}
end
local out = redis.call('HMGET', KEYS[1], 'status', 'headers', 'body')
return {3, out[1] or '', out[2] or '', out[3] or ''}
