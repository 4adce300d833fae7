-- Included by the scripts that create a scheduler's runs (`-- include: queue_iterate`), never
-- called alone; it uses the including script's `prefix` (the job key prefix), `now` and
-- `event()`. next_run() adds scheduler `sid`'s next run (hash `skey`, listed in `index`): a
-- delayed job 'sched:<sid>:<slot ms>' due at the first of the upcoming slots the client computed
-- ('nx') that is later than now and than the last slot that ran ('ran'). A slot is created at
-- most once, so it runs once whatever the number of workers. Returns 1 when the upcoming slots
-- run low (the worker computes more: Lua has no cron), 0 otherwise. moved_on() is for a job
-- deleted before it ran: when it is its scheduler's pending run, the scheduler goes on to the
-- slot after it (call it before the job's hash is deleted).
local function next_run(sid, skey, index, delayed, meta)
  local f = redis.call('HMGET', skey, 'nx', 'ran', 'cnt', 'lim', 'fin', 'tn', 'td', 'to', 'tp',
    'tkc', 'tka', 'tkf', 'tkfa')
  if not f[6] then
    return 0 -- removed meanwhile
  end
  local ran, cnt, lim = tonumber(f[2]) or -1, tonumber(f[3]) or 0, tonumber(f[4]) or 0
  local pick, rest = nil, {}
  if lim == 0 or cnt < lim then
    for s in string.gmatch(f[1] or '', '%d+') do
      if pick then
        rest[#rest + 1] = s
      elseif tonumber(s) > now and tonumber(s) > ran then
        pick = s
      end
    end
  end
  if not pick then
    redis.call('HSET', skey, 'pend', '', 'nx', '')
    if f[5] == '1' or (lim > 0 and cnt >= lim) then
      redis.call('ZADD', index, 'inf', sid) -- no run left: kept (and listed) as over
      return 0
    end
    redis.call('ZADD', index, 0, sid) -- a worker computes its slots (and looks for score 0)
    return 1
  end
  local id = 'sched:' .. sid .. ':' .. pick
  local key = prefix .. id
  local due = tonumber(pick)
  if redis.call('EXISTS', key) == 0 then
    local ord = string.format('%016x', redis.call('HINCRBY', meta, 'seq', 1))
    local fields = {'n', f[6], 'd', f[7], 'ts', now, 'st', 'delayed', 'dl', due - now, 'ord', ord,
      'sch', sid, 'slot', pick}
    local names = {'o', 'p', 'kc', 'ka', 'kf', 'kfa'}
    for k = 1, 6 do
      if f[7 + k] then
        fields[#fields + 1] = names[k]; fields[#fields + 1] = f[7 + k]
      end
    end
    redis.call('HSET', key, unpack(fields))
    redis.call('ZADD', delayed, due, ord .. id)
    event('added', 'id', id, 'state', 'delayed')
  end
  redis.call('HSET', skey, 'pend', pick, 'nx', table.concat(rest, ','), 'cnt', cnt + 1)
  redis.call('ZADD', index, due, sid)
  if #rest < 5 and f[5] ~= '1' then
    return 1
  end
  return 0
end

local function moved_on(key, index, delayed, meta)
  local sch, slot = unpack(redis.call('HMGET', key, 'sch', 'slot'))
  if sch then
    local skey = index .. ':' .. sch
    if redis.call('HGET', skey, 'pend') == slot then
      redis.call('HSET', skey, 'ran', slot)
      next_run(sch, skey, index, delayed, meta)
    end
  end
end
