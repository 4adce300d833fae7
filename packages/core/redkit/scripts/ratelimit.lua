-- One rate-limit check of one or more limits, atomically: either every limit admits the request
-- and (in hit mode) each is charged, or nothing is charged. Time is Redis' own (TIME); the
-- fixed window does not need it and reports now_ms as 0.
--
-- KEYS[1]          index set of the state keys of this rate-limit key (read by reset())
-- KEYS[2..n+1]     one state key per limit
-- ARGV[1]          'hit', 'test' or 'refund' (give back cost units an earlier hit charged)
-- ARGV[2]          algorithm: fixed_window | sliding_window_log | sliding_window_counter |
--                  token_bucket | gcra
-- ARGV[3]          cost (integer >= 1)
-- ARGV[4], ARGV[5] amount and period (ms) of limit 1, then of limit 2, ...
--
-- Returns {allowed (1|0), now_ms, then per limit: remaining, reset_after_ms, retry_after_ms}
-- where retry_after_ms is 0 for a limit that admits the request and -1 when the cost exceeds
-- the limit's amount (it never will). A denied request (or a test) counts nothing; the log
-- algorithm still drops entries that have left its window. A refund returns 1.
--
-- Each algorithm is written inline, in two passes (read and judge every limit, then write them
-- all): this script runs on every request, and closures or helper calls cost real time here.

local mode, algo, cost = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = #KEYS - 1
if (mode ~= 'hit' and mode ~= 'test' and mode ~= 'refund') or not cost or cost < 1 or cost % 1 ~= 0
    or n < 1 or #ARGV ~= 3 + 2 * n then
  return redis.error_reply('ERR redkit ratelimit: bad arguments')
end
local amounts, periods, longest = {}, {}, 0
for i = 1, n do
  local amount, period = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  if not amount or amount < 1 or amount % 1 ~= 0 or not period or period < 1 then
    return redis.error_reply('ERR redkit ratelimit: bad limit')
  end
  amounts[i], periods[i] = amount, period
  if period > longest then longest = period end
end

if mode == 'refund' then
  -- undo a charge: never below an empty state, lifetimes kept (they only get longer than needed)
  local now = 0
  if algo ~= 'fixed_window' and algo ~= 'sliding_window_log' then
    local t = redis.call('TIME')
    now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
  end
  for i = 1, n do
    local k, amount, period = KEYS[i + 1], amounts[i], periods[i]
    if algo == 'fixed_window' then
      local count = tonumber(redis.call('GET', k) or '0')
      if count > 0 then redis.call('DECRBY', k, math.min(cost, count)) end
    elseif algo == 'sliding_window_log' then
      redis.call('ZPOPMAX', k, cost)
    elseif algo == 'sliding_window_counter' then
      local v = redis.call('HMGET', k, 'w', 'c', 'p')
      local w, c, p = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
      if w ~= nil and w >= math.floor(now / period) - 1 then
        -- the stored window is the current one (or, not rotated yet, the previous one)
        local back = math.min(cost, c)
        redis.call('HSET', k, 'c', c - back, 'p', math.max(0, p - (cost - back)))
      end
    elseif algo == 'token_bucket' then
      local v = redis.call('HMGET', k, 'tk', 'ts')
      if v[1] then
        local rate = amount / period
        local tokens = tonumber(v[1]) + math.max(0, now - tonumber(v[2])) * rate
        tokens = math.min(amount, tokens + cost)
        redis.call('HSET', k, 'tk', string.format('%.17g', tokens),
          'ts', string.format('%.17g', now))
      end
    elseif algo == 'gcra' then
      local stored = redis.call('GET', k)
      if stored then
        local tat = tonumber(stored) - cost * period / amount
        if tat <= now then
          redis.call('DEL', k)
        else
          redis.call('SET', k, string.format('%.17g', tat),
            'PX', string.format('%d', math.max(1, math.ceil(tat - now))))
        end
      end
    else
      return redis.error_reply('ERR redkit ratelimit: unknown algorithm')
    end
  end
  return 1
end

local charge = mode == 'hit'
local out = {1, 0}
local allowed = true
local created = false -- whether a write creates a state key (then it joins the index)
local EPS = 1e-3 -- ms; above the rounding step of a float ms timestamp (~2.4e-4)

-- reply fields of limit i: out[3i] remaining, out[3i+1] reset_after_ms, out[3i+2] retry_after_ms
local function deny(i, retry, never)
  allowed = false
  out[1] = 0
  if never then out[3 * i + 2] = -1 else out[3 * i + 2] = math.ceil(retry) end
