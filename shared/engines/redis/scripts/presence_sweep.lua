-- Remove the users of one room whose every connection expired (their gateway
-- crashed without saying goodbye) and return every departure not yet announced.
-- A departure is kept (KEYS[3]) until its user_left is appended, so a reply lost
-- with its connection, or a sweeper that dies before announcing, only delays it:
-- the next sweep returns it again, under the same token (the dedupe key's part).
-- KEYS[1] room presence (user ids, score = expiry)  KEYS[2] the room's usernames
-- KEYS[3] departures not yet announced (user id -> "token|username")
-- ARGV[1] now  ARGV[2] how long an unannounced departure is kept (ms).
-- A user's connections live at KEYS[1] .. ":" .. user_id (the same hash slot: the
-- room is the hash tag). Returns {user_id, "token|username", ...}.
for _, user_id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])) do
  local user_key = KEYS[1] .. ":" .. user_id
  redis.call("ZREMRANGEBYSCORE", user_key, "-inf", ARGV[1])
  if redis.call("ZCARD", user_key) == 0 then
    local token = redis.call("ZSCORE", KEYS[1], user_id)
    redis.call("ZREM", KEYS[1], user_id)
    local name = redis.call("HGET", KEYS[2], user_id) or ""
    redis.call("HDEL", KEYS[2], user_id)
    redis.call("HSET", KEYS[3], user_id, token .. "|" .. name)
    redis.call("PEXPIRE", KEYS[3], ARGV[2])
  end
end
return redis.call("HGETALL", KEYS[3])
