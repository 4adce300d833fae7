-- Atomic counter that always carries a TTL: INCRBY, then set the lifetime if the key had none.
-- KEYS[1] entry; ARGV[1] delta, ARGV[2] lifetime ms. Returns the new value.
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
