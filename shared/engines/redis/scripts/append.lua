-- Append room events to one shard, deduplicated by event key, each to the shard
-- stream and to its room's history with the same id; optionally complete the
-- inbox jobs that carried them (ack + delete) in the same atomic step, fenced by
-- the consumer's lease. A crash before this script leaves jobs pending and
-- nothing appended; after it, both are done: never twice, never half.
--
-- KEYS[1] shard stream  KEYS[2] shard seq  KEYS[3] inbox stream  KEYS[4] inbox lease
-- then per event i (1-based): KEYS[4+3i-2] dedupe key, KEYS[4+3i-1] room history,
-- KEYS[4+3i] room meta; all keys share the shard's hash tag (one Cluster slot)
-- ARGV[1] shard MAXLEN (approximate)  ARGV[2] history size  ARGV[3] history ttl (s)
-- ARGV[4] dedupe ttl (s)  ARGV[5] lease token ("" = no inbox part)  ARGV[6] inbox group
-- ARGV[7] number of inbox ids (m), ARGV[8 .. 7+m] inbox ids,
-- then per event i: ARGV[7+m+2i-1] encoded event, ARGV[7+m+2i] room
-- Returns {id1, appended1, id2, appended2, ...}, or the error "FENCED" when the
-- lease is held by someone else (nothing done).

local token = ARGV[5]
if token ~= "" and redis.call("GET", KEYS[4]) ~= token then
  return redis.error_reply("FENCED lease lost")
end

local m = tonumber(ARGV[7])
local base = 7 + m
local events = (#ARGV - base) / 2
local history_size, history_ttl = ARGV[2], tonumber(ARGV[3])
local dedupe_ttl = tonumber(ARGV[4])
local out = {}
local touched = {}  -- room meta key -> history key, expired once per call

for i = 1, events do
  local dedupe, history, meta = KEYS[4 + 3 * i - 2], KEYS[4 + 3 * i - 1], KEYS[4 + 3 * i]
  local encoded, room = ARGV[base + 2 * i - 1], ARGV[base + 2 * i]
  local seen = redis.call("GET", dedupe)
  if seen then
    out[#out + 1] = seen
    out[#out + 1] = 0
  else
    -- seq numbers the shard's entries: a reader notices entries it never saw
    local seq = redis.call("INCR", KEYS[2])
    local id = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*",
      "e", encoded, "r", room, "q", seq)
    -- n numbers the room's events: a resume counts its replay, and a replay read
    -- in pages notices entries trimmed between two pages
    local n = redis.call("HINCRBY", meta, "n", 1)
    redis.call("XADD", history, "MAXLEN", history_size, id, "e", encoded, "n", n)
    -- "first" stays the first id ever appended: a resume from 0-0 can tell
    -- whether anything was trimmed or expired since
    redis.call("HSETNX", meta, "first", id)
    redis.call("HSET", meta, "last", id)
    redis.call("SET", dedupe, id, "EX", dedupe_ttl)
    touched[meta] = history
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end

for meta, history in pairs(touched) do
  redis.call("EXPIRE", history, history_ttl)
  redis.call("EXPIRE", meta, history_ttl * 7)
end

if m > 0 then
  local ids = {}
  for j = 1, m do ids[j] = ARGV[7 + j] end
  redis.call("XACK", KEYS[3], ARGV[6], unpack(ids))
  redis.call("XDEL", KEYS[3], unpack(ids))
end
return out
