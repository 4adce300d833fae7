-- Drop a request in progress so that a retry may run it again; only the lease holder can, and
-- a stored response is never removed.
-- KEYS[1] the record; ARGV[1] lease token
-- Returns 1 when released, 0 otherwise.
local rec = redis.call('HMGET', KEYS[1], 'state', 'token')
if rec[1] == 'p' and rec[2] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
