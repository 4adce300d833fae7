-- A worker's round trip: finish the jobs it ran, recover stalled jobs, promote delayed jobs that
-- are due, then take up to `count` jobs, locking each with a fresh token.
-- KEYS: 1 wait, 2 prioritized, 3 delayed, 4 active, 5 completed, 6 failed, 7 meta, 8 events,
--       9 marker, 10 rate limiter, 11 dead letters and flow notices to send (stream), 12 job
--       schedulers
--       (sorted set; each scheduler's hash is this key, ':' and its id), 13 cancelled,
--       14 metrics (hash), 15 waiting for children
-- ARGV: 1 job key prefix, 2 events maxlen (0: none), 3 worker id (token base), 4 lock ms,
--       5 count to fetch, 6 max stalls, 7 rate limit max (0: none), 8 rate limit period ms,
--       9 keep completed count, 10 keep completed age ms (0: none), 11 keep failed count,
--       12 keep failed age ms (0: none), 13 '1' when the queue has a dead-letter queue,
--       14 number of finishes m, 15 minutes of metrics kept (0: no metrics), then the m
--       finishes, each a
--       head '<kind><attempts started>[.<run ms>]:<job id>' (the job's token is '<worker
--       id>:<attempts started>'; the run time is the worker's measure, else the time since the
--       job was fetched) followed by the kind's own arguments:
--         n  completed with a null result (none)
--         c  completed (result JSON)
--         f  failed for good (reason, traceback)
--         r  failed, try again (reason, traceback, delay ms)
--         x  cancelled (none: the reason is the request's, in the job's hash)
-- Returns {status (0 fetched or idle, 1 paused, 2 rate limited), ms until the rate limit frees,
--   ms until the next delayed job is due (-1: none), {one code per finish}, {7 per job fetched:
--   id, attempts started, name, data, options, attempts made, created ms},
--   {ids of stalled jobs that failed}, dead letters and flow notices waiting to be sent, {ids of the job
--   schedulers whose upcoming slots run low}}
-- A scheduler's run that comes due creates the scheduler's next run in the same transition
-- (see queue_iterate.lua); a late one under the 'skip' policy is deleted instead of run.
-- A job that fails for good, on a queue with a dead-letter queue, leaves its letter in KEYS[11]
-- (id, attempt, name, data, reason, attempts made) in the same transition: the worker sends it
-- on under an id made from the queue, the job and the entry, so a re-sent letter is one letter.
-- A job of a flow that ends (completed, failed for good, cancelled) leaves a notice for its
-- parent there too (queue_notify.lua), sent on by the worker; a parent whose child failed under
-- the 'fail' policy comes to the queue marked 'cf' and fails here without running.
-- A job whose cancel was requested (queue_cancel.lua) ends as cancelled instead of being retried,
-- taken again after a stall or fetched again.
-- Finish codes: 1 completed, 3 failed, 4 will retry, 5 cancelled, 2 already finished with this
-- token (a re-sent call), 0 rejected (the token is not the job's: its lock was lost), -1 no such
-- job.
local SIZE = {n = 1, c = 2, f = 3, r = 4, x = 1}
local maxlen = tonumber(ARGV[2])
local lock_ms = tonumber(ARGV[4])
local count = tonumber(ARGV[5])
local max_stalled = tonumber(ARGV[6])
local lmax, lperiod = tonumber(ARGV[7]), tonumber(ARGV[8])
local keep = {tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])}
local letters = ARGV[13] == '1'
local m = tonumber(ARGV[14])
local mkeep = tonumber(ARGV[15])
if not (maxlen and lock_ms and lock_ms > 0 and count and count >= 0 and max_stalled and lmax
    and lperiod and keep[1] and keep[2] and keep[3] and keep[4] and m and m >= 0 and mkeep
    and mkeep >= 0) or ARGV[3] == '' then
  return redis.error_reply('ERR queue_step: bad arguments')
end
-- every finish is parsed before the first write
local finishes = {}
local at = 16
for i = 1, m do
  local kind, ats, ran, id = string.match(ARGV[at] or '', '^([ncfrx])(%d+)%.?(%d*):(.+)$')
  local size = SIZE[kind]
  if not size or at + size - 1 > #ARGV or (kind == 'r' and not tonumber(ARGV[at + 3])) then
    return redis.error_reply('ERR queue_step: bad finish')
  end
  finishes[i] = {kind, ARGV[3] .. ':' .. ats, id, at, ats, tonumber(ran)}
  at = at + size
