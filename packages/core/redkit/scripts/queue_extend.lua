-- Renew the locks of a worker's active jobs, and its heartbeat.
-- KEYS: 1 active, 2 workers (sorted set), 3 this worker's info key
-- ARGV: 1 job key prefix, 2 lock ms, 3 worker id, 4 worker info (JSON), 5 heartbeat lifetime ms,
--       then pairs of job id, token
-- Returns one integer per job: 1 renewed, 0 the job is no longer ours.
local lock_ms, ttl = tonumber(ARGV[2]), tonumber(ARGV[5])
if not lock_ms or lock_ms <= 0 or not ttl or ttl <= 0 or ARGV[3] == '' or (#ARGV - 5) % 2 ~= 0 then
  return redis.error_reply('ERR queue_extend: bad arguments')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  local tok = redis.call('HGET', ARGV[1] .. id, 'tok')
  if tok == ARGV[i + 1] and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', now + lock_ms, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
redis.call('ZADD', KEYS[2], now, ARGV[3])
redis.call('SET', KEYS[3], ARGV[4], 'PX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
return out
