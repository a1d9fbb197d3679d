-- Remove the users of one room whose every connection expired (their gateway
-- crashed without saying goodbye) and return them, so exactly one sweeper
-- publishes `user_left` for each.
-- KEYS[1] room presence (user ids, score = expiry)  KEYS[2] the room's usernames
-- ARGV[1] now. A user's connections live at KEYS[1] .. ":" .. user_id (the same
-- hash slot: the room is the hash tag).
-- Returns {user_id, username, user_id, username, ...}.
local gone = {}
for _, user_id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])) do
  local user_key = KEYS[1] .. ":" .. user_id
  redis.call("ZREMRANGEBYSCORE", user_key, "-inf", ARGV[1])
  if redis.call("ZCARD", user_key) == 0 then
    redis.call("ZREM", KEYS[1], user_id)
    gone[#gone + 1] = user_id
    gone[#gone + 1] = redis.call("HGET", KEYS[2], user_id) or ""
    redis.call("HDEL", KEYS[2], user_id)
  end
end
return gone
