-- Atomic counter that always carries a TTL, of any size: INCRBY while the value fits in 64
-- bits, decimal arithmetic on the stored digits beyond (the entry stays a bare integer).
-- KEYS[1] entry; ARGV[1] delta (decimal), ARGV[2] lifetime ms, ARGV[3] '1': a missing entry
-- starts at 0, '0': a missing entry is left missing.
-- Returns the new value as an integer when it is below 2**53 in size (a Lua number holds it
-- exactly), else {1, the new value's digits}; {0} when the entry is missing and ARGV[3] is '0',
-- {2} when the entry does not hold an integer.
local key, delta, ms = KEYS[1], ARGV[1], ARGV[2]
-- one PTTL says both whether the entry exists (-2) and whether it has a TTL (-1: none)
local pttl = redis.call('PTTL', key)
if pttl == -2 and ARGV[3] ~= '1' then
  return {0}
end
local ok, value = pcall(redis.call, 'INCRBY', key, delta)
if ok then
  if pttl < 0 then
    redis.call('PEXPIRE', key, ms)
  end
  if value > -9007199254740992 and value < 9007199254740992 then
    return value
  end
  return {1, redis.call('GET', key)}
end
local current = redis.call('GET', key) or '0'

-- beyond 64 bits: signed decimal strings, canonical (no leading zeros, no '-0')
local function split(s)
  if string.sub(s, 1, 1) == '-' then
    return true, string.sub(s, 2)
  end
  return false, s
end
local function canonical(s)
  local negative, digits = split(s)
  return string.find(digits, '^[1-9]%d*$') ~= nil or (digits == '0' and not negative)
end
if not canonical(current) then
  return {2}
end
local function compare(a, b) -- magnitudes
  if #a ~= #b then
    return #a < #b and -1 or 1
  end
  if a == b then
    return 0
  end
  return a < b and -1 or 1
end
local function add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry + (i > 0 and tonumber(string.sub(a, i, i)) or 0)
      + (j > 0 and tonumber(string.sub(b, j, j)) or 0)
    out[#out + 1] = d % 10
    carry = math.floor(d / 10)
    i, j = i - 1, j - 1
  end
  return string.reverse(table.concat(out))
end
local function subtract(a, b) -- a >= b
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = tonumber(string.sub(a, i, i)) - borrow - (j > 0 and tonumber(string.sub(b, j, j)) or 0)
    borrow = 0
    if d < 0 then
      d, borrow = d + 10, 1
    end
    out[#out + 1] = d
    i, j = i - 1, j - 1
  end
  local s = string.gsub(string.reverse(table.concat(out)), '^0+', '')
  return s == '' and '0' or s
end
local na, a = split(current)
local nb, b = split(delta)
local negative, digits
if na == nb then
  negative, digits = na, add(a, b)
elseif compare(a, b) >= 0 then
  negative, digits = na, subtract(a, b)
else
  negative, digits = nb, subtract(b, a)
end
local result = (negative and digits ~= '0') and ('-' .. digits) or digits
if pttl > 0 then
  redis.call('SET', key, result, 'KEEPTTL')
else
  redis.call('SET', key, result, 'PX', ms)
end
return {1, result}
