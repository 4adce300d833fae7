-- One rate-limit check of one or more limits, atomically: either every limit admits the request
-- and (in hit mode) each is charged, or nothing is charged. Time is Redis' own (TIME).
--
-- KEYS[1]          index set of the state keys of this rate-limit key (read by ratelimit_reset)
-- KEYS[2..n+1]     one state key per limit
-- ARGV[1]          'hit' or 'test'
-- ARGV[2]          algorithm: fixed_window | sliding_window_log | sliding_window_counter |
--                  token_bucket | gcra
-- ARGV[3]          cost (integer >= 1)
-- ARGV[4], ARGV[5] amount and period (ms) of limit 1, then of limit 2, ...
--
-- Returns {allowed (1|0), now_ms, then per limit: remaining, reset_after_ms, retry_after_ms}
-- where retry_after_ms is 0 for a limit that admits the request and -1 when the cost exceeds
-- the limit's amount (it never will). A denied request (or a test) counts nothing; the log
-- algorithm still drops entries that have left its window.

local mode, algo, cost = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = #KEYS - 1
if (mode ~= 'hit' and mode ~= 'test') or not cost or cost < 1 or cost % 1 ~= 0
    or n < 1 or #ARGV ~= 3 + 2 * n then
  return redis.error_reply('ERR redkit ratelimit: bad arguments')
end
local amounts, periods = {}, {}
for i = 1, n do
  local amount, period = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  if not amount or amount < 1 or amount % 1 ~= 0 or not period or period < 1 then
    return redis.error_reply('ERR redkit ratelimit: bad limit')
  end
  amounts[i], periods[i] = amount, period
end

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = now_us / 1000 -- ms, fractional
local EPS = 1e-6
local charge = mode == 'hit' -- whether remaining/reset describe the state after this request

local function fmt(x) return string.format('%.17g', x) end
local function ms(x) return string.format('%d', math.ceil(x)) end

-- each algorithm's check(i) returns ok, remaining, reset_ms, retry_ms, write (a function or nil),
-- created (whether the write creates the key)
local check

if algo == 'fixed_window' then
  check = function(i)
    local k, amount, period = KEYS[i + 1], amounts[i], periods[i]
    local count = tonumber(redis.call('GET', k) or '0')
    local pttl = period
    if count > 0 then
      pttl = redis.call('PTTL', k)
      if pttl < 0 then pttl = period end
    end
    local ok = count + cost <= amount
    local retry = 0
    if not ok then retry = (cost > amount) and -1 or pttl end
    local remaining = amount - count - ((ok and charge) and cost or 0)
    local write = function()
      if count == 0 then
        redis.call('SET', k, cost, 'PX', period)
      else
        redis.call('INCRBY', k, cost)
        if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, period) end
      end
    end
    return ok, remaining, pttl, retry, write, count == 0
  end

