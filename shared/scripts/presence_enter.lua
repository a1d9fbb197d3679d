-- A connection enters a room. KEYS[1] room presence (user ids), KEYS[2] the
-- user's connections in the room. ARGV[1] now  ARGV[2] expiry  ARGV[3] connection id
-- ARGV[4] user id. Returns 1 if this is the user's first live connection in the room.
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", ARGV[1])
local before = redis.call("ZCARD", KEYS[2])
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[3])
redis.call("PEXPIREAT", KEYS[2], math.floor(tonumber(ARGV[2]) * 1000))
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[4])
redis.call("PEXPIREAT", KEYS[1], math.floor(tonumber(ARGV[2]) * 1000))
if before == 0 then
  return 1
end
return 0
