-- Take, renew, hand over or release a lease: the one worker consuming a shard's
-- inbox, or the one live gateway with an instance id.
-- KEYS[1] lease key  ARGV[1] token  ARGV[2] ttl (ms)
-- ARGV[3] "1" take or renew, "0" release, "2" take over from ARGV[4] (a holder the
-- caller knows to be dead: only if it still holds it)
-- Returns 1 when the caller holds it; otherwise the current holder's token (0 when
-- released).
local holder = redis.call("GET", KEYS[1])
local mode = ARGV[3]
if mode == "0" then
  if holder == ARGV[1] then redis.call("DEL", KEYS[1]) end
  return 0
end
if holder == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
if holder and not (mode == "2" and holder == ARGV[4]) then
  return holder
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 1
