-- Take one of the tenant's concurrent-turn slots for a session, or park the session.
-- Slots are a sorted set of session -> expiry (ms), so a dead worker's slot frees itself.
-- A slot handed over by release_slot.lua is already ours: take it.
-- KEYS: 1 slots zset, 2 parked zset (session -> arrival order)
-- ARGV: 1 session, 2 cap, 3 ttl ms, 4 park order
-- Returns 1 when the slot is ours, 0 when parked.
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[3])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zscore', KEYS[1], ARGV[1]) or redis.call('zcard', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('zadd', KEYS[1], expiry, ARGV[1])
  redis.call('zrem', KEYS[2], ARGV[1])
  return 1
end
redis.call('zadd', KEYS[2], 'NX', ARGV[4], ARGV[1])
return 0
