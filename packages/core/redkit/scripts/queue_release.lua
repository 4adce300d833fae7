-- Give a worker's unfinished jobs back to the queue (graceful shutdown): each goes to the front.
-- KEYS: 1 wait, 2 prioritized, 3 active, 4 events, 5 marker, 6 meta, 7 workers, 8 worker info key
-- ARGV: 1 job key prefix, 2 events maxlen, 3 worker id ('' keeps the registration), then pairs
--       of job id, token
-- Returns how many jobs were given back.
-- include: queue_requeue

local maxlen = tonumber(ARGV[2])
if not maxlen or (#ARGV - 3) % 2 ~= 0 then
  return redis.error_reply('ERR queue_release: bad arguments')
end
local released = 0
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local key = ARGV[1] .. id
  local st, tok = unpack(redis.call('HMGET', key, 'st', 'tok'))
  if st == 'active' and tok == ARGV[i + 1] then
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', key, 'tok')
    requeue(KEYS[1], KEYS[2], KEYS[6], key, id, true)
    if maxlen > 0 then
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', 'event', 'released', 'id', id)
    end
    released = released + 1
  end
end
if released > 0 then
  redis.call('ZADD', KEYS[5], 0, '0')
end
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[7], ARGV[3])
  redis.call('DEL', KEYS[8])
end
return released
