-- Make one delayed job due now: it goes to the back of the line (or among the prioritized jobs
-- by its priority) as if its delay had run out. A job scheduler whose pending run it is goes on
-- to its next slot.
-- KEYS: 1 wait, 2 prioritized, 3 delayed, 4 events, 5 job schedulers, 6 meta, 7 marker
-- ARGV: 1 job key, 2 events maxlen, 3 job id
-- Returns 1 promoted (waiting), 2 promoted (prioritized), 0 no such job, -1 the job is not
-- delayed (nothing changed).
local maxlen = tonumber(ARGV[2])
if not maxlen or #ARGV[3] == 0 or string.sub(ARGV[1], -#ARGV[3]) ~= ARGV[3] then
  return redis.error_reply('ERR queue_promote: bad arguments')
end
local prefix = string.sub(ARGV[1], 1, #ARGV[1] - #ARGV[3])
local events = KEYS[4]
-- include: queue_clock
-- include: queue_iterate
-- include: queue_requeue

local st, ord = unpack(redis.call('HMGET', ARGV[1], 'st', 'ord'))
if not st then
  return 0
end
if st ~= 'delayed' or redis.call('ZREM', KEYS[3], (ord or '') .. ARGV[3]) == 0 then
  return -1
end
moved_on(ARGV[1], KEYS[5], KEYS[3], KEYS[6])
requeue(KEYS[1], KEYS[2], KEYS[6], ARGV[1], ARGV[3], false)
redis.call('ZADD', KEYS[7], 0, '0') -- waiting workers look again
event('promoted', 'id', ARGV[3])
return redis.call('HGET', ARGV[1], 'st') == 'prioritized' and 2 or 1
