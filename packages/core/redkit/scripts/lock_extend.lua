-- Give the caller's lock a new lifetime; another holder's lock is never touched. The fencing
-- counter is kept at least `margin` ms longer than the lock.
-- KEYS[1] lock, KEYS[2] fencing counter (same hash tag)
-- ARGV[1] token, ARGV[2] new lifetime ms, ARGV[3] counter margin ms, ARGV[4] '1' = only lengthen
-- (automatic renewal: a longer lifetime set by an explicit extend is kept), '0' = set it
-- Returns the lock's remaining ms when it is the caller's, 0 when it is not the caller's any more.
local token = ARGV[1]
local ttl = tonumber(ARGV[2])
local margin = tonumber(ARGV[3])
if token == nil or token == '' or not ttl or ttl < 1 or ttl % 1 ~= 0
    or not margin or margin < 1 or margin % 1 ~= 0 or (ARGV[4] ~= '0' and ARGV[4] ~= '1') then
  return redis.error_reply('lock_extend: invalid arguments')
end
if redis.call('GET', KEYS[1]) ~= token then
  return 0
end
local pttl = redis.call('PTTL', KEYS[1])
if ARGV[4] == '0' or pttl < ttl then
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
  pttl = ttl
end
redis.call('PEXPIRE', KEYS[2], string.format('%.0f', pttl + margin))
return pttl
