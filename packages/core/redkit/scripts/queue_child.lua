-- Record how children of flows ended in their parents (of one queue), sent on by a worker of
-- each child's queue from its notices (see queue_notify.lua for the rules).
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
-- include: queue_notify

local q = {KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6]}
local out = {}
for i = 0, n - 1 do
  local b = 4 + 7 * i
  out[#out + 1] = record_child(q, ARGV[1], ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3],
    ARGV[b + 4], ARGV[b + 5], ARGV[b + 6])
end
return out
