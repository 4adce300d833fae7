-- Pause (ARGV[1] = '1') or resume ('0') a queue: a paused queue hands out no jobs.
-- KEYS: 1 meta, 2 events, 3 marker; ARGV: 1 '1' or '0', 2 events maxlen
-- Returns 1 when the state changed, 0 when it was already so.
local maxlen = tonumber(ARGV[2])
if not maxlen or (ARGV[1] ~= '1' and ARGV[1] ~= '0') then
  return redis.error_reply('ERR queue_pause: bad arguments')
end
local changed
if ARGV[1] == '1' then
  changed = redis.call('HSETNX', KEYS[1], 'paused', '1')
else
  changed = redis.call('HDEL', KEYS[1], 'paused')
  redis.call('ZADD', KEYS[3], 0, '0')
end
if changed == 1 and maxlen > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'event',
    ARGV[1] == '1' and 'paused' or 'resumed')
end
return changed
