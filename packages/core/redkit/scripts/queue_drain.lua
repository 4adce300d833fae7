-- Delete up to `limit` jobs that wait (and, when asked, delayed ones, but for the pending
-- runs of job schedulers: unscheduling stops those); run again while it removes jobs and
-- reports jobs left.
-- A job of a flow leaves a notice for its parent (as cancelled, 'drained': queue_notify.lua).
-- KEYS: 1 wait, 2 prioritized, 3 delayed, 4 events, 5 dead letters and flow notices, 6 marker,
--       7 meta, 8 waiting for children
-- ARGV: 1 job key prefix, 2 events maxlen, 3 '1' to include delayed jobs, 4 limit, 5 pending
--       scheduler runs already passed over at the head of the delayed set (0 on the first call)
-- Returns {removed, jobs left to drain, scheduler runs passed over}: the caller passes the third
-- back, so runs that stay are never scanned again and the jobs behind them are reached.
local maxlen, limit, skip = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5] or '0')
if not maxlen or not limit or limit < 1 or not skip or skip < 0 then
  return redis.error_reply('ERR queue_drain: bad arguments')
end
local removed = 0
local noticed = false
local events = KEYS[4]
-- include: queue_clock
-- include: queue_requeue
-- include: queue_notify
local flowq = {KEYS[1], KEYS[2], KEYS[7], KEYS[6], KEYS[8]}
local dprefix = string.sub(ARGV[1], 1, -3) .. 'dd:'
local function drop(id)
  local ddk, par, ats = unpack(redis.call('HMGET', ARGV[1] .. id, 'ddk', 'par', 'ats'))
  noticed = notify(flowq, ARGV[1], KEYS[5], id, par, 'x', ats, 'drained') or noticed
  if ddk and redis.call('GET', dprefix .. ddk) == id then
    redis.call('DEL', dprefix .. ddk) -- its dedup id is free again
  end
  redis.call('DEL', ARGV[1] .. id)
  removed = removed + 1
end
local ids = redis.call('LPOP', KEYS[1], limit) or {}
for i = 1, #ids do drop(ids[i]) end
if removed < limit then
  local more = redis.call('ZPOPMIN', KEYS[2], limit - removed)
  for i = 1, #more, 2 do drop(string.sub(more[i], 17)) end
end
if ARGV[3] == '1' and removed < limit then
  -- at most `limit` entries looked at per call, whether dropped or passed over
  local later = redis.call('ZRANGE', KEYS[3], skip, skip + limit - removed - 1)
  local gone = {}
  for i = 1, #later do
    local id = string.sub(later[i], 17)
    if redis.call('HGET', ARGV[1] .. id, 'sch') then
      skip = skip + 1 -- a scheduler's pending run: unscheduling removes it, draining keeps it
    else
      drop(id)
      gone[#gone + 1] = later[i]
    end
  end
  if #gone > 0 then redis.call('ZREM', KEYS[3], unpack(gone)) end
end
local left = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
if ARGV[3] == '1' then left = left + math.max(0, redis.call('ZCARD', KEYS[3]) - skip) end
if removed > 0 and maxlen > 0 then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', 'event', 'drained', 'count', removed)
end
if noticed then
  redis.call('ZADD', KEYS[6], 0, '0') -- a worker of the queue sends the notices on
end
return {removed, left, skip}
