-- Take one of a user's connection slots over all gateways.
-- KEYS[1] the user's connection sorted set (member = connection id, score = expiry)
-- ARGV[1] now  ARGV[2] expiry of the new slot  ARGV[3] connection id  ARGV[4] limit
-- Returns 1 when taken (also when this connection holds it already: a retried call
-- must not count the connection against itself), 0 when the user is at the limit.
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])
if not redis.call("ZSCORE", KEYS[1], ARGV[3])
    and redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[3])
redis.call("PEXPIREAT", KEYS[1], math.floor(tonumber(ARGV[2]) * 1000))
return 1