elseif algo == 'sliding_window_log' then
  check = function(i)
    local k, amount, period = KEYS[i + 1], amounts[i], periods[i]
    local period_us = period * 1000
    redis.call('ZREMRANGEBYSCORE', k, '-inf', string.format('%d', now_us - period_us))
    local count = redis.call('ZCARD', k)
    local ok = count + cost <= amount
    local retry = 0
    if not ok then
      if cost > amount then
        retry = -1
      else
        -- the request fits once the (count + cost - amount) oldest entries have left the window
        local s = redis.call('ZRANGE', k, count + cost - amount - 1, count + cost - amount - 1,
          'WITHSCORES')
        retry = (tonumber(s[2]) + period_us - now_us) / 1000
      end
    end
    local newest = now_us
    if count > 0 then
      newest = tonumber(redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')[2])
    end
    local reset = 0
    if count > 0 then reset = (newest + period_us - now_us) / 1000 end
    local remaining = amount - count - ((ok and charge) and cost or 0)
    local write = function()
      -- one member per unit of cost; scores strictly increase, so members are unique
      local base = math.max(now_us, (count > 0) and (newest + 1) or now_us)
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
      redis.call('PEXPIRE', k, ms(period + (base + cost - 1 - now_us) / 1000))
    end
    if ok and charge then reset = period end
    return ok, remaining, reset, retry, write, count == 0
  end

elseif algo == 'sliding_window_counter' then
  check = function(i)
    local k, amount, period = KEYS[i + 1], amounts[i], periods[i]
    local win = math.floor(now / period)
    local elapsed = now - win * period
    local v = redis.call('HMGET', k, 'w', 'c', 'p')
    local w, c, p = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
    if w == nil then
      c, p = 0, 0
    elseif w == win - 1 then
      p, c = c, 0
    elseif w ~= win then
      c, p = 0, 0
    end
    local weight = (period - elapsed) / period
    local est = p * weight + c
    local ok = est + cost <= amount + EPS
    local retry = 0
    if not ok then
      if cost > amount then
        retry = -1
      elseif c + cost <= amount then
        -- later in this window, once the previous window's weight has dropped enough
        retry = period - (amount - c - cost) * period / p - elapsed
      else
        -- in the next window, where this window's count becomes the weighted one
        local x = 0
        if c > 0 then x = period * (1 - (amount - cost) / c) end
        retry = period - elapsed + math.max(0, x)
      end
      if retry >= 0 and retry < 1 then retry = 1 end
    end
    local used = est + ((ok and charge) and cost or 0)
    local remaining = math.floor(amount - used + EPS)
    local reset = 0
    if c > 0 or (ok and charge) then
      reset = 2 * period - elapsed
    elseif p > 0 then
      reset = period - elapsed
    end
    local write = function()
      redis.call('HSET', k, 'w', win, 'c', c + cost, 'p', p)
      redis.call('PEXPIRE', k, ms(2 * period - elapsed))
    end
    return ok, remaining, reset, retry, write, w == nil
  end

elseif algo == 'token_bucket' then
  check = function(i)
    local k, amount, period = KEYS[i + 1], amounts[i], periods[i]
    local rate = amount / period -- tokens per ms
    local v = redis.call('HMGET', k, 'tk', 'ts')
    local tokens = amount
    local created = true
    if v[1] then
      created = false
      local elapsed = math.max(0, now - tonumber(v[2]))
      tokens = math.min(amount, tonumber(v[1]) + elapsed * rate)
    end
    local ok = tokens + EPS >= cost
    local retry = 0
    if not ok then retry = (cost > amount) and -1 or (cost - tokens) / rate end
    local left = ok and (tokens - cost) or tokens
    if left < 0 then left = 0 end
    local shown = charge and left or tokens
    local remaining = math.floor(shown + EPS)
    local reset = (amount - shown) / rate
    local write = function()
      redis.call('HSET', k, 'tk', fmt(left), 'ts', fmt(now))
      redis.call('PEXPIRE', k, ms((amount - left) / rate + 1))
    end
    return ok, remaining, reset, retry, write, created
  end

elseif algo == 'gcra' then
  check = function(i)
    local k, amount, period = KEYS[i + 1], amounts[i], periods[i]
    local interval = period / amount -- emission interval, ms
    local stored = redis.call('GET', k)
    local tat = now
    if stored then tat = math.max(now, tonumber(stored)) end
    local new_tat = tat + cost * interval
    local ok = new_tat - now <= period + EPS
    local retry = 0
    if not ok then retry = (cost > amount) and -1 or (new_tat - now - period) end
    local level = ((ok and charge) and new_tat or tat) - now
    local remaining = math.floor((period - level) / interval + EPS)
    local write = function()
      redis.call('SET', k, fmt(new_tat), 'PX', ms(new_tat - now))
    end
    return ok, remaining, level, retry, write, stored == false
  end

else
  return redis.error_reply('ERR redkit ratelimit: unknown algorithm')
end

local allowed = true
local out = {0, math.floor(now)}
local writes, created, longest = {}, false, 0
for i = 1, n do
  local ok, remaining, reset, retry, write, new = check(i)
  if not ok then allowed = false end
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(reset)
  out[#out + 1] = (retry < 0) and -1 or math.ceil(retry)
  writes[i] = write
  if new then created = true end
  if periods[i] > longest then longest = periods[i] end
end

if allowed then
  out[1] = 1
  if mode == 'hit' then
    for i = 1, n do writes[i]() end
    -- the index lists every state key so reset() finds them without SCAN; it outlives them all
    local idx_ttl = ms(2 * longest + 1000)
    if created then
      for i = 1, n do redis.call('SADD', KEYS[1], KEYS[i + 1]) end
      if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], idx_ttl) end
    end
    redis.call('PEXPIRE', KEYS[1], idx_ttl, 'GT')
  end
end
return out
