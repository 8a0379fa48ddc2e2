-- model_stats. ARGV after the config: state_ttl_ms.
-- -> {now, leases held, tickets queued, usage of each limit...} | {-2}
if not tg_fingerprint_ok(S) then return {-2} end
local now = tg_now(S)
reap(now)
local out = {now, redis.call('ZCARD', LK), redis.call('ZCARD', QK)}
local used = rule_usage(now)
for i = 1, #used do out[#out + 1] = used[i] end
-- Reading advances the windows (a write, which may create the key): keep it expiring.
redis.call('PEXPIRE', S, ARGV[OP + 1])
return out
