-- Write a cache entry and release the stampede lock if this caller still holds it.
-- KEYS[1] entry, KEYS[2] lock; ARGV[1] lock token, ARGV[2] payload, ARGV[3] lifetime ms
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
