-- model_dequeue. ARGV after the config: id, state_ttl_ms, publish command, channel,
-- max_parallel, lease_ttl (us).
-- A waiter gives up: its ticket goes; if it was admitted after all (a reply lost, then the
-- caller gave up), that admission is undone: its slot, its tokens and its request given
-- back. -> {was admitted}
local id, state_ttl, pub, chan = ARGV[OP + 1], tonumber(ARGV[OP + 2]), ARGV[OP + 3], ARGV[OP + 4]
local maxp, lease_ttl = tonumber(ARGV[OP + 5]), tonumber(ARGV[OP + 6])
local fp, now = rule_read() -- (the pause too: `grant` admits nobody during one)
local rec = redis.call('HGET', AK, id)
local admitted = 0
local same = (not fp) or fp == ARGV[1]
if rec and same then
  redis.call('HDEL', AK, id)
  local at, tokens, input = rule_parse(rec)
  rule_cancel(at, tokens, input, now)
  admitted = 1
end
redis.call('ZREM', LK, id)
dequeue(id)
reap(now)
if same then
  -- its place, slot or tokens go to the waiters behind at once (see `grant`)
  if grant(now, maxp, lease_ttl, pub, chan) then keep_leases(lease_ttl) end
  rule_touch(now, state_ttl)
else
  wake(now, pub, chan)
end
return {admitted}
