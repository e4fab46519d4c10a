-- Give back a session's slot and hand it straight to the oldest parked session, so a
-- waiting turn never has to poll. Returns the session the slot went to, or false.
-- KEYS: 1 slots zset, 2 parked zset; ARGV: 1 session, 2 cap, 3 ttl ms
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) < tonumber(ARGV[2]) then
  local next = redis.call('zpopmin', KEYS[2])
  if next[1] then
    redis.call('zadd', KEYS[1], now + tonumber(ARGV[3]), next[1])
    return next[1]
  end
end
return false
