-- Extend the leases of the open-stream slots a web process holds for one tenant, on
-- Redis's clock (web hosts' clocks may disagree). XX: a renewal that crosses a release
-- must not bring the released slot back.
-- KEYS: 1 slots zset; ARGV: 1 ttl ms, 2.. leases
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('zadd', KEYS[1], 'XX', now + ttl, ARGV[i])
end
if redis.call('pttl', KEYS[1]) < ttl then  -- never shorten it below another lease
  redis.call('pexpire', KEYS[1], ttl)
end
return #ARGV - 1
