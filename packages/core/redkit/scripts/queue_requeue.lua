-- Included by the queue scripts that give a job back (`-- include: queue_requeue`), never
-- called alone. requeue() puts job `id` (hash `key`) back in line: at the front of `wait`
-- (`front`: a stalled or released job) or at its back (a retry), or in its place among the
-- prioritized jobs, numbered from `meta`'s sequence if it has no number yet.
local function requeue(wait, prio, meta, key, id, front)
  local p, ord = unpack(redis.call('HMGET', key, 'p', 'ord'))
  if p then
    if not ord then
      ord = string.format('%016x', redis.call('HINCRBY', meta, 'seq', 1))
      redis.call('HSET', key, 'ord', ord)
    end
    redis.call('ZADD', prio, tonumber(p), ord .. id)
    redis.call('HSET', key, 'st', 'prioritized')
  else
    redis.call(front and 'LPUSH' or 'RPUSH', wait, id)
    redis.call('HSET', key, 'st', 'waiting')
  end
end
