-- Append a control entry (gateway heartbeat, revocation) to a shard stream. It
-- reaches every gateway like an event but no client, and keeps no history.
-- KEYS[1] shard stream  KEYS[2] shard seq
-- ARGV[1] shard MAXLEN (approximate)  ARGV[2] payload  ARGV[3] marker (room field, "_...")
local seq = redis.call("INCR", KEYS[2])
return redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*",
  "e", ARGV[2], "r", ARGV[3], "q", seq)
