-- Included by the scripts that count finished jobs (`-- include: queue_metrics`), never called
-- alone; it uses the including script's `now` and `mkeep` (minutes of counts kept, 0: none).
-- Metrics (when kept): counts per minute in a ring of `mkeep` minutes (fields c:, f:, x: and the
-- minute each slot holds, m:), wait and run time histograms per minute in a ring of 60 minutes
-- (w:<slot>:<bucket>, r:<slot>:<bucket>, hm:<slot>), and totals since the start for Prometheus
-- (ct, ft, xt, wt:<bucket>, rt:<bucket>, wsum, rsum); gathered here, written once at the end
local BOUNDS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
  900000, 3600000} -- ms: bucket i counts durations up to BOUNDS[i]; the last one, longer ones
local minute = math.floor(now / 60000)
local slot, hslot = mkeep > 0 and minute % mkeep or 0, minute % 60
-- gathered with integer keys (no string is built per job), written by flush_metrics()
local counts = {c = 0, f = 0, x = 0}
local hist = {w = {}, r = {}}
local sums = {w = 0, r = 0}
local observed = false
local function counted(kind) -- 'c' completed, 'f' failed for good, 'x' cancelled
  if mkeep > 0 then
    counts[kind] = counts[kind] + 1
    observed = true
  end
end
local function observe(kind, ms) -- 'w' wait before the first start, 'r' run of an attempt
  if mkeep > 0 and ms then
    ms = math.max(0, ms)
    local b = #BOUNDS + 1
    for i = 1, #BOUNDS do
      if ms <= BOUNDS[i] then
        b = i
        break
      end
    end
    local h = hist[kind]
    h[b] = (h[b] or 0) + 1
    sums[kind] = sums[kind] + ms
    observed = true
  end
end

local function flush_metrics(mk)
  if not observed then
    return
  end
  local owner, howner = unpack(redis.call('HMGET', mk, 'm:' .. slot, 'hm:' .. hslot))
  if tonumber(owner) ~= minute then -- the slot held an older minute: it starts again
    redis.call('HSET', mk, 'm:' .. slot, minute, 'c:' .. slot, 0, 'f:' .. slot, 0, 'x:' .. slot,
      0, 'size', mkeep)
  end
  if tonumber(howner) ~= minute then
    local old = {}
    for b = 1, #BOUNDS + 1 do
      old[#old + 1] = 'w:' .. hslot .. ':' .. b
      old[#old + 1] = 'r:' .. hslot .. ':' .. b
    end
    redis.call('HDEL', mk, unpack(old))
    redis.call('HSET', mk, 'hm:' .. hslot, minute)
  end
  for kind, n in pairs(counts) do
    if n > 0 then
      redis.call('HINCRBY', mk, kind .. ':' .. slot, n)
      redis.call('HINCRBY', mk, kind .. 't', n)
    end
  end
  for kind, h in pairs(hist) do
    for b, n in pairs(h) do
      redis.call('HINCRBY', mk, kind .. ':' .. hslot .. ':' .. b, n)
      redis.call('HINCRBY', mk, kind .. 't:' .. b, n)
    end
    if sums[kind] > 0 then
      redis.call('HINCRBY', mk, kind .. 'sum', sums[kind])
    end
  end
end
