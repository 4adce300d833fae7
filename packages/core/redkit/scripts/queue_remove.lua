-- Delete one job that is not running. A job scheduler whose pending run it is goes on to its
-- next slot; a job of a flow that had not ended leaves a notice for its parent (as cancelled,
-- 'removed': queue_notify.lua).
-- KEYS: 1 wait, 2 prioritized, 3 delayed, 4 completed, 5 failed, 6 events, 7 job schedulers,
--       8 meta, 9 cancelled, 10 waiting for children, 11 dead letters and flow notices, 12 marker
-- ARGV: 1 job key, 2 events maxlen, 3 job id
-- Returns 1 removed, 0 no such job, -1 the job is active (not removed).
local maxlen = tonumber(ARGV[2])
if not maxlen or #ARGV[3] == 0 or string.sub(ARGV[1], -#ARGV[3]) ~= ARGV[3] then
  return redis.error_reply('ERR queue_remove: bad arguments')
end
local prefix = string.sub(ARGV[1], 1, #ARGV[1] - #ARGV[3])
local events = KEYS[6]
-- include: queue_clock

-- include: queue_iterate
-- include: queue_requeue
-- include: queue_notify

local st, ord, ddk, par, ats = unpack(redis.call('HMGET', ARGV[1], 'st', 'ord', 'ddk', 'par',
  'ats'))
if not st then
  return 0
end
if st == 'active' then
  return -1
end
local id = ARGV[3]
if st == 'waiting' then
  redis.call('LREM', KEYS[1], 1, id)
elseif st == 'prioritized' then
  redis.call('ZREM', KEYS[2], (ord or '') .. id)
elseif st == 'delayed' then
  redis.call('ZREM', KEYS[3], (ord or '') .. id)
  moved_on(ARGV[1], KEYS[7], KEYS[3], KEYS[8])
elseif st == 'waiting_children' then
  redis.call('ZREM', KEYS[10], id)
elseif st == 'completed' then
  redis.call('ZREM', KEYS[4], id)
elseif st == 'failed' then
  redis.call('ZREM', KEYS[5], id)
elseif st == 'cancelled' then
  redis.call('ZREM', KEYS[9], id)
end
if st ~= 'completed' and st ~= 'failed' and st ~= 'cancelled'
    and notify({KEYS[1], KEYS[2], KEYS[8], KEYS[12], KEYS[10]}, prefix, KEYS[11], id, par, 'x',
      ats, 'removed') then
  redis.call('ZADD', KEYS[12], 0, '0') -- a worker of the queue sends the notice on
end
redis.call('DEL', ARGV[1])
local dkey = ddk and (string.sub(prefix, 1, -3) .. 'dd:' .. ddk)
if dkey and redis.call('GET', dkey) == id then
  redis.call('DEL', dkey) -- its dedup id is free again
end
event('removed', 'id', id)
return 1
