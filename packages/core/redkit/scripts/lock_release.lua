-- Release a lock only if the caller holds it; another holder's lock is never touched. The
-- fencing counter stays: the next holder's token must be larger than this one's.
-- KEYS[1] lock; ARGV[1] token
-- Returns 1 when the caller's lock was deleted, 0 when it was not the caller's any more.
if ARGV[1] == nil or ARGV[1] == '' then
  return redis.error_reply('lock_release: invalid arguments')
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
