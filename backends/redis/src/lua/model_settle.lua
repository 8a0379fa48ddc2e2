-- model_settle. ARGV after the config: id, actual, mode (0 settle to actual, 1 release and keep
-- the estimate, 2 cancel: refund the tokens), state_ttl_ms, publish command, channel.
-- Settles the admission made under id once, frees its slot, wakes the head of the queue.
-- -> {applied (0: no record: settled already, or the lease expired), held a lease, now} | {-2}
if not tg_fingerprint_ok(S) then return {-2} end
local id, actual, mode = ARGV[OP + 1], tonumber(ARGV[OP + 2]), tonumber(ARGV[OP + 3])
local state_ttl, pub, chan = tonumber(ARGV[OP + 4]), ARGV[OP + 5], ARGV[OP + 6]
local now = tg_now(S)
local rec = redis.call('HGET', AK, id)
local applied = 0
if rec then
  redis.call('HDEL', AK, id)
  local at, est = string.match(rec, '^(%-?%d+):(%d+)$')
  at, est = tonumber(at), tonumber(est)
  if mode == 0 then rule_settle(at, est, actual, now) end
  if mode == 2 then rule_settle(at, est, 0, now) end
  rule_touch(now, state_ttl)
  applied = 1
end
local held = redis.call('ZREM', LK, id)
dequeue(id)
reap(now)
wake(now, pub, chan)
return {applied, held, now}
