-- Create, change, refill or remove a job scheduler of a queue.
-- KEYS: 1 the queue's schedulers (sorted set: id -> next run ms; 0: needs slots, inf: over),
--       2 the scheduler's hash, 3 delayed, 4 meta, 5 events, 6 marker
-- ARGV: 1 job key prefix, 2 events maxlen (0: none), 3 scheduler id, 4 mode: 'u' create or
--   change, 'r' refill (the slots after the pending run), 'x' remove; for 'u' and 'r':
--   5 definition (JSON: a scheduler whose definition is the same is left as it is; a refill of
--   another definition is refused), 6 upcoming slots (ms, ascending, comma-separated),
--   7 '1' when those are the last; for 'u' also 8 missed-run policy ('run' or 'skip'), 9 grace
--   ms, 10 limit (0: none), 11 task name, 12 data, then the job's options as pairs of a field
--   ('o' options JSON, 'p' priority, 'kc', 'ka', 'kf', 'kfa' retention) and its value.
-- Returns {code, pending run's slot ('' none)}: 'u' 1 created, 2 changed, 0 the same;
--   'r' 0 done, -1 the definition changed meanwhile; 'x' 1 removed, 0 there was none.
local prefix, maxlen, sid, mode = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
if not maxlen or sid == '' or not (mode == 'u' or mode == 'r' or mode == 'x') then
  return redis.error_reply('ERR queue_schedule: bad arguments')
end
local index, skey, delayed, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local events = KEYS[5]
-- include: queue_clock

-- include: queue_iterate

local old, pend = unpack(redis.call('HMGET', skey, 'def', 'pend'))
local function pending_key()
  if not pend or pend == '' then
    return nil, nil
  end
  local id = 'sched:' .. sid .. ':' .. pend
  return prefix .. id, id
end

-- the pending run of a definition that goes (still delayed: it has not run)
local function drop_pending()
  local key, id = pending_key()
  if key then
    local st, ord = unpack(redis.call('HMGET', key, 'st', 'ord'))
    if st == 'delayed' then
      redis.call('ZREM', delayed, ord .. id)
      redis.call('DEL', key)
      event('removed', 'id', id)
    end
  end
end

if mode == 'x' then
  if not old then
    return {0, ''}
  end
  drop_pending()
  redis.call('DEL', skey)
  redis.call('ZREM', index, sid)
  return {1, pend or ''}
end

local def, slots, final = ARGV[5], ARGV[6], ARGV[7]
if not string.match(slots, '^[%d,]*$') then
  return redis.error_reply('ERR queue_schedule: bad slots')
end

-- the chain of runs goes on from here: a pending run that still exists is left to the worker
-- that promotes it; without one (a refill, or its job was removed), the next run is made now
local function go_on(code)
  redis.call('HSET', skey, 'nx', slots, 'fin', final)
  local key = pending_key()
  if key then
    local st = redis.call('HGET', key, 'st')
    if st == 'delayed' then
      return {code, pend}
    end
    if st then -- taken out of the delayed set by hand: counts as run
      redis.call('HSET', skey, 'ran', pend)
    end
  end
  next_run(sid, skey, index, delayed, meta)
  return {code, redis.call('HGET', skey, 'pend') or ''}
end

if mode == 'r' then
  if old ~= def then
    return {-1, pend or ''}
  end
  return go_on(0)
end

if old == def then
  return go_on(0)
end
local grace, limit = tonumber(ARGV[9]), tonumber(ARGV[10])
if not (ARGV[8] == 'run' or ARGV[8] == 'skip') or not grace or not limit or ARGV[11] == ''
    or #ARGV % 2 ~= 0 then
  return redis.error_reply('ERR queue_schedule: bad arguments')
end
drop_pending()
local ran = redis.call('HGET', skey, 'ran')
redis.call('DEL', skey)
local fields = {'def', def, 'mis', ARGV[8], 'grace', grace, 'lim', limit, 'cnt', 0, 'pend', '',
  'tn', ARGV[11], 'td', ARGV[12]}
local names = {o = 'to', p = 'tp', kc = 'tkc', ka = 'tka', kf = 'tkf', kfa = 'tkfa'}
for i = 13, #ARGV, 2 do
  local name = names[ARGV[i]]
  if not name then
    return redis.error_reply('ERR queue_schedule: bad job option field')
  end
  fields[#fields + 1] = name; fields[#fields + 1] = ARGV[i + 1]
end
if ran then
  fields[#fields + 1] = 'ran'; fields[#fields + 1] = ran
end
redis.call('HSET', skey, unpack(fields))
pend = nil
local reply = go_on(old and 2 or 1)
redis.call('ZADD', KEYS[6], 0, '0') -- waiting workers recompute how long to sleep
return reply
