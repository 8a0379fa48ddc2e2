-- model_feedback: what the provider said, applied to the model's state, so that every process
-- sharing the model obeys it. ARGV after the config: op (0 cool down, 1 quota exhausted, 2
-- resume, 3 headers), amount (a cooldown's length, an exhaustion's reset from now, in µs; -1:
-- unknown), max_parallel, lease_ttl (us), state_ttl_ms, publish command, channel, then an
-- admission id to release into the pause ("": none; the permit whose request got the 429: its
-- tokens given back, its request still counted, its slot freed); for headers then the number
-- of items and 6 words each: 0 (learn), limit (index from 0), the maximum in force from now,
-- 0, 0, 0; or 1 (drain), limit, remaining (at least), tolerance, age (µs before now the
-- provider reported it), reset (µs after that).
-- Feedback only tightens: a cooldown only ever moves its end later, an exhaustion its reset
-- (an unknown reset stays until `resume`, which ends both); a learned maximum is the client's
-- to bound (it never sends one above the configured maximum unless the config says so).
-- -> {now, cooldown end (0: none), exhausted quota's reset (0: none, -1: until resumed),
--     extended (1: this call moved the end of the pause later), released (1: the admission
--     was found and settled), held a lease (1), then per header item: a learn's maximum
--     before, a drain's share held for the others (a bucket: what it charged)}
--    or {-2}: another config is stored for this model
local fp, now = rule_read()
if fp and fp ~= ARGV[1] then return {-2} end
local op, amount = tonumber(ARGV[OP + 1]), tonumber(ARGV[OP + 2])
local maxp, lease_ttl, state_ttl = tonumber(ARGV[OP + 3]), tonumber(ARGV[OP + 4]), tonumber(ARGV[OP + 5])
local pub, chan, id = ARGV[OP + 6], ARGV[OP + 7], ARGV[OP + 8]
local extended = 0
-- a header call's answers, and whether a learned maximum rose (waiters may fit now)
local HEADERS, HEADERS_RAISED = nil, false

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
elseif op == 3 then
  -- (after the fixed arguments: the count, then the items; see above)
  local n, raised = tonumber(ARGV[OP + 9]), false
  local answers = {}
  for j = 1, n do
    local o = OP + 9 + 6 * (j - 1)
    local kind, i = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]) + 1
    local a, b, c, d = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5]), tonumber(ARGV[o + 6])
    if kind == 0 then
      local from = rule_set_max(i, a) or 0
      if a > from then raised = true end
      answers[j] = from
    else
      local seen = math.max(now - c, 0)
      answers[j] = rule_drain(i, a, b, seen + d, seen, now)
    end
  end
  HEADERS, HEADERS_RAISED = answers, raised
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
-- a slot freed, the pause ended or a maximum rose: the waiters go in (or, paused, the head
-- learns it)
if (held == 1 or op == 2 or HEADERS_RAISED) and grant(now, maxp, lease_ttl, pub, chan) then
  keep_leases(lease_ttl)
end
rule_touch(now, state_ttl)
local out = {now, PU or 0, EX or 0, extended, released, held}
if HEADERS then
  for j = 1, #HEADERS do out[6 + j] = HEADERS[j] end
end
return out
