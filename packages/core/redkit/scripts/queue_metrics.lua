-- Included by the scripts that count finished jobs (`-- include: queue_metrics`), never called
-- alone; it uses the including script's `now` and `mkeep` (minutes of counts kept, 0: none).
-- Metrics (when kept): counts per minute in a ring of `mkeep` minutes (fields c:, f:, x: and the
-- minute each slot holds, m:), wait and run time histograms per minute in a ring of 60 minutes
-- (w:<slot>:<bucket>, r:<slot>:<bucket>, hm:<slot>), and totals since the start for Prometheus
-- (ct, ft, xt, wt:<bucket>, rt:<bucket>, wsum, rsum); gathered here, written once at the end
local BOUNDS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
  900000, 3600000} -- ms: bucket i counts durations up to BOUNDS[i]; the last one, longer ones
local incs = {}
local minute = math.floor(now / 60000)
local slot, hslot = mkeep > 0 and minute % mkeep or 0, minute % 60
local function bump(field, by)
  incs[field] = (incs[field] or 0) + by
end
local function counted(kind) -- 'c' completed, 'f' failed for good, 'x' cancelled
  if mkeep > 0 then
    bump(kind .. ':' .. slot, 1)
    bump(kind .. 't', 1)
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
    bump(kind .. ':' .. hslot .. ':' .. b, 1)
    bump(kind .. 't:' .. b, 1)
    bump(kind .. 'sum', ms)
  end
end

local function flush_metrics(mk)
  if not next(incs) then
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
  for field, by in pairs(incs) do
    redis.call('HINCRBY', mk, field, by)
  end
end
