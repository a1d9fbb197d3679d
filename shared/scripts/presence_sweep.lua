-- Remove the users of one room whose every connection expired (their gateway
-- crashed without saying goodbye) and return their ids, so exactly one sweeper
-- publishes `user_left` for each.
-- KEYS[1] room presence (user ids, score = expiry)  ARGV[1] now
-- A user's connections live at KEYS[1] .. ":" .. user_id, in the same hash slot.
local gone = {}
for _, user_id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])) do
  local user_key = KEYS[1] .. ":" .. user_id
  redis.call("ZREMRANGEBYSCORE", user_key, "-inf", ARGV[1])
  if redis.call("ZCARD", user_key) == 0 then
    redis.call("ZREM", KEYS[1], user_id)
    table.insert(gone, user_id)
  end
end
return gone
