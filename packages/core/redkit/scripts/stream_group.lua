-- Create a consumer group (and the stream, if missing); an existing group is left alone.
-- A stream created here, or found without a lifetime, gets one; an existing lifetime is kept.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] start id ('0', '$' or an id), ARGV[3] lifetime ms.
-- Returns 1 when the group was created, 0 when it already existed.
local ttl = tonumber(ARGV[3])
if not ttl or ttl < 1 then
  return redis.error_reply('ERR stream_group: lifetime must be a positive integer')
end
local created = 1
local reply = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')
if type(reply) == 'table' and reply.err then
  local err = tostring(reply.err)
  if not string.find(err, 'BUSYGROUP', 1, true) then
    return redis.error_reply(err)
  end
  created = 0
end
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return created
