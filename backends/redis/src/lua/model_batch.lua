-- model_batch: this process's settles and tries of one model, in one call: the settles first
-- (they free slots and tokens), then the tries, in order, at one instant, on one read and one
-- write of the state (a request costs a few Lua operations; each `redis.call` about a
-- microsecond, the call itself several).
-- ARGV after the config: max_parallel, lease_ttl (us), state_ttl_ms, publish command, channel,
-- the number of settles, the number of tries, then 4 per settle: id, actual, actual input (of
-- it), mode (0 settle to actual, 1 release and keep the estimate, 2 cancel: the admission
-- undone, its tokens and its request given back), then 3 per try: tokens, input (of them), id.
-- A try's id is new (a retry under the same id goes through model_admit, which
-- finds the first admission), so tries need no lookup of earlier admissions.
-- -> {now, fresh (1: the state did not exist), then 2 per settle, in order:
--     applied (0: no record: settled already, or the lease expired), held a lease;
--     then 4 per try, in order:
--     1, at, lease_expiry, 0       admitted
--     0, ready_at, limit, why      refused, nothing taken (why 0: rate limits, 1: no
--                                  parallel slot or someone queued: a try never overtakes;
--                                  during a cooldown ready_at is no earlier than its end)
--     5, reset, 0, 0               refused: the quota is exhausted until reset (-1: until
--                                  resumed)}
--    or {-2}: another config is stored for this model
local fp, now = rule_read()
if fp and fp ~= ARGV[1] then return {-2} end
local fresh = 0
if not fp then fresh = 1 end
local maxp, lease_ttl, state_ttl = tonumber(ARGV[OP + 1]), tonumber(ARGV[OP + 2]), tonumber(ARGV[OP + 3])
local pub, chan = ARGV[OP + 4], ARGV[OP + 5]
local ns, nt = tonumber(ARGV[OP + 6]), tonumber(ARGV[OP + 7])
local out = {now, fresh}
local touched = false

-- Settles: each admission once; its slot freed, its tokens settled.
local T0 = OP + 7 + 4 * ns -- the tries' arguments start after it
if ns > 0 then
  local ids = {}
  for j = 1, ns do ids[j] = ARGV[OP + 4 + 4 * j] end
  local recs = redis.call('HMGET', AK, unpack(ids))
  local held = redis.call('ZMSCORE', LK, unpack(ids))
  local done, seen = {}, {}
  for j = 1, ns do
    local applied, id = 0, ids[j]
    -- (a second settle of the same id in this batch finds nothing, as a later call would)
    local rec = (not seen[id]) and recs[j]
    local lease = (not seen[id]) and held[j]
    seen[id] = true
    if rec then
      local o = OP + 4 + 4 * j
      local actual, actual_in, mode = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
      local at, tokens, input = rule_parse(rec)
      if mode == 0 then rule_settle(at, tokens, input, actual, actual_in, now) end
      if mode == 2 then rule_cancel(at, tokens, input, now) end
      done[#done + 1] = id
      applied = 1
    end
    out[#out + 1] = applied
    if lease then out[#out + 1] = 1 else out[#out + 1] = 0 end
  end
  if #done > 0 then
    redis.call('HDEL', AK, unpack(done))
    touched = true
  end
  redis.call('ZREM', LK, unpack(ids))
  -- a settled id may still hold a ticket (admitted by a retry while queued); usually nobody
  -- is queued, and two commands of every id are saved
  if redis.call('ZCARD', QK) > 0 then
    redis.call('ZREM', QK, unpack(ids))
    redis.call('HDEL', XK, unpack(ids))
  end
end

local freed = reap(now)
-- slots or tokens that came free go first to the waiters queued (see `grant`), oldest first
if ns > 0 or freed > 0 then
  if grant(now, maxp, lease_ttl, pub, chan) then keep_leases(lease_ttl) end
  -- granting reads the windows, which may write the state (a head moved): keep it expiring
  touched = true
end
local head = queue_head(now)
if nt > 0 then
  local active = redis.call('ZCARD', LK)
  local expiry = now + lease_ttl
  local expiry_s = tg_s(expiry)
  local leases, records = {}, {}
  for j = 1, nt do
    local o = T0 + 3 * (j - 1)
    local tokens, input, id = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), ARGV[o + 3]
    local code, a, b, c = 1, now, expiry, 0
    if EX then
      code, a, b = 5, EX, 0
    elseif head or active >= maxp or PU then
      code = 0
      if head or active >= maxp then c = 1 end
      if rule_fits(tokens, input, now) then a, b = now, 0 else a, b = rule_wait(tokens, input, now) end
      a, b = rule_after_pause(a, b)
    elseif rule_admit(tokens, input, now) then
      active = active + 1
      local k = #leases
      leases[k + 1], leases[k + 2] = expiry_s, id
      records[k + 1], records[k + 2] = id, rule_record(now, tokens, input)
    else
      code = 0
      a, b = rule_wait(tokens, input, now)
    end
    local o = #out
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = code, a, b, c
  end
  if #leases > 0 then
    redis.call('ZADD', LK, unpack(leases))
    redis.call('HSET', AK, unpack(records))
    keep_leases(lease_ttl)
  end
  -- reading the windows may have written the state (a head moved): keep it expiring
  touched = true
end
if touched then rule_touch(now, state_ttl) end
return out
