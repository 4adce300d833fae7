-- Append one message to a stream, keep the stream bounded and refresh its lifetime.
-- KEYS[1] stream; ARGV[1] maxlen (approximate trimming), ARGV[2] lifetime ms, ARGV[3] field,
-- ARGV[4] payload. Returns the new entry's id.
local maxlen = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
if not maxlen or maxlen < 1 or not ttl or ttl < 1 then
  return redis.error_reply('ERR stream_add: maxlen and lifetime must be positive integers')
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return id
