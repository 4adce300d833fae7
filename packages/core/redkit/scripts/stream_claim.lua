-- Take over messages left pending too long (XAUTOCLAIM) and report how often each was delivered.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] cursor,
-- ARGV[5] count. Returns {next cursor, id, fields, deliveries, id, fields, deliveries, ...};
-- entries trimmed from the stream while pending are dropped by Redis and left out.
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
  'COUNT', ARGV[5])
local out = {claimed[1]}
for _, entry in ipairs(claimed[2]) do
  if type(entry) == 'table' and type(entry[2]) == 'table' then
    local deliveries = 1
    local info = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
    if type(info[1]) == 'table' then
      deliveries = info[1][4]
    end
    out[#out + 1] = entry[1]
    out[#out + 1] = entry[2]
    out[#out + 1] = deliveries
  end
end
return out
