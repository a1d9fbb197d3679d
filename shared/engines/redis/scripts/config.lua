-- The deployment's STREAM_SHARDS, fixed by whoever comes first: every producer,
-- worker and gateway on this Redis must use the same (a job queued to a shard no
-- worker reads would wait forever). KEYS[1] config key  ARGV[1] this process's value
-- Returns the value in force.
local value = redis.call("GET", KEYS[1])
if not value then
  redis.call("SET", KEYS[1], ARGV[1])
  return ARGV[1]
end
return value
