-- Read a session (or only slide its expiry): load and touch.
-- KEYS[1] the session
-- ARGV[1] idle timeout ms, ARGV[2] absolute lifetime ms, ARGV[3] "1" to return the fields
-- Returns {0, 0} when the session does not exist or is past its absolute lifetime (then it is
-- deleted), else {1, lifetime ms[, HGETALL]}. The new lifetime is the idle timeout, capped by
-- what is left of the absolute lifetime, counted from the creation time on Redis' clock.
local key = KEYS[1]
local created = redis.call('HGET', key, 'm:c')
if not created then
  return {0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = tonumber(created) + tonumber(ARGV[2]) - now
if left <= 0 then
  redis.call('DEL', key)
  return {0, 0}
end
local ttl = math.min(tonumber(ARGV[1]), left)
redis.call('PEXPIRE', key, ttl)
if ARGV[3] == '1' then
  return {1, ttl, redis.call('HGETALL', key)}
end
return {1, ttl}
