-- A connection leaves a room. KEYS/ARGV as in presence_enter.lua.
-- Returns 1 if it was the user's last live connection in the room.
local removed = redis.call("ZREM", KEYS[2], ARGV[3])
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", ARGV[1])
if removed == 1 and redis.call("ZCARD", KEYS[2]) == 0 then
  redis.call("ZREM", KEYS[1], ARGV[4])
  return 1
end
return 0
