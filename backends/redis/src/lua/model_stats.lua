-- model_stats. ARGV after the config: state_ttl_ms.
-- -> {now, leases held, tickets queued, cooldown end (0: none), exhausted quota's reset (0:
--    none, -1: until resumed), usage of each limit..., maximum in force of each limit (the
--    configured one, or the one header feedback learned)...} | {-2}
local fp, now = rule_read()
if fp and fp ~= ARGV[1] then return {-2} end
reap(now)
local out = {now, redis.call('ZCARD', LK), redis.call('ZCARD', QK), PU or 0, EX or 0}
local used = rule_usage(now)
for i = 1, #used do out[#out + 1] = used[i] end
for i = 1, NL do out[#out + 1] = LIM[i].max end
-- Reading advances the windows (a write, which may create the key): keep it expiring (and no
-- sooner than the pause ends).
rule_expire(now, tonumber(ARGV[OP + 1]))
return out
