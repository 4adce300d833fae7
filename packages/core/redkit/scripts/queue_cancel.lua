-- Cancel a job. One that waits (or is delayed, or prioritized) ends as cancelled at once; for a
-- running one the request is left in its hash ('cx') and in its worker's set of cancel requests,
-- which the worker watches: it stops the task and reports the job cancelled (queue_step.lua also
-- cancels a requested job that comes back to the queue or asks to be retried).
-- A job of a flow that ends so leaves a notice for its parent (queue_notify.lua); a parent that
-- waits for its children is cancelled at once (its children go on).
-- KEYS: 1 wait, 2 prioritized, 3 delayed, 4 cancelled, 5 events, 6 job schedulers, 7 meta,
--       8 metrics, 9 waiting for children, 10 dead letters and flow notices, 11 marker
-- ARGV: 1 job key prefix ('<queue>:j:'), 2 events maxlen, 3 job id, 4 reason, 5 keep cancelled
--   count (queue default), 6 keep cancelled age ms (0: none), 7 minutes of metrics kept
-- Returns 1 cancelled, 2 requested (it runs: its worker cancels it), 0 it had finished (or was
-- cancelled already), -1 no such job.
local prefix, maxlen, id, reason = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local keep_count, keep_age, mkeep = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if not maxlen or id == '' or not keep_count or not keep_age or not mkeep then
  return redis.error_reply('ERR queue_cancel: bad arguments')
end
local key = prefix .. id
local events = KEYS[5]
-- include: queue_clock

-- include: queue_iterate
-- include: queue_metrics
-- include: queue_requeue
-- include: queue_notify

local st, ord, tok, kf, kfa, ddk, par, ats = unpack(redis.call('HMGET', key, 'st', 'ord', 'tok',
  'kf', 'kfa', 'ddk', 'par', 'ats'))
if not st then
  return -1
end
if st == 'active' then
  if redis.call('HEXISTS', key, 'cx') == 1 then
    return 2
  end
  redis.call('HSET', key, 'cx', reason)
  local worker = tok and string.match(tok, '^(.*):%d+$')
  if worker then
    local requests = string.sub(prefix, 1, -3) .. 'w:' .. worker .. ':cx'
    redis.call('ZADD', requests, now, id)
    redis.call('PEXPIRE', requests, 600000)
  end
  event('cancelling', 'id', id, 'reason', string.sub(reason, 1, 1000))
  return 2
end
if st == 'waiting' then
  redis.call('LREM', KEYS[1], 1, id)
elseif st == 'prioritized' then
  redis.call('ZREM', KEYS[2], (ord or '') .. id)
elseif st == 'delayed' then
  redis.call('ZREM', KEYS[3], (ord or '') .. id)
  moved_on(key, KEYS[6], KEYS[3], KEYS[7]) -- a scheduler's pending run: it goes on
elseif st == 'waiting_children' then
  redis.call('ZREM', KEYS[9], id)
else
  return 0
end
local dkey = ddk and (string.sub(prefix, 1, -3) .. 'dd:' .. ddk)
if dkey and redis.call('GET', dkey) == id then
  redis.call('DEL', dkey)
end
if notify({KEYS[1], KEYS[2], KEYS[7], KEYS[11], KEYS[9]}, prefix, KEYS[10], id, par, 'x', ats,
    reason) then
  redis.call('ZADD', KEYS[11], 0, '0') -- a worker of the queue sends the notice on
end
redis.call('HSET', key, 'st', 'cancelled', 'err', reason, 'fon', now)
event('cancelled', 'id', id, 'reason', string.sub(reason, 1, 1000))
counted('x')
flush_metrics(KEYS[8])
local count = tonumber(kf) or keep_count
local age = tonumber(kfa) or keep_age
if count == 0 then
  redis.call('DEL', key)
  return 1
end
redis.call('ZADD', KEYS[4], now, id)
-- the cancelled jobs kept: by count and age, like the failed ones (oldest first, 1,000 a call)
local function drop(ids)
  for i = 1, #ids do
    redis.call('DEL', prefix .. ids[i])
  end
  if #ids > 0 then
    redis.call('ZREM', KEYS[4], unpack(ids))
  end
end
if count > 0 then
  local excess = redis.call('ZCARD', KEYS[4]) - count
  if excess > 0 then
    drop(redis.call('ZRANGE', KEYS[4], 0, math.min(excess, 1000) - 1))
  end
end
if age > 0 then
  drop(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - age, 'LIMIT', 0, 1000))
end
return 1
