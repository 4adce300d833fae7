-- Included by the queue scripts that end jobs and by queue_child.lua (`-- include:
-- queue_notify`, after queue_clock and queue_requeue), never called alone.
--
-- A job of a flow names its parent in its hash: 'par' is '<policy><index>:<length of the parent's
-- queue name>:<parent queue name><parent id>', the length 0 (no name) when the parent is on the
-- job's own queue. notify() tells the parent how the job ended: one on the same queue (same
-- slot) is told at once, in the same script call (record_child); for one on another queue it
-- leaves a notice in the queue's own stream `notices` (the ':letters' stream, in the job's slot),
-- which a worker of the queue sends on to the parent's queue (queue_child.lua), then deletes.
-- `kind` is 'c' completed (payload: the result JSON), 'f' failed or 'x' cancelled or removed
-- (the reason); `ats` the attempt it ended in.
--
-- record_child() records one child's outcome in parent `pid` (of job prefix `prefix`); `q` holds
-- the parent queue's keys: wait, prio, meta, marker, waiting (parents waiting for children). A
-- parent waits until every child is resolved: completed, or failed under the 'ignore' policy
-- ('i'). A child that fails under 'continue' ('c') puts its parent in line at once; under 'fail'
-- ('f', the default) the parent comes to the queue marked 'cf' and its worker fails it without
-- running it. An outcome already recorded for the same attempt (a notice sent twice) changes
-- nothing; one of a later attempt (the child was retried) replaces it.
-- Returns 1 recorded, 0 already recorded, -1 no such parent.
local function record_child(q, prefix, pid, index, kind, ats, payload, policy, label)
  local key = prefix .. pid
  local field = 'k:' .. index
  local st, old = unpack(redis.call('HMGET', key, 'st', field))
  if not st then
    return -1 -- removed meanwhile (or deleted by its retention)
  end
  if old and tonumber(string.match(old, '^[cfx](%d+):') or -1) >= tonumber(ats) then
    return 0
  end
  redis.call('HSET', key, field, kind .. ats .. ':' .. payload)
  if st ~= 'waiting_children' or old then
    return 1
  end
  local ready
  if kind ~= 'c' and policy == 'f' then
    redis.call('HSET', key, 'cf', 'child ' .. label .. ' ' ..
      (kind == 'f' and 'failed' or 'was cancelled') .. ': ' .. string.sub(payload, 1, 1000))
    ready = true
  elseif kind ~= 'c' and policy == 'c' then
    redis.call('HINCRBY', key, 'dep', -1)
    ready = true
  else
    ready = redis.call('HINCRBY', key, 'dep', -1) <= 0
  end
  if ready then
    redis.call('ZREM', q[5], pid)
    requeue(q[1], q[2], q[3], key, pid, false)
    event('waiting', 'id', pid)
    redis.call('ZADD', q[4], 0, '0')
  end
  return 1
end

-- `q`: this queue's keys as for record_child; `prefix`: its job prefix. Returns whether a
-- notice was left for a worker to send on.
local function notify(q, prefix, notices, id, par, kind, ats, payload)
  if not par then
    return false
  end
  local policy, index, pid = string.match(par, '^([fic])(%d+):0:(.+)$')
  if pid then
    record_child(q, prefix, pid, index, kind, ats or '0', payload, policy, id)
    return false
  end
  redis.call('XADD', notices, '*', 'par', par, 'id', id, 'o', kind, 'ats', ats or '0',
    'v', payload)
  return true
end