end

if algo == 'fixed_window' then
  -- a counter created with the window's lifetime; the window starts at the first request
  local counts, lifeless = {}, {}
  for i = 1, n do
    local k, amount, period = KEYS[i + 1], amounts[i], periods[i]
    local count = tonumber(redis.call('GET', k) or '0')
    local pttl = period
    if count > 0 then
      pttl = redis.call('PTTL', k)
      if pttl < 0 then pttl, lifeless[i] = period, true end
    end
    counts[i] = count
    out[3 * i], out[3 * i + 2] = amount - count, 0
    out[3 * i + 1] = (count > 0) and pttl or 0 -- a window that has not started is all there
    if count + cost > amount then deny(i, pttl, cost > amount) end
  end
  if allowed and charge then
    for i = 1, n do
      local k = KEYS[i + 1]
      out[3 * i] = out[3 * i] - cost
      out[3 * i + 1] = (counts[i] > 0) and out[3 * i + 1] or periods[i]
      if counts[i] == 0 then
        redis.call('SET', k, cost, 'PX', periods[i])
        created = true
      else
        redis.call('INCRBY', k, cost)
        if lifeless[i] then redis.call('PEXPIRE', k, periods[i]) end
      end
    end
  end
else
  local t = redis.call('TIME')
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local now = now_us / 1000 -- ms, fractional
  out[2] = math.floor(now)

  if algo == 'sliding_window_log' then
    -- one sorted-set member per admitted unit, scored by its time in µs
    local counts, newest = {}, {}
    for i = 1, n do
      local k, amount, period_us = KEYS[i + 1], amounts[i], periods[i] * 1000
      redis.call('ZREMRANGEBYSCORE', k, '-inf', string.format('%d', now_us - period_us))
      local count = redis.call('ZCARD', k)
      local last = now_us
      if count > 0 then last = tonumber(redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')[2]) end
      counts[i], newest[i] = count, last
      out[3 * i], out[3 * i + 2] = amount - count, 0
      out[3 * i + 1] = (count > 0) and math.ceil((last + period_us - now_us) / 1000) or 0
      if count + cost > amount then
        if cost > amount then
          deny(i, 0, true)
        else
          -- it fits once the (count + cost - amount) oldest entries have left the window
          local at = count + cost - amount - 1
          local s = redis.call('ZRANGE', k, at, at, 'WITHSCORES')
          deny(i, (tonumber(s[2]) + period_us - now_us) / 1000, false)
        end
      end
    end
    if allowed and charge then
      for i = 1, n do
        local k = KEYS[i + 1]
        -- scores strictly increase, so members (their own scores) are unique
        local base = now_us
        if counts[i] > 0 then base = math.max(now_us, newest[i] + 1) else created = true end
        local args = {}
        for j = 0, cost - 1 do
          local score = string.format('%d', base + j)
          args[#args + 1] = score
          args[#args + 1] = score
          if #args >= 2000 then
            redis.call('ZADD', k, unpack(args))
            args = {}
          end
        end
        if #args > 0 then redis.call('ZADD', k, unpack(args)) end
        local life = periods[i] + (base + cost - 1 - now_us) / 1000
        redis.call('PEXPIRE', k, string.format('%d', math.ceil(life)))
        out[3 * i] = out[3 * i] - cost
        out[3 * i + 1] = math.ceil(life)
      end
    end

  elseif algo == 'sliding_window_counter' then
    -- counts of two aligned windows; the previous one weighs by how much it still overlaps
    local wins, cs, ps, elapsed = {}, {}, {}, {}
    for i = 1, n do
      local k, amount, period = KEYS[i + 1], amounts[i], periods[i]
      local win = math.floor(now / period)
      local e = now - win * period
      local v = redis.call('HMGET', k, 'w', 'c', 'p')
      local w, c, p = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
      if w == nil then
        c, p = 0, 0
        created = true
      elseif w > win then
        -- Redis' clock went back into an earlier window: keep counting in the stored one
        win, e = w, 0
      elseif w == win - 1 then
        p, c = c, 0
      elseif w ~= win then
        c, p = 0, 0
      end
      wins[i], cs[i], ps[i], elapsed[i] = win, c, p, e
      local est = p * (period - e) / period + c
      out[3 * i] = math.floor(amount - est + EPS)
      out[3 * i + 2] = 0
      if c > 0 then
        out[3 * i + 1] = math.ceil(2 * period - e)
      elseif p > 0 then
        out[3 * i + 1] = math.ceil(period - e)
      else
        out[3 * i + 1] = 0
      end
      if est + cost > amount + EPS then
        local retry
        if cost > amount then
          retry = -1
        elseif c + cost <= amount then
          -- later in this window, once the previous window's weight has dropped enough
          retry = period - (amount - c - cost) * period / p - e
        else
          -- in the next window, where this window's count becomes the weighted one
          local x = 0
          if c > 0 then x = period * (1 - (amount - cost) / c) end
          retry = period - e + math.max(0, x)
        end
        if retry >= 0 and retry < 1 then retry = 1 end
        deny(i, retry, retry < 0)
      end
    end
    if allowed and charge then
      for i = 1, n do
        local period, e = periods[i], elapsed[i]
        redis.call('HSET', KEYS[i + 1], 'w', wins[i], 'c', cs[i] + cost, 'p', ps[i])
        redis.call('PEXPIRE', KEYS[i + 1], string.format('%d', math.ceil(2 * period - e)))
        local est = ps[i] * (period - e) / period + cs[i] + cost
        out[3 * i] = math.floor(amounts[i] - est + EPS)
        out[3 * i + 1] = math.ceil(2 * period - e)
      end
    end

  elseif algo == 'token_bucket' then
    -- a bucket of `amount` tokens refilled continuously at amount/period
    local left = {}
    for i = 1, n do
      local amount, period = amounts[i], periods[i]
      local rate = amount / period -- tokens per ms
      local v = redis.call('HMGET', KEYS[i + 1], 'tk', 'ts')
      local tokens = amount
      if v[1] then
        tokens = math.min(amount, tonumber(v[1]) + math.max(0, now - tonumber(v[2])) * rate)
      else
        created = true
      end
      left[i] = tokens
      out[3 * i], out[3 * i + 1], out[3 * i + 2] =
        math.floor(tokens + EPS), math.ceil((amount - tokens) / rate), 0
      if tokens + EPS < cost then deny(i, (cost - tokens) / rate, cost > amount) end
    end
    if allowed and charge then
      for i = 1, n do
        local amount, rate = amounts[i], amounts[i] / periods[i]
        local rest = math.max(0, left[i] - cost)
        local refill = (amount - rest) / rate
        redis.call('HSET', KEYS[i + 1], 'tk', string.format('%.17g', rest),
          'ts', string.format('%.17g', now))
        redis.call('PEXPIRE', KEYS[i + 1], string.format('%d', math.ceil(refill + 1)))
        out[3 * i], out[3 * i + 1] = math.floor(rest + EPS), math.ceil(refill)
      end
    end

  elseif algo == 'gcra' then
    -- the theoretical arrival time (TAT) of the next request; one unit every period/amount
    local tats = {}
    for i = 1, n do
      local amount, period = amounts[i], periods[i]
      local interval = period / amount
      local stored = redis.call('GET', KEYS[i + 1])
      local tat = now
      if stored then tat = math.max(now, tonumber(stored)) else created = true end
      tats[i] = tat
      local level = tat - now
      out[3 * i] = math.min(amount, math.floor((period - level) / interval + EPS))
      out[3 * i + 1], out[3 * i + 2] = math.ceil(level), 0
      local over = tat + cost * interval - now - period
      if over > EPS then deny(i, over, cost > amount) end
    end
    if allowed and charge then
      for i = 1, n do
        local amount, period = amounts[i], periods[i]
        local interval = period / amount
        local new_tat = tats[i] + cost * interval
        local level = new_tat - now
        redis.call('SET', KEYS[i + 1], string.format('%.17g', new_tat),
          'PX', string.format('%d', math.max(1, math.ceil(level))))
        out[3 * i] = math.min(amount, math.floor((period - level) / interval + EPS))
        out[3 * i + 1] = math.ceil(level)
      end
    end

  else
    return redis.error_reply('ERR redkit ratelimit: unknown algorithm')
  end
end

for i = 1, n do
  if out[3 * i] < 0 then out[3 * i] = 0 end
end

if allowed and charge then
  -- the index lists every state key, so reset() finds them without SCAN, and it outlives them
  -- all. A fixed window's key keeps the lifetime it was created with; the other algorithms'
  -- lifetimes move with every hit, and so does the index's.
  local idx_ttl = string.format('%d', 2 * longest + 1000)
  if created then
    for i = 1, n do redis.call('SADD', KEYS[1], KEYS[i + 1]) end
    if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], idx_ttl) end
  end
  if created or algo ~= 'fixed_window' then redis.call('PEXPIRE', KEYS[1], idx_ttl, 'GT') end
end
return out
