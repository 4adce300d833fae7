-- Delete up to `limit` ended jobs of one state (completed, failed or cancelled) that ended at
-- least `age` ms ago (Redis' clock), oldest first; run again while it removes jobs and reports
-- older ones left.
-- KEYS: 1 the state's sorted set (scored by the time each job ended), 2 events
-- ARGV: 1 job key prefix, 2 events maxlen, 3 age ms, 4 limit
-- Returns {removed, jobs left that are old enough}.
local maxlen, age, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if not maxlen or not age or age < 0 or not limit or limit < 1 then
  return redis.error_reply('ERR queue_clean: bad arguments')
end
local events = KEYS[2]
-- include: queue_clock
local before = now - age
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', before, 'LIMIT', 0, limit)
for i = 1, #ids do
  redis.call('DEL', ARGV[1] .. ids[i])
end
for i = 1, #ids, 1000 do
  redis.call('ZREM', KEYS[1], unpack(ids, i, math.min(i + 999, #ids)))
end
if #ids > 0 then
  event('cleaned', 'count', #ids)
end
return {#ids, redis.call('ZCOUNT', KEYS[1], '-inf', before)}
