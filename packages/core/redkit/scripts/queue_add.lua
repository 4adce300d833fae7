-- Add jobs to a queue. A job id that exists already is left as it is (deduplication, and a
-- re-sent add after a lost reply creates nothing).
-- KEYS: 1 wait, 2 prioritized, 3 delayed, 4 meta, 5 events, 6 marker
-- ARGV: 1 job key prefix, 2 events maxlen (0: none), 3 job count n, then 10 per job:
--   id, name, data, options (JSON or ''), priority (0: none), delay ms, keep completed count
--   (-1: queue default), keep completed age ms (-1), keep failed count (-1), keep failed age ms (-1)
-- Returns one integer per job: 1 added, 0 existed already.
local STRIDE = 10
local n = tonumber(ARGV[3])
local maxlen = tonumber(ARGV[2])
if not n or n < 1 or #ARGV ~= 3 + n * STRIDE or not maxlen then
  return redis.error_reply('ERR queue_add: bad argument count')
end
for i = 0, n - 1 do
  local b = 3 + i * STRIDE
  if ARGV[b + 1] == '' or ARGV[b + 2] == '' then
    return redis.error_reply('ERR queue_add: empty job id or name')
  end
  local prio, delay = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])
  if not prio or prio < 0 or not delay or delay < 0 then
    return redis.error_reply('ERR queue_add: bad priority or delay')
  end
  for k = 7, 10 do
    if not tonumber(ARGV[b + k]) then
      return redis.error_reply('ERR queue_add: bad retention')
    end
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[1]
local out = {}
local ready = {}
local wake = false
local first_delayed = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local earliest = first_delayed[2] and tonumber(first_delayed[2]) or nil

for i = 0, n - 1 do
  local b = 3 + i * STRIDE
  local id = ARGV[b + 1]
  local key = prefix .. id
  if redis.call('EXISTS', key) == 1 then
    out[i + 1] = 0
  else
    local prio, delay = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])
    local state
    local fields = {'n', ARGV[b + 2], 'd', ARGV[b + 3], 'ts', now}
    if ARGV[b + 4] ~= '' then
      fields[#fields + 1] = 'o'; fields[#fields + 1] = ARGV[b + 4]
    end
    if prio > 0 then
      fields[#fields + 1] = 'p'; fields[#fields + 1] = prio
    end
    if delay > 0 then
      fields[#fields + 1] = 'dl'; fields[#fields + 1] = delay
    end
    local keep = {'kc', 'ka', 'kf', 'kfa'}
    for k = 1, 4 do
      if tonumber(ARGV[b + 6 + k]) >= 0 then
        fields[#fields + 1] = keep[k]; fields[#fields + 1] = ARGV[b + 6 + k]
      end
    end
    if delay > 0 or prio > 0 then
      local ord = string.format('%016x', redis.call('HINCRBY', KEYS[4], 'seq', 1))
      fields[#fields + 1] = 'ord'; fields[#fields + 1] = ord
      if delay > 0 then
        state = 'delayed'
        local due = now + delay
        redis.call('ZADD', KEYS[3], due, ord .. id)
        if not earliest or due < earliest then
          earliest = due
          wake = true -- waiting workers recompute how long to sleep
        end
      else
        state = 'prioritized'
        redis.call('ZADD', KEYS[2], prio, ord .. id)
        wake = true
      end
    else
      state = 'waiting'
      ready[#ready + 1] = id
      wake = true
    end
    fields[#fields + 1] = 'st'; fields[#fields + 1] = state
    redis.call('HSET', key, unpack(fields))
    if maxlen > 0 then
      redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*', 'event', 'added', 'id', id,
        'state', state)
    end
    out[i + 1] = 1
  end
end
for i = 1, #ready, 4000 do
  redis.call('RPUSH', KEYS[1], unpack(ready, i, math.min(i + 3999, #ready)))
end
if wake then
  redis.call('ZADD', KEYS[6], 0, '0')
end
return out
