-- Write a cache entry and release the stampede lock, only while this caller still holds the
-- lock: a delete, set or clear during the load removed the lock, and the loaded value (read
-- before that change) must not be written over it.
-- KEYS[1] entry, KEYS[2] lock; ARGV[1] lock token, ARGV[2] payload, ARGV[3] lifetime ms
-- Returns 1 when stored, 0 when the lock was no longer this caller's.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
