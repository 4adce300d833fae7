-- Add jobs to a queue. A job id that exists already is left as it is (deduplication, and a
-- re-sent add after a lost reply creates nothing).
-- KEYS: 1 wait, 2 prioritized, 3 delayed, 4 meta, 5 events, 6 marker, 7 waiting for children
-- ARGV: 1 job key prefix ('<queue>:j:'), 2 events maxlen (0: none), 3 job count n, then per job
--   its argument count (3, 10, 12 or 13) and that many arguments: id, name, data, then, unless every
--   option is a default, options (JSON or ''), priority (0: none), delay ms, keep completed count
--   (-1: queue default), keep completed age ms (-1), keep failed count (-1), keep failed age ms
--   (-1), then, for a job with a dedup id, the dedup id, its ttl ms (0: until the job ends) and
--   its flags ('e' a duplicate extends the ttl, 'r' it replaces the data and the delay of the
--   job while that one has not started, then ':<ms>' the most a replaced delay may put the job's
--   run after its first add); or, for a job of a flow (size 12), its parent
--   ('' for none: see queue_notify.lua) and its children (JSON list of [queue, id], '' for none):
--   a job with children waits for them (state 'waiting_children', 'dep' children unresolved)
-- Dedup ids are keys '<queue>:dd:<dedup id>' holding the id of the job that holds them.
-- A write-behind write (cache/_writes.py) adds its persist job with KEYS[8], the pending value
-- of its cache entry (a hash in the queue's slot: 'v' the entry's bytes, 't' the write's token),
-- and, where the entry is in the same slot (not a cluster), KEYS[9] the entry itself; ARGV then
-- ends with the value, the token and the pending value's lifetime ms (then the entry's bytes and
-- lifetime ms with KEYS[9]): the value and the job that persists it are written together.
-- Returns per job: 1 added, 0 existed already, or the id of the job its dedup id is held by.
local n = tonumber(ARGV[3])
local maxlen = tonumber(ARGV[2])
if not n or n < 1 or not maxlen then
  return redis.error_reply('ERR queue_add: bad argument count')
