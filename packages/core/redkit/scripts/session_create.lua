-- Create a session: one hash holding the creation time, the stored size and the user's fields.
-- KEYS[1] the session (its id was just drawn at random by the caller)
-- ARGV[1] idle timeout ms, ARGV[2] absolute lifetime ms, ARGV[3] largest size in bytes,
-- ARGV[4..] field, JSON value pairs (fields are "u:<key>")
-- Returns {1, lifetime ms} when the session exists, {-1, size} when it would be too large
-- (nothing written). Safe to re-send: the id is 256 random bits drawn for this call, so a key
-- that already exists can only be this call's own earlier run whose reply was lost.
local idle, life, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if not idle or idle < 1 or not life or life < 1 or not limit or #ARGV % 2 ~= 1 then
  return redis.error_reply('ERR session_create: bad arguments')
end
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then
  return {1, redis.call('PTTL', key)}
end
local size = 0
for i = 4, #ARGV, 2 do
  size = size + #ARGV[i] + #ARGV[i + 1]
end
if size > limit then
  return {-1, size}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', key, 'm:c', now, 'm:s', size)
-- 200 pairs per HSET: unpack() of the whole list could overflow Lua's stack
for i = 4, #ARGV, 400 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 399, #ARGV)))
end
local ttl = math.min(idle, life)
redis.call('PEXPIRE', key, ttl)
return {1, ttl}
