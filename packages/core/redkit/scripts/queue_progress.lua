-- Record an active job's progress (only its lock holder may).
-- KEYS: 1 events; ARGV: 1 job key, 2 events maxlen, 3 job id, 4 token, 5 progress (JSON)
-- Returns 1, or 0 when the job is not active under this token.
local maxlen = tonumber(ARGV[2])
if not maxlen then
  return redis.error_reply('ERR queue_progress: bad arguments')
end
local st, tok = unpack(redis.call('HMGET', ARGV[1], 'st', 'tok'))
if st ~= 'active' or tok ~= ARGV[4] then
  return 0
end
redis.call('HSET', ARGV[1], 'prg', ARGV[5])
if maxlen > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'event', 'progress', 'id', ARGV[3],
    'progress', ARGV[5])
end
return 1
