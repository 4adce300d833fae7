-- Forget every limit's state of one rate-limit key. KEYS[1] is its index set (see ratelimit.lua);
-- its members share KEYS[1]'s hash tag, so they live in the same cluster slot.
-- Returns the number of state keys deleted.
local deleted = 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  deleted = deleted + redis.call('UNLINK', k)
end
redis.call('UNLINK', KEYS[1])
return deleted
