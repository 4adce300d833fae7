-- Take a lock when it is free and draw its fencing token.
-- KEYS[1] lock, KEYS[2] fencing counter (same hash tag)
-- ARGV[1] token, ARGV[2] lock lifetime ms, ARGV[3] how much longer than the lock the counter is
-- kept, in ms
-- Returns {1, fencing token as a decimal string} when the caller now holds the lock, or {0, PTTL
-- of the holder's lock} when someone else holds it. A re-sent call (its first reply was lost)
-- finds the caller's own token and succeeds again with the same fencing token: the key has held
-- that token without a break, so no other caller can have drawn a fencing token since.
-- The fencing token is max(last token + 1, Redis time in microseconds): it keeps growing when the
-- counter has expired or was deleted, because the clock has moved past every earlier token.
local token = ARGV[1]
local ttl = tonumber(ARGV[2])
local margin = tonumber(ARGV[3])
if token == nil or token == '' or not ttl or ttl < 1 or ttl % 1 ~= 0
    or not margin or margin < 1 or margin % 1 ~= 0 then
  return redis.error_reply('lock_acquire: invalid arguments')
end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= token then
  return {0, redis.call('PTTL', KEYS[1])}
end
local last = redis.call('GET', KEYS[2])
local keep = string.format('%.0f', ttl + margin)
local fence
if holder and last then
  fence = last
  redis.call('PEXPIRE', KEYS[2], keep)
else
  local now = redis.call('TIME')
  local micros = tonumber(now[1]) * 1000000 + tonumber(now[2])
  fence = string.format('%.0f', math.max((tonumber(last or '0') or 0) + 1, micros))
  redis.call('SET', KEYS[2], fence, 'PX', keep)
end
redis.call('SET', KEYS[1], token, 'PX', string.format('%.0f', ttl))
return {1, fence}
