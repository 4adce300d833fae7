-- Record how children of flows ended in their parents (of one queue), sent on by a worker of
-- each child's queue from its notices (queue_notify.lua). A parent waits ('waiting_children')
-- until every child is resolved: completed, or failed under the 'ignore' policy. A child that
-- fails under 'continue' puts its parent in line at once; under 'fail' (the default) the parent
-- comes to the queue marked 'cf' and its worker fails it without running it. A notice already
-- recorded (a re-sent one: same child, same attempt) changes nothing; one of a later attempt
-- (the child was retried) replaces the outcome the parent holds.
-- KEYS: 1 wait, 2 prioritized, 3 meta, 4 events, 5 marker, 6 waiting for children
-- ARGV: 1 job key prefix, 2 events maxlen, 3 notice count n, then per notice 7 arguments:
--   parent id, child index, outcome ('c', 'f' or 'x'), child attempt, payload (result JSON or
--   reason), policy ('f', 'i' or 'c'), the child's name for messages ('<queue>/<id>')
-- Returns per notice 1 recorded, 0 already recorded, -1 no such parent.
local maxlen, n = tonumber(ARGV[2]), tonumber(ARGV[3])
if not maxlen or not n or #ARGV ~= 3 + 7 * n then
  return redis.error_reply('ERR queue_child: bad arguments')
end
for i = 0, n - 1 do
  local b = 4 + 7 * i
  if ARGV[b] == '' or not tonumber(ARGV[b + 1]) or not string.match(ARGV[b + 2], '^[cfx]$')
      or not tonumber(ARGV[b + 3]) or not string.match(ARGV[b + 5], '^[fic]$') then
    return redis.error_reply('ERR queue_child: bad notice')
  end
end
local events = KEYS[4]
-- include: queue_clock
-- include: queue_requeue

local out = {}
local wake = false
for i = 0, n - 1 do
  local b = 4 + 7 * i
  local id, kind, ats, policy = ARGV[b], ARGV[b + 2], tonumber(ARGV[b + 3]), ARGV[b + 5]
  local key = ARGV[1] .. id
  local field = 'k:' .. ARGV[b + 1]
  local st, old = unpack(redis.call('HMGET', key, 'st', field))
  if not st then
    out[#out + 1] = -1 -- removed meanwhile (or deleted by its retention)
  elseif old and tonumber(string.match(old, '^[cfx](%d+):') or -1) >= ats then
    out[#out + 1] = 0
  else
    redis.call('HSET', key, field, kind .. ats .. ':' .. ARGV[b + 4])
    out[#out + 1] = 1
    if st == 'waiting_children' and not old then
      local ready = false
      if kind ~= 'c' and policy == 'f' then
        redis.call('HSET', key, 'cf', 'child ' .. ARGV[b + 6] .. ' ' ..
          (kind == 'f' and 'failed' or 'was cancelled') .. ': ' .. string.sub(ARGV[b + 4], 1, 1000))
        ready = true
      elseif kind ~= 'c' and policy == 'c' then
        redis.call('HINCRBY', key, 'dep', -1)
        ready = true
      else
        ready = redis.call('HINCRBY', key, 'dep', -1) <= 0
      end
      if ready then
        redis.call('ZREM', KEYS[6], id)
        requeue(KEYS[1], KEYS[2], KEYS[3], key, id, false)
        event('waiting', 'id', id)
        wake = true
      end
    end
  end
end
if wake then
  redis.call('ZADD', KEYS[5], 0, '0')
end
return out
