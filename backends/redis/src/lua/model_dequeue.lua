-- model_dequeue. ARGV after the config: id, state_ttl_ms, publish command, channel.
-- A waiter gives up: its ticket goes; if it was admitted after all (a reply lost, then the
-- caller gave up), that admission is undone: its slot, its tokens and its request given
-- back. -> {was admitted}
local id, state_ttl, pub, chan = ARGV[OP + 1], tonumber(ARGV[OP + 2]), ARGV[OP + 3], ARGV[OP + 4]
local now = tg_now(S)
local rec = redis.call('HGET', AK, id)
local admitted = 0
if rec and tg_fingerprint_ok(S) then
  redis.call('HDEL', AK, id)
  local at, tokens, input = rule_parse(rec)
  rule_cancel(at, tokens, input, now)
  rule_touch(now, state_ttl)
  admitted = 1
end
redis.call('ZREM', LK, id)
dequeue(id)
reap(now)
wake(now, pub, chan)
return {admitted}
