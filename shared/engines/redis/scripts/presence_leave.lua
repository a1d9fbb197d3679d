-- A connection leaves a room. KEYS/ARGV as in presence_enter.lua.
-- Returns 1 if the user has no live connection left in the room (the last left):
-- the same answer when a call is retried, whose user_left then dedupes by key.
redis.call("ZREM", KEYS[2], ARGV[3])
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", ARGV[1])
if redis.call("ZCARD", KEYS[2]) == 0 then
  redis.call("ZREM", KEYS[1], ARGV[4])
  redis.call("HDEL", KEYS[3], ARGV[4])
  return 1
end
return 0
