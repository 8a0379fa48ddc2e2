-- gcra_cancel. ARGV after P, D, burst: k, tat, rem of the reservation.
-- -> 1 undone (it was the latest) | 0 a later reservation exists: undoing would let the later
-- one's time count twice, so nothing changes.
local k, tat, rem = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local v = redis.call('HMGET', B, 'tat', 'rem')
if tonumber(v[1]) ~= tat or tonumber(v[2]) ~= rem then return 0 end
local now = tg_now(B)
local lead = (tat - now) * D + rem - k * P
if lead < 0 then lead = 0 end
gcra_store(now, lead)
return 1
