-- Before a model call: check the daily and monthly token budgets, take one token from
-- the requests-per-minute bucket, and reserve the call's estimated tokens. Atomic.
-- KEYS: 1 bucket (hash tokens/ts), 2 day counter, 3 month counter
-- ARGV: 1 rpm, 2 estimate, 3 day limit, 4 month limit
-- Returns {status, wait_ms}: status is ok | seed | budget_day | budget_month | rate.
local rpm = tonumber(ARGV[1])
local estimate = tonumber(ARGV[2])
local day = redis.call('get', KEYS[2])
local month = redis.call('get', KEYS[3])
if not day or not month then
  return {'seed', 0}
end
if tonumber(day) + estimate > tonumber(ARGV[3]) then
  return {'budget_day', 0}
end
if tonumber(month) + estimate > tonumber(ARGV[4]) then
  return {'budget_month', 0}
end
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bucket = redis.call('hmget', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or rpm
local ts = tonumber(bucket[2]) or now
tokens = math.min(rpm, tokens + (now - ts) * rpm / 60000)
if tokens < 1 then
  redis.call('hset', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
  redis.call('pexpire', KEYS[1], 120000)
  return {'rate', math.ceil((1 - tokens) * 60000 / rpm)}
end
redis.call('hset', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', now)
redis.call('pexpire', KEYS[1], 120000)
redis.call('incrby', KEYS[2], estimate)
redis.call('incrby', KEYS[3], estimate)
return {'ok', 0}
