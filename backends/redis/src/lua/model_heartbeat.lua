-- model_heartbeat. ARGV after the config: lease_ttl (us), publish command, channel, ids...
-- Renews the leases of ids; -> per id 1 (renewed) or 0 (lost: expired and maybe reassigned).
local lease_ttl, pub, chan = tonumber(ARGV[OP + 1]), ARGV[OP + 2], ARGV[OP + 3]
local now = tg_now(S)
local freed = reap(now)
local out = {}
for i = OP + 4, #ARGV - 1 do
  local id = ARGV[i]
  if redis.call('ZSCORE', LK, id) then
    redis.call('ZADD', LK, 'XX', tg_s(now + lease_ttl), id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
keep_leases(lease_ttl)
if freed > 0 then wake(now, pub, chan) end
return out
