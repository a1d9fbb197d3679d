-- Queue jobs for one or more shards; each shard's jobs all or none, unless its inbox
-- is past the bound (back-pressure: the producer waits or gives up; nothing is
-- dropped). All or none keeps a producer's order: a later job can never be queued
-- ahead of an earlier one that was refused.
-- KEYS[i] the i-th shard's inbox stream
-- ARGV[1] bound (entries), then per key: its number of jobs, then per job the number
-- of field/value pairs and the pairs
-- Returns per key the number of jobs queued: all of that key's, or 0 when its inbox
-- is full.
local bound = tonumber(ARGV[1])
local at = 2
local queued = {}
for i, inbox in ipairs(KEYS) do
  local jobs = tonumber(ARGV[at])
  at = at + 1
  local room = redis.call("XLEN", inbox) < bound
  for _ = 1, jobs do
    local pairs_count = tonumber(ARGV[at])
    if room then
      local fields = {}
      for j = 1, pairs_count * 2 do
        fields[j] = ARGV[at + j]
      end
      redis.call("XADD", inbox, "*", unpack(fields))
    end
    at = at + 1 + pairs_count * 2
  end
  queued[i] = room and jobs or 0
end
return queued
