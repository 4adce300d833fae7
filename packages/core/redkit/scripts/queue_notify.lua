-- Included by the queue scripts that end jobs (`-- include: queue_notify`), never called alone.
-- notify() leaves, for a job of a flow (its hash has 'par': '<policy><index>:<length of the
-- parent's queue name>:<parent queue name><parent id>'), a notice of how it ended in the
-- queue's own stream `notices` (the ':letters' stream, in the job's slot): a worker of the
-- queue sends it on to the parent's queue (queue_child.lua), then deletes it. `kind` is 'c'
-- completed (payload: the result JSON), 'f' failed or 'x' cancelled or removed (the reason);
-- `ats` the attempt it ended in. Returns whether a notice was left.
local function notify(notices, id, par, kind, ats, payload)
  if not par then
    return false
  end
  redis.call('XADD', notices, '*', 'par', par, 'id', id, 'o', kind, 'ats', ats or '0',
    'v', payload)
  return true
end
