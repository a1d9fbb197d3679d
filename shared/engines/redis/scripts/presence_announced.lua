-- A departure's user_left was appended: forget it, unless a newer departure of the
-- same user replaced it meanwhile (that one is still to be announced).
-- KEYS[1] departures not yet announced  ARGV[1] user id  ARGV[2] "token|username"
if redis.call("HGET", KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call("HDEL", KEYS[1], ARGV[1])
end
return 0
