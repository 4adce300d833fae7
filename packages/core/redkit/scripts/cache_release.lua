-- Release the stampede lock only if this caller holds it (the loader failed or returned nothing
-- to cache). KEYS[1] lock; ARGV[1] lock token. Returns 1 when released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
