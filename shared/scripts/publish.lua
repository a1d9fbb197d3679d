-- Append one entry to a shard stream and, for room events, to the room history
-- with the same id, deduplicated by event key. Atomic: a retried job either
-- finds its key (and the id it got the first time) or appends exactly once.
--
-- KEYS[1] shard stream   KEYS[2] shard seq counter   KEYS[3] dedupe key
-- KEYS[4] room history   KEYS[5] room meta (first/last id); all in one hash slot
-- ARGV[1] encoded entry  ARGV[2] room  ARGV[3] shard MAXLEN (approximate)
-- ARGV[4] history size   ARGV[5] history ttl (s)  ARGV[6] dedupe ttl (s, 0 = no dedupe)
-- ARGV[7] "1" to keep in room history, "0" for control entries
-- Returns {id, 1} when appended, {id, 0} when the key had been seen.

local dedupe_ttl = tonumber(ARGV[6])
if dedupe_ttl > 0 then
  local seen = redis.call("GET", KEYS[3])
  if seen then
    return {seen, 0}
  end
end

-- the seq lets every reader notice entries it never saw (trimmed, or a reset Redis)
local seq = redis.call("INCR", KEYS[2])
local id = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[3], "*",
  "e", ARGV[1], "r", ARGV[2], "q", seq)

if ARGV[7] == "1" then
  -- "n" numbers the room's events 1, 2, 3, ...: a resume counts what it will replay,
  -- and a replay read in pages notices entries trimmed between two pages
  local n = redis.call("HINCRBY", KEYS[5], "n", 1)
  redis.call("XADD", KEYS[4], "MAXLEN", ARGV[4], id, "e", ARGV[1], "n", n)
  redis.call("EXPIRE", KEYS[4], ARGV[5])
  -- "first" stays the first id ever appended, so a resume from 0-0 can tell
  -- whether anything was trimmed or expired since
  redis.call("HSETNX", KEYS[5], "first", id)
  redis.call("HSET", KEYS[5], "last", id)
  redis.call("EXPIRE", KEYS[5], tonumber(ARGV[5]) * 7)
end

if dedupe_ttl > 0 then
  redis.call("SET", KEYS[3], id, "EX", dedupe_ttl)
end
return {id, 1}
