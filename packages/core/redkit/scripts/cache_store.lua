-- Write a cache entry and release the stampede lock, only while this caller still holds the
-- lock and the entry is as the loader found it: a delete or clear during the load removed the
-- lock, and a set (or incr) during the load changed the entry; either way the loaded value (read
-- before that change) must not be written over it. An entry that expired (or was evicted) during
-- the load is no change: the loaded value replaces it.
-- KEYS[1] entry, KEYS[2] lock; ARGV[1] lock token, ARGV[2] payload, ARGV[3] lifetime ms,
-- ARGV[4] '1' when the loader found an entry, ARGV[5] that entry's bytes (when ARGV[4] is '1')
-- Returns 1 when stored, 0 when the lock was no longer this caller's or the entry had changed.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
local current = redis.call('GET', KEYS[1])
if current and (ARGV[4] ~= '1' or current ~= ARGV[5]) then
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
