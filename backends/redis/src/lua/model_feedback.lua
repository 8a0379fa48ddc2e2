-- model_feedback: what the provider said, applied to the model's state, so that every process
-- sharing the model obeys it. ARGV after the config: op (0 cool down, 1 quota exhausted, 2
-- resume), amount (a cooldown's length, an exhaustion's reset from now, in µs; -1: unknown),
-- max_parallel, lease_ttl (us), state_ttl_ms, publish command, channel, then an admission id
-- to release into the pause ("": none; the permit whose request got the 429: its tokens given
-- back, its request still counted, its slot freed).
-- Feedback only tightens: a cooldown only ever moves its end later, an exhaustion its reset
-- (an unknown reset stays until `resume`, which ends both).
-- -> {now, cooldown end (0: none), exhausted quota's reset (0: none, -1: until resumed),
--     extended (1: this call moved the end of the pause later), released (1: the admission
--     was found and settled), held a lease (1)}
--    or {-2}: another config is stored for this model
local fp, now = rule_read()
if fp and fp ~= ARGV[1] then return {-2} end
local op, amount = tonumber(ARGV[OP + 1]), tonumber(ARGV[OP + 2])
local maxp, lease_ttl, state_ttl = tonumber(ARGV[OP + 3]), tonumber(ARGV[OP + 4]), tonumber(ARGV[OP + 5])
local pub, chan, id = ARGV[OP + 6], ARGV[OP + 7], ARGV[OP + 8]
local extended = 0

if op == 0 then
  -- starts at `now`, which is no earlier than any admission so far (the clock never steps back)
  local until_ = now + math.max(amount, 0)
  if until_ > (PU or now) then
    PU, extended = until_, 1
    redis.call('HSET', S, 'pu', tg_s(PU))
  end
elseif op == 1 then
  local ex = -1
  if amount >= 0 then ex = now + amount end
  if EX == -1 or ex == -1 then
    if EX ~= -1 then extended = 1 end
    ex = -1
  elseif EX then
    if ex > EX then extended = 1 else ex = EX end
  else
    extended = 1
  end
  if ex == -1 or ex > now then
    EX = ex
    redis.call('HSET', S, 'ex', tg_s(EX))
  end
  -- every waiter fails now, not when its turn would come: tell them all
  for _, h in ipairs(redis.call('ZRANGE', QK, '0', '-1')) do redis.call(pub, chan, h) end
else
  PU, EX = nil, nil
  redis.call('HDEL', S, 'pu', 'ex')
end

local released, held = 0, 0
if id ~= '' then
  local rec = redis.call('HGET', AK, id)
  if rec then
    local at, tokens, input = rule_parse(rec)
    rule_settle(at, tokens, input, 0, 0, now)
    redis.call('HDEL', AK, id)
    released = 1
  end
  held = redis.call('ZREM', LK, id)
  dequeue(id)
end
reap(now)
-- a slot freed, or the pause ended: the waiters go in (or, paused, the head learns it)
if (held == 1 or op == 2) and grant(now, maxp, lease_ttl, pub, chan) then keep_leases(lease_ttl) end
rule_touch(now, state_ttl)
return {now, PU or 0, EX or 0, extended, released, held}
