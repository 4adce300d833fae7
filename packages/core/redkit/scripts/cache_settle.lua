-- The end of a write-behind persist job (cache/_writes.py): delete the pending value it has just
-- persisted, unless a later write replaced it meanwhile (its token differs: that write's own job
-- persists it).
-- KEYS[1] the pending value (a hash: 'v' the entry's bytes, 't' the write's token)
-- ARGV[1] the token the job read. Returns 1 when deleted, 0 when replaced or gone.
if redis.call('HGET', KEYS[1], 't') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
