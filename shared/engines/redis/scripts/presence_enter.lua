-- A connection enters a room. KEYS[1] room presence (user ids), KEYS[2] the
-- user's connections in the room, KEYS[3] the room's usernames (expiring with its
-- presence), KEYS[4] its departures not yet announced (presence_sweep.lua).
-- ARGV[1] now  ARGV[2] expiry  ARGV[3] connection id  ARGV[4] user id
-- ARGV[5] username.
-- Returns 1 if this is the user's only live connection in the room (the first):
-- the same answer when a call is retried, whose user_joined then dedupes by key.
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", ARGV[1])
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[3])
local expire_at = math.floor(tonumber(ARGV[2]) * 1000)
redis.call("PEXPIREAT", KEYS[2], expire_at)
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[4])
redis.call("PEXPIREAT", KEYS[1], expire_at)
redis.call("HSET", KEYS[3], ARGV[4], ARGV[5])
redis.call("PEXPIREAT", KEYS[3], expire_at)
-- back before the sweep's user_left went out: it must not go out after this join
redis.call("HDEL", KEYS[4], ARGV[4])
if redis.call("ZCARD", KEYS[2]) == 1 then
  return 1
end
return 0
