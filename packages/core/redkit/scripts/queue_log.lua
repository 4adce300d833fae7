-- Append a line to a running job's log (only its lock holder may), keeping the last `max` lines
-- in the job's own hash (fields 'lg:<n>', counted by 'lgn'): they go when the job goes.
-- KEYS: 1 job hash; ARGV: 1 token, 2 line, 3 most lines kept
-- Returns 1, or 0 when the job is not active under this token.
local max = tonumber(ARGV[3])
if not max or max < 1 then
  return redis.error_reply('ERR queue_log: bad arguments')
end
local st, tok = unpack(redis.call('HMGET', KEYS[1], 'st', 'tok'))
if st ~= 'active' or tok ~= ARGV[1] then
  return 0
end
local n = redis.call('HINCRBY', KEYS[1], 'lgn', 1)
redis.call('HSET', KEYS[1], 'lg:' .. n, ARGV[2])
if n > max then
  redis.call('HDEL', KEYS[1], 'lg:' .. (n - max))
end
return 1
