-- The rule's four operations on the test clock, for the parity tests. ARGV after the config:
-- op (0 admit, 1 earliest, 2 settle, 3 usage), tokens, at, estimate, actual; the clock last.
-- admit -> {1, at} | {0, ready_at, limit}; earliest -> {1} fits | {0, ready_at, limit};
-- settle -> {1}; usage -> the usage of each limit.
-- Or a list of them in one call, all at the call's instant: op 4, then their count, then five
-- words each as above (op, tokens, at, estimate, actual); the reply is one answer per
-- operation, in order, each as above. One call deciding several operations is how the state
-- carried between them inside a call (what is read once and written at the end) is tested.
local function test_op(op, tokens, at, est, actual, now)
  if op == 0 then
    if rule_admit(tokens, now) then return {1, now} end
    local ready, limit = rule_wait(tokens, now)
    return {0, ready, limit}
  elseif op == 1 then
    if rule_fits(tokens, now) then return {1} end
    local ready, limit = rule_wait(tokens, now)
    return {0, ready, limit}
  elseif op == 2 then
    rule_settle(at, est, actual, now)
    return {1}
  end
  return rule_usage(now)
end

local function arg(i)
  return tonumber(ARGV[OP + i])
end

local now = tg_now(S)
local out
if arg(1) == 4 then
  out = {}
  for j = 1, arg(2) do
    local o = 2 + (j - 1) * 5
    out[j] = test_op(arg(o + 1), arg(o + 2), arg(o + 3), arg(o + 4), arg(o + 5), now)
  end
else
  out = test_op(arg(1), arg(2), arg(3), arg(4), arg(5), now)
end
-- Every window's running total is the sum of its kept slots, as the call leaves them: a
-- charge or a settle carried in the call and lost on the way out shows here even when the
-- usage (read from the total) agrees.
for i = 1, NL do
  local L = LIM[i]
  if L.kind == 0 then
    local head = win_advance(i, L, now)
    local v = win_slots(i, head - L.c + 1, head)
    local sum = 0
    for j = 1, #v do sum = sum + v[j] end
    if sum ~= TOT[i] then
      return redis.error_reply(string.format('window %d: slots sum to %d, total %d', i, sum, TOT[i]))
    end
  end
end
-- The end of every call, as the production scripts end theirs: the clock and fingerprint
-- recorded (and whatever the rule keeps to write once per call written), the key kept a day.
rule_touch(now, 86400000)
return out
