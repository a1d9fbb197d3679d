-- Queue a producer's jobs for one shard, all or none, unless the shard's inbox is
-- past its bound (back-pressure: the producer waits or gives up; nothing is dropped).
-- All or none keeps a producer's order: a later job can never be queued ahead of an
-- earlier one that was refused.
-- KEYS[1] inbox stream
-- ARGV[1] bound (entries)  ARGV[2] number of jobs
-- then per job: the number of field/value pairs, then the pairs
-- Returns the number of jobs queued: all of them, or 0 when the inbox is full.
if redis.call("XLEN", KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local at = 3
for _ = 1, tonumber(ARGV[2]) do
  local pairs_count = tonumber(ARGV[at])
  local fields = {}
  for j = 1, pairs_count * 2 do
    fields[j] = ARGV[at + j]
  end
  redis.call("XADD", KEYS[1], "*", unpack(fields))
  at = at + 1 + pairs_count * 2
end
return tonumber(ARGV[2])
