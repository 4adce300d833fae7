-- Write some fields of an existing session and delete others, then optionally move it to a new
-- id (regenerate). Never creates a session: an unknown or expired one stays gone.
-- KEYS[1] the session; KEYS[2] (optional) the key of its new id, in the same hash slot
-- ARGV[1] idle timeout ms, ARGV[2] absolute lifetime ms, ARGV[3] largest size in bytes,
-- ARGV[4] n, the number of fields to write; ARGV[5 .. 4 + 2n] field, JSON value pairs;
-- the remaining ARGV are fields to delete (no field appears twice)
-- Returns {1, lifetime ms} when written, {0, 0} when the session does not exist or is past its
-- absolute lifetime (then it is deleted), {-1, size} when the result would be larger than
-- ARGV[3] (nothing written). Safe to re-send: the values are absolute, the size is recomputed
-- from what is stored, and a move whose reply was lost finds its (random, fresh) new key.
local idle, life, limit, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
if not idle or idle < 1 or not life or life < 1 or not limit or not n or n < 0
    or 4 + 2 * n > #ARGV then
  return redis.error_reply('ERR session_save: bad arguments')
end
local key = KEYS[1]
local created = redis.call('HGET', key, 'm:c')
if not created then
  if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
    return {1, redis.call('PTTL', KEYS[2])}
  end
  return {0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = tonumber(created) + life - now
if left <= 0 then
  redis.call('DEL', key)
  return {0, 0}
end
-- the size after the write: every validation happens before the first write
local size = tonumber(redis.call('HGET', key, 'm:s') or '0')
local last = 4 + 2 * n
for i = 5, last, 2 do
  local old = redis.call('HSTRLEN', key, ARGV[i])
  if old > 0 then
    size = size - #ARGV[i] - old
  end
  size = size + #ARGV[i] + #ARGV[i + 1]
end
for i = last + 1, #ARGV do
  local old = redis.call('HSTRLEN', key, ARGV[i])
  if old > 0 then
    size = size - #ARGV[i] - old
  end
end
if size > limit then
  return {-1, size}
end
-- at most 200 pairs (400 fields) per command: unpack() of a long list could overflow the stack
for i = 5, last, 400 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 399, last)))
end
for i = last + 1, #ARGV, 400 do
  redis.call('HDEL', key, unpack(ARGV, i, math.min(i + 399, #ARGV)))
end
redis.call('HSET', key, 'm:s', size)
if KEYS[2] then
  redis.call('RENAME', key, KEYS[2])
  key = KEYS[2]
end
local ttl = math.min(idle, left)
redis.call('PEXPIRE', key, ttl)
return {1, ttl}
