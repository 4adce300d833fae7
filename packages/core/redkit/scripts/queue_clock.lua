-- Included by the queue scripts that stamp what they do (`-- include: queue_clock`), never called
-- alone: `now` is Redis' time in ms, and event(...) appends an entry to the including script's
-- `events` stream (capped at its `maxlen`; none when that is 0).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function event(...)
  if maxlen > 0 then
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'event', ...)
  end
end