end
if at ~= #ARGV + 1 then
  return redis.error_reply('ERR queue_step: bad arguments')
end

local events = KEYS[8]
-- include: queue_clock
local prefix = ARGV[1]
local wait, prio, delayed, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local function new_ord()
  return string.format('%016x', redis.call('HINCRBY', KEYS[7], 'seq', 1))
end

-- a job that ends gives up the dedup id it holds until then (Dedup without a ttl)
local dprefix = string.sub(prefix, 1, -3) .. 'dd:'
local function release(id, ddk, ddu)
  if ddk and ddu and redis.call('GET', dprefix .. ddk) == id then
    redis.call('DEL', dprefix .. ddk)
  end
end

-- include: queue_metrics
-- include: queue_requeue
-- include: queue_iterate
-- include: queue_notify
local flowq = {wait, prio, KEYS[7], KEYS[9], KEYS[15]}

-- retention: what the last job finished into each set asked for, or the queue's default
-- (a job asking to keep 0 is deleted by itself and leaves the others' retention as it is)
local trims = {}
local function retain(set, c, a, dc, da)
  local count = tonumber(c) or dc
  if tonumber(c) == 0 then
    return 0
  end
  trims[set] = {count, tonumber(a) or da}
  return count
end

local function remove_jobs(set, ids)
  for i = 1, #ids do
    redis.call('DEL', prefix .. ids[i])
  end
  for i = 1, #ids, 1000 do
    redis.call('ZREM', set, unpack(ids, i, math.min(i + 999, #ids)))
  end
end

local function trim(set, c, a)
  if c >= 0 then
    local excess = redis.call('ZCARD', set) - c
    if excess > 0 then
      remove_jobs(set, redis.call('ZRANGE', set, 0, math.min(excess, 1000) - 1))
    end
  end
  if a > 0 then
    remove_jobs(set, redis.call('ZRANGEBYSCORE', set, '-inf', now - a, 'LIMIT', 0, 1000))
  end
end

-- the errors of a job's last 10 failed attempts, in the job's hash as one JSON list ('eh':
-- [attempt, reason, the traceback's last 8 KiB, ms]); the full traceback of the last is 'stk'
local function attempt_failed(key, ats, reason, stack)
  local kept = redis.call('HGET', key, 'eh')
  local list = kept and cjson.decode(kept) or {}
  if #stack > 8192 then
    stack = '...\n' .. string.sub(stack, -8188)
  end
  list[#list + 1] = {tonumber(ats) or 0, reason, stack, now}
  while #list > 10 do
    table.remove(list, 1)
  end
  redis.call('HSET', key, 'eh', cjson.encode(list))
end

-- atm: the attempts made before this one; kf, kfa: the job's own retention of failed jobs;
-- ats: the attempt that failed
local function fail(key, id, reason, stack, atm, kf, kfa, ats, ddk, ddu, unrun)
  release(id, ddk, ddu)
  counted('f')
  local made = (tonumber(atm) or 0) + (unrun and 0 or 1) -- attempts made: one more unless unrun
  notify(flowq, prefix, KEYS[11], id, redis.call('HGET', key, 'par'), 'f', ats, reason)
  redis.call('HSET', key, 'st', 'failed', 'err', reason, 'stk', stack, 'fon', now, 'atm', made)
  attempt_failed(key, ats, reason, stack)
  if letters then
    local n, d = unpack(redis.call('HMGET', key, 'n', 'd'))
    redis.call('XADD', KEYS[11], '*', 'id', id, 'ats', ats or '0', 'n', n or '', 'd', d or 'null',
      'err', reason, 'atm', made)
  end
  if retain(KEYS[6], kf, kfa, keep[3], keep[4]) == 0 then
    redis.call('DEL', key)
  else
    redis.call('ZADD', KEYS[6], now, id)
  end
  event('failed', 'id', id, 'reason', string.sub(reason, 1, 1000))
end

-- a cancel request carried out: kf, kfa are the job's retention of failed jobs (cancelled ones
-- are kept like those)
local function cancel(key, id, reason, kf, kfa, ddk, ddu)
  release(id, ddk, ddu)
  counted('x')
  notify(flowq, prefix, KEYS[11], id, redis.call('HGET', key, 'par'), 'x',
    redis.call('HGET', key, 'ats'), reason)
  redis.call('HSET', key, 'st', 'cancelled', 'err', reason, 'fon', now)
  if retain(KEYS[13], kf, kfa, keep[3], keep[4]) == 0 then
    redis.call('DEL', key)
  else
    redis.call('ZADD', KEYS[13], now, id)
  end
  event('cancelled', 'id', id, 'reason', string.sub(reason, 1, 1000))
end

-- 1. finishes
local codes = {}
for i = 1, m do
  local kind, token, id, b, ats, ran = unpack(finishes[i])
  local key = prefix .. id
  local st, tok, atm, kc, ka, kf, kfa, ddk, ddu, cx, pon, par = unpack(redis.call('HMGET', key,
    'st', 'tok', 'atm', 'kc', 'ka', 'kf', 'kfa', 'ddk', 'ddu', 'cx', 'pon', 'par'))
  if not st then
    redis.call('ZREM', active, id)
    codes[i] = -1
  elseif tok ~= token then
    codes[i] = 0
  elseif st ~= 'active' then
    codes[i] = 2
  else
    redis.call('ZREM', active, id)
    if kind ~= 'x' and pon then -- the worker's own measure, never more than Redis saw
      local span = now - tonumber(pon)
      observe('r', ran and math.min(ran, span) or span)
    end
    if kind == 'n' or kind == 'c' then
      release(id, ddk, ddu)
      local rv = kind == 'n' and 'null' or ARGV[b + 1]
      notify(flowq, prefix, KEYS[11], id, par, 'c', ats, rv)
      redis.call('HSET', key, 'st', 'completed', 'rv', rv, 'fon', now, 'atm', (tonumber(atm) or 0) + 1)
      if retain(KEYS[5], kc, ka, keep[1], keep[2]) == 0 then
        redis.call('DEL', key)
      else
        redis.call('ZADD', KEYS[5], now, id)
      end
      event('completed', 'id', id)
      counted('c')
      codes[i] = 1
    elseif kind == 'f' then
      fail(key, id, ARGV[b + 1], ARGV[b + 2], atm, kf, kfa, ats, ddk, ddu)
      codes[i] = 3
    elseif kind == 'x' or cx then -- cancelled, or a retry of a job whose cancel was asked for
      redis.call('HSET', key, 'atm', (tonumber(atm) or 0) + 1)
      cancel(key, id, cx or 'cancelled', kf, kfa, ddk, ddu)
      codes[i] = 5
    else
      redis.call('HSET', key, 'err', ARGV[b + 1], 'stk', ARGV[b + 2], 'atm', (tonumber(atm) or 0) + 1)
      attempt_failed(key, ats, ARGV[b + 1], ARGV[b + 2])
      local delay = tonumber(ARGV[b + 3])
      if delay > 0 then
        local ord = new_ord()
        redis.call('HSET', key, 'st', 'delayed', 'ord', ord)
        redis.call('ZADD', delayed, now + delay, ord .. id)
      else
        requeue(wait, prio, KEYS[7], key, id, false)
      end
      event('retried', 'id', id, 'delay', delay, 'reason', string.sub(ARGV[b + 1], 1, 1000))
      codes[i] = 4
    end
  end
end
for set, kept in pairs(trims) do
  trim(set, kept[1], kept[2])
end

-- 2. stalled jobs: their lock expired, so their worker is gone or frozen
local stalled_failed = {}
local stale = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, 100)
if #stale > 0 then
  trims = {}
  for i = 1, #stale do
    local id = stale[i]
    local key = prefix .. id
    redis.call('ZREM', active, id)
    local st, stc, atm, kf, kfa, ats, ddk, ddu, cx = unpack(redis.call('HMGET', key, 'st', 'stc',
      'atm', 'kf', 'kfa', 'ats', 'ddk', 'ddu', 'cx'))
    if st and cx then
      redis.call('HDEL', key, 'tok')
      cancel(key, id, cx, kf, kfa, ddk, ddu)
    elseif st then
      stc = (tonumber(stc) or 0) + 1
      redis.call('HSET', key, 'stc', stc)
      redis.call('HDEL', key, 'tok')
      event('stalled', 'id', id, 'count', stc)
      if stc > max_stalled then
        fail(key, id, 'stalled ' .. stc .. ' times (max_stalled is ' .. max_stalled ..
          '): its worker stopped renewing its lock (killed, crashed or frozen)', '', atm, kf, kfa,
          ats, ddk, ddu)
        stalled_failed[#stalled_failed + 1] = id
      else
        requeue(wait, prio, KEYS[7], key, id, true)
      end
    end
  end
  for set, kept in pairs(trims) do
    trim(set, kept[1], kept[2])
  end
end

-- 3. delayed jobs that are due
local refill = {}
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
if #due > 0 then
  for i = 1, #due do
    local id = string.sub(due[i], 17)
    local key = prefix .. id
    local st, sch, slot = unpack(redis.call('HMGET', key, 'st', 'sch', 'slot'))
    if st and sch then
      -- a scheduler's run: when it is the pending one (not a retry), its successor is made now
      local skey = KEYS[12] .. ':' .. sch
      local pend, mis, grace = unpack(redis.call('HMGET', skey, 'pend', 'mis', 'grace'))
      if pend == slot then
        redis.call('HSET', skey, 'ran', slot)
        local late = now - tonumber(slot)
        if mis == 'skip' and late > (tonumber(grace) or 0) then
          st = nil
          redis.call('DEL', key)
          event('skipped', 'id', id, 'late', late)
        end
        if next_run(sch, skey, KEYS[12], delayed, KEYS[7]) == 1 then
          refill[#refill + 1] = sch
        end
      end
    end
    if st then
      requeue(wait, prio, KEYS[7], key, id, false)
    end
  end
  for i = 1, #due, 1000 do
    redis.call('ZREM', delayed, unpack(due, i, math.min(i + 999, #due)))
  end
end

-- 4. fetch
local status, limit_wait = 0, 0
local want = count
if want > 0 and redis.call('HGET', KEYS[7], 'paused') then
  want, status = 0, 1
end
if want > 0 and lmax > 0 then
  local used = tonumber(redis.call('GET', KEYS[10]) or '0')
  if used >= lmax then
    want, status = 0, 2
    limit_wait = redis.call('PTTL', KEYS[10])
    if limit_wait < 0 then
      redis.call('PEXPIRE', KEYS[10], lperiod)
      limit_wait = lperiod
    end
  elseif lmax - used < want then
    want = lmax - used
  end
end
local jobs = {}
local taken = 0
if want > 0 then
  local ids = redis.call('LPOP', wait, want) or {}
  if #ids < want then
    local more = redis.call('ZPOPMIN', prio, want - #ids)
    for i = 1, #more, 2 do
      ids[#ids + 1] = string.sub(more[i], 17)
    end
  end
  local base = ARGV[3] .. ':'
  for i = 1, #ids do
    local id = ids[i]
    local key = prefix .. id
    local f = redis.call('HMGET', key, 'n', 'd', 'o', 'atm', 'ts', 'ats', 'cx', 'dl', 'cf')
    if f[7] then -- cancelled while back in the queue (given back by a stopping worker, say)
      cancel(key, id, f[7], unpack(redis.call('HMGET', key, 'kf', 'kfa', 'ddk', 'ddu')))
    elseif f[9] then -- a parent whose child failed under the 'fail' policy: it fails unrun
      local kf, kfa, ddk, ddu = unpack(redis.call('HMGET', key, 'kf', 'kfa', 'ddk', 'ddu'))
      trims = {}
      fail(key, id, f[9], '', f[4], kf, kfa, f[6], ddk, ddu, true)
      for set, kept in pairs(trims) do
        trim(set, kept[1], kept[2])
      end
    elseif f[1] then
      local ats = (tonumber(f[6]) or 0) + 1
      if ats == 1 then -- waited from its add (or from when it came due) to this first start
        observe('w', now - tonumber(f[5]) - (tonumber(f[8]) or 0))
      end
      redis.call('HSET', key, 'st', 'active', 'tok', base .. ats, 'pon', now, 'ats', ats)
      redis.call('ZADD', active, now + lock_ms, id)
      jobs[#jobs + 1] = id
      jobs[#jobs + 1] = ats
      jobs[#jobs + 1] = f[1]
      jobs[#jobs + 1] = f[2]
      jobs[#jobs + 1] = f[3] or ''
      jobs[#jobs + 1] = f[4] or '0'
      jobs[#jobs + 1] = f[5]
      event('active', 'id', id)
      taken = taken + 1
    end
  end
  if lmax > 0 and taken > 0 and redis.call('INCRBY', KEYS[10], taken) == taken then
    redis.call('PEXPIRE', KEYS[10], lperiod)
  end
  if #ids == want and (redis.call('LLEN', wait) > 0 or redis.call('ZCARD', prio) > 0) then
    redis.call('ZADD', KEYS[9], 0, '0') -- more jobs: wake another waiting worker
  end
end

flush_metrics(KEYS[14])

local next_due = -1
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if first[2] then
  next_due = math.max(0, tonumber(first[2]) - now)
end
return {status, limit_wait, next_due, codes, jobs, stalled_failed, redis.call('XLEN', KEYS[11]),
  refill}
