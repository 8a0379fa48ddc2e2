-- model_stats. -> {now, leases held, tickets queued, usage of each limit...}
local now = tg_now(S)
reap(now)
local out = {now, redis.call('ZCARD', LK), redis.call('ZCARD', QK)}
local used = rule_usage(now)
for i = 1, #used do out[#out + 1] = used[i] end
return out