end
-- every job is checked before the first write; starts[i] is the index of job i's id
local starts = {}
local sets = false -- whether a job goes to the prioritized or delayed set
local flows = false -- whether a job is part of a flow
local at = 4
for i = 1, n do
  local size = tonumber(ARGV[at])
  if not (size == 3 or size == 10 or size == 12 or size == 13) or at + size > #ARGV then
    return redis.error_reply('ERR queue_add: bad argument count')
  end
  local b = at + 1
  if ARGV[b] == '' or ARGV[b + 1] == '' then
    return redis.error_reply('ERR queue_add: empty job id or name')
  end
  if size == 13 and (ARGV[b + 10] == '' or not tonumber(ARGV[b + 11])
      or tonumber(ARGV[b + 11]) < 0 or not string.match(ARGV[b + 12], '^e?r?$')
      and not string.match(ARGV[b + 12], '^e?r:%d+$')) then
    return redis.error_reply('ERR queue_add: bad dedup')
  end
  if size == 12 then
    local kids = ARGV[b + 11] ~= '' and cjson.decode(ARGV[b + 11])
    if (ARGV[b + 10] ~= '' and not string.match(ARGV[b + 10], '^[fic]%d+:%d+:.'))
        or (kids and (type(kids) ~= 'table' or #kids < 1 or tonumber(ARGV[b + 5]) ~= 0)) then
      return redis.error_reply('ERR queue_add: bad flow')
    end
    flows = true
  end
  if size >= 10 then
    local prio, delay = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
    if not prio or prio < 0 or not delay or delay < 0 then
      return redis.error_reply('ERR queue_add: bad priority or delay')
    end
    for k = 6, 9 do
      if not tonumber(ARGV[b + k]) then
        return redis.error_reply('ERR queue_add: bad retention')
      end
    end
    if prio > 0 or delay > 0 then
      sets = true
    end
  end
  starts[i] = b
  at = b + size
end
local tail = (KEYS[9] and 5) or (KEYS[8] and 3) or 0
if at ~= #ARGV + 1 - tail or (tail > 0 and not tonumber(ARGV[at + 2])) then
  return redis.error_reply('ERR queue_add: bad argument count')
end

-- a key of the wrong type would fail a write halfway, after a job's hash was written: that job
-- would then exist nowhere a worker looks, and a re-sent add would take it as added. Checked:
-- the keys written after a hash (wait, events) and, when a job is delayed or prioritized, those
-- written before the next job's (prioritized, delayed, meta); the marker is written last.
local function check(key, want)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= want then
    return redis.error_reply('WRONGTYPE queue_add: ' .. key .. ' holds a ' .. kind ..
      ', not a ' .. want .. ': nothing was added')
  end
end
local kinds = {'list', 'zset', 'zset', 'hash', 'stream', 'zset', 'zset', 'hash', 'string'}
local checked = sets and {1, 2, 3, 4, 5, 7} or (flows and {1, 5, 7} or {1, 5})
for k = 8, 7 + (tail > 0 and (tail - 1) / 2 or 0) do
  checked[#checked + 1] = k
end
for _, k in ipairs(checked) do
  local refused = check(KEYS[k], kinds[k])
  if refused then
    return refused
  end
end
local prefix = ARGV[1]
local dprefix = string.sub(prefix, 1, -3) .. 'dd:'
for i = 1, n do
  if ARGV[starts[i] - 1] == '13' then
    local refused = check(dprefix .. ARGV[starts[i] + 10], 'string')
    if refused then
      return refused
    end
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local ready = {}
local wake = false
local earliest = false -- the due time of the first delayed job, read when a delayed job comes

-- the job holding dedup id `did`, when a job still holds it: the add of job argument `b` is then
-- a duplicate (nothing is added, and with 'r' its data and delay go to that job while it waits)
local function holder(did, b)
  local dkey = dprefix .. did
  local other = redis.call('GET', dkey)
  if not other then
    return nil
  end
  local okey = prefix .. other
  local st, ord, ts = unpack(redis.call('HMGET', okey, 'st', 'ord', 'ts'))
  local flags = ARGV[b + 12]
  local replace = string.find(flags, 'r', 1, true)
  if not st and (replace or tonumber(ARGV[b + 11]) == 0) then
    return nil -- its job is gone (removed, or deleted by its retention); a throttle still holds
  end
  if replace then
    if st ~= 'waiting' and st ~= 'prioritized' and st ~= 'delayed' then
      return nil -- it started: the new data needs a job of its own
    end
    redis.call('HSET', okey, 'd', ARGV[b + 2])
    local delay = tonumber(ARGV[b + 5])
    if st == 'delayed' and delay > 0 then
      local due = now + delay
      local most = tonumber(string.match(flags, ':(%d+)$') or '')
      if most and tonumber(ts) then
        due = math.max(math.min(due, tonumber(ts) + most), now) -- never later than its first add allows
      end
      redis.call('ZADD', KEYS[3], due, ord .. other)
      redis.call('HSET', okey, 'dl', due - now)
      wake = true
    end
  end
  if string.find(flags, 'e', 1, true) then
    redis.call('PEXPIRE', dkey, tonumber(ARGV[b + 11]))
  end
  if maxlen > 0 then
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*', 'event', 'deduplicated', 'id', other,
      'dedup', did, 'replaced', replace and '1' or '0')
  end
  return other
end

for i = 1, n do
  local b = starts[i]
  local id = ARGV[b]
  local key = prefix .. id
  local held = ARGV[b - 1] == '13' and redis.call('EXISTS', key) == 0 and holder(ARGV[b + 10], b)
  if held then
    out[i] = held
  elseif redis.call('EXISTS', key) == 1 then
    out[i] = 0
  elseif ARGV[b - 1] == '3' then
    redis.call('HSET', key, 'n', ARGV[b + 1], 'd', ARGV[b + 2], 'ts', now, 'st', 'waiting')
    ready[#ready + 1] = id
    if maxlen > 0 then
      redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*', 'event', 'added', 'id', id,
        'state', 'waiting')
    end
    out[i] = 1
  else
    local prio, delay = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
    local state
    local fields = {'n', ARGV[b + 1], 'd', ARGV[b + 2], 'ts', now}
    if ARGV[b + 3] ~= '' then
      fields[#fields + 1] = 'o'; fields[#fields + 1] = ARGV[b + 3]
    end
    if prio > 0 then
      fields[#fields + 1] = 'p'; fields[#fields + 1] = prio
    end
    if delay > 0 then
      fields[#fields + 1] = 'dl'; fields[#fields + 1] = delay
    end
    local keep = {'kc', 'ka', 'kf', 'kfa'}
    for k = 1, 4 do
      if tonumber(ARGV[b + 5 + k]) >= 0 then
        fields[#fields + 1] = keep[k]; fields[#fields + 1] = ARGV[b + 5 + k]
      end
    end
    local kids = ARGV[b - 1] == '12' and ARGV[b + 11] ~= '' and ARGV[b + 11]
    if ARGV[b - 1] == '12' and ARGV[b + 10] ~= '' then
      fields[#fields + 1] = 'par'; fields[#fields + 1] = ARGV[b + 10]
    end
    if kids then
      -- it waits for its children: they report to it as they end (queue_child.lua)
      state = 'waiting_children'
      fields[#fields + 1] = 'kids'; fields[#fields + 1] = kids
      fields[#fields + 1] = 'dep'; fields[#fields + 1] = #cjson.decode(kids)
      if prio > 0 then
        fields[#fields + 1] = 'ord'
        fields[#fields + 1] = string.format('%016x', redis.call('HINCRBY', KEYS[4], 'seq', 1))
      end
      redis.call('ZADD', KEYS[7], now, id)
    elseif delay > 0 or prio > 0 then
      local ord = string.format('%016x', redis.call('HINCRBY', KEYS[4], 'seq', 1))
      fields[#fields + 1] = 'ord'; fields[#fields + 1] = ord
      if delay > 0 then
        state = 'delayed'
        local due = now + delay
        if earliest == false then
          local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
          earliest = first[2] and tonumber(first[2]) or nil
        end
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
    end
    if ARGV[b - 1] == '13' then
      local ttl = tonumber(ARGV[b + 11])
      -- until the job ends (the scripts that end it delete the key), 30 days at most
      redis.call('SET', dprefix .. ARGV[b + 10], id, 'PX', ttl > 0 and ttl or 2592000000)
      fields[#fields + 1] = 'ddk'; fields[#fields + 1] = ARGV[b + 10]
      if ttl == 0 then
        fields[#fields + 1] = 'ddu'; fields[#fields + 1] = '1'
      end
    end
    fields[#fields + 1] = 'st'; fields[#fields + 1] = state
    redis.call('HSET', key, unpack(fields))
    if maxlen > 0 then
      redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*', 'event', 'added', 'id', id,
        'state', state)
    end
    out[i] = 1
  end
end
if #ready > 0 then
  wake = true
end
for i = 1, #ready, 4000 do
  redis.call('RPUSH', KEYS[1], unpack(ready, i, math.min(i + 3999, #ready)))
end
if wake then
  redis.call('ZADD', KEYS[6], 0, '0')
end
if tail > 0 then -- the pending value of a write-behind write, then its entry
  redis.call('HSET', KEYS[8], 'v', ARGV[at], 't', ARGV[at + 1])
  redis.call('PEXPIRE', KEYS[8], ARGV[at + 2])
  if tail == 5 then
    redis.call('SET', KEYS[9], ARGV[at + 3], 'PX', ARGV[at + 4])
  end
end
return out
