-- The heartbeat's refresh of one gateway's connection slots and room memberships,
-- a chunk of them per call (as a pipeline it took seven commands, and as many
-- rounds of redis-py's command packing, per connection). ZADD XX renews only what
-- still exists: an entry removed meanwhile (a leave, a sweep) stays removed.
-- KEYS[1] the instance's slot set; then per slot: the user's connection set; then
-- per membership: the room's connections of the user, the room's presence, the
-- room's usernames (the last two share the room's hash tag with the first).
-- ARGV[1] expiry (s)  ARGV[2] expiry (ms)  ARGV[3] number of slots (n)
-- then n connection ids, then per membership: user id, connection id.
local expiry, expire_ms = ARGV[1], ARGV[2]
local slots = tonumber(ARGV[3])
redis.call("PEXPIREAT", KEYS[1], expire_ms)
for i = 1, slots do
  local key = KEYS[1 + i]
  redis.call("ZADD", key, "XX", expiry, ARGV[3 + i])
  redis.call("PEXPIREAT", key, expire_ms)
end
local memberships = (#KEYS - 1 - slots) / 3
for j = 1, memberships do
  local k = 1 + slots + 3 * (j - 1)
  local a = 3 + slots + 2 * (j - 1)
  redis.call("ZADD", KEYS[k + 1], "XX", expiry, ARGV[a + 2])
  redis.call("PEXPIREAT", KEYS[k + 1], expire_ms)
  redis.call("ZADD", KEYS[k + 2], "XX", expiry, ARGV[a + 1])
  redis.call("PEXPIREAT", KEYS[k + 2], expire_ms)
  redis.call("PEXPIREAT", KEYS[k + 3], expire_ms)
end
return slots + memberships
