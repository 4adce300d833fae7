-- Read a cache entry; on a miss (or a stale/forced read) try to take the stampede lock.
-- KEYS[1] entry, KEYS[2] lock (same hash tag)
-- ARGV[1] lock token, ARGV[2] lock lifetime ms, ARGV[3] stale window ms, ARGV[4] "1" = the
-- caller needs the entry's PTTL, ARGV[5] "1" = take the lock even when the entry looks fresh
-- (the caller found it invalid or chose an early refresh)
-- Returns {value or nil, pttl of the entry (-2 when absent, -3 when not read), 1 if this caller
-- holds the lock}. Idempotent: a re-sent call finds its own token and still reports the lock.
local value = redis.call('GET', KEYS[1])
local pttl = -2
if value then
  pttl = -3
  if ARGV[4] == '1' then
    pttl = redis.call('PTTL', KEYS[1])
  end
  if ARGV[5] ~= '1' and (pttl < 0 or pttl > tonumber(ARGV[3])) then
    -- a fresh entry: no lock was taken by this call (only a lock holder can store one)
    return {value, pttl, 0}
  end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {value or false, pttl, 1}
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  return {value or false, pttl, 1}
end
return {value or false, pttl, 0}
