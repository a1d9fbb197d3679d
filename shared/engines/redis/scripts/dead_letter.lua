-- Set a job aside that can never be applied, and remove it from the inbox, fenced
-- by the consumer's lease. KEYS[1] inbox  KEYS[2] lease  KEYS[3] dead-letter stream
-- ARGV[1] token  ARGV[2] group  ARGV[3] inbox id ("" = keep the job: only some of its
-- events are set aside)  ARGV[4] reason  ARGV[5] the job or event, as queued
-- ARGV[6] dead-letter stream cap
if redis.call("GET", KEYS[2]) ~= ARGV[1] then
  return redis.error_reply("FENCED lease lost")
end
redis.call("XADD", KEYS[3], "MAXLEN", "~", ARGV[6], "*", "reason", ARGV[4], "job", ARGV[5],
  "from", ARGV[3])
if ARGV[3] ~= "" then
  redis.call("XACK", KEYS[1], ARGV[2], ARGV[3])
  redis.call("XDEL", KEYS[1], ARGV[3])
end
return 1
