-- Take one of the tenant's open-stream slots (an event stream or a `wait` request), or refuse.
-- Slots are a sorted set of lease -> expiry (ms), counted across every web process; a
-- process that dies stops renewing its leases, so its slots free themselves.
-- KEYS: 1 slots zset; ARGV: 1 lease, 2 cap, 3 ttl ms
-- Returns 1 when the slot is ours, 0 over the cap.
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('zadd', KEYS[1], now + ttl, ARGV[1])
if redis.call('pttl', KEYS[1]) < ttl then  -- never shorten it below another lease
  redis.call('pexpire', KEYS[1], ttl)
end
return 1
