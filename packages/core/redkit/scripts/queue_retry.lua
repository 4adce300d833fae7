-- Move failed jobs back to the queue with their attempts reset: the given ids, or else the
-- oldest `limit` failed jobs.
-- KEYS: 1 wait, 2 prioritized, 3 failed, 4 events, 5 marker, 6 meta
-- ARGV: 1 job key prefix, 2 events maxlen, 3 limit, then job ids (none: the oldest failed jobs)
-- Returns {moved, failed jobs left}.
-- include: queue_requeue

local maxlen, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
if not maxlen or not limit or limit < 1 then
  return redis.error_reply('ERR queue_retry: bad arguments')
end
local ids = {}
if #ARGV > 3 then
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[3], 0, limit - 1)
end
local moved = 0
for i = 1, #ids do
  local id = ids[i]
  local key = ARGV[1] .. id
  if redis.call('ZREM', KEYS[3], id) == 1 and redis.call('EXISTS', key) == 1 then
    redis.call('HDEL', key, 'err', 'stk', 'fon', 'atm', 'stc', 'tok', 'prg', 'cf')
    requeue(KEYS[1], KEYS[2], KEYS[6], key, id, false)
    if maxlen > 0 then
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', 'event', 'waiting', 'id', id)
    end
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('ZADD', KEYS[5], 0, '0')
end
return {moved, redis.call('ZCARD', KEYS[3])}
