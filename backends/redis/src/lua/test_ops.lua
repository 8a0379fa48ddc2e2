-- The rule's operations on the test clock, for the parity tests. ARGV after the config:
-- op (0 admit, 1 earliest, 2 settle, 3 usage), tokens, input (of them), then a settle's at,
-- estimate, estimated input, actual, actual input; the clock last. Header feedback: op 5
-- set_max (limit index from 0, max), op 6 drain (limit index, remaining, tolerance, expires,
-- seen), in the same eight words.
-- admit -> {1, at} | {0, ready_at, limit}; earliest -> {1} fits | {0, ready_at, limit};
-- settle -> {1}; usage -> the usage of each limit; set_max -> {the maximum before};
-- drain -> {what the limit holds for the others}.
-- Or a list of them in one call, all at the call's instant: op 4, then their count, then eight
-- words each as above (op, tokens, input, at, estimate, estimated input, actual, actual
-- input); the reply is one answer per operation, in order, each as above. One call deciding
-- several operations is how the state carried between them inside a call (what is read once
-- and written at the end) is tested.
local function test_op(w, now)
  local op, tokens, input = w[1], w[2], w[3]
  if op == 0 then
    if rule_admit(tokens, input, now) then return {1, now} end
    local ready, limit = rule_wait(tokens, input, now)
    return {0, ready, limit}
  elseif op == 1 then
    if rule_fits(tokens, input, now) then return {1} end
    local ready, limit = rule_wait(tokens, input, now)
    return {0, ready, limit}
  elseif op == 2 then
    rule_settle(w[4], w[5], w[6], w[7], w[8], now)
    return {1}
  elseif op == 5 then
    return {rule_set_max(w[2] + 1, w[3]) or 0}
  elseif op == 6 then
    return {rule_drain(w[2] + 1, w[3], w[4], w[5], w[6], now)}
  end
  return rule_usage(now)
end

local function arg(i)
  return tonumber(ARGV[OP + i])
end

-- The eight words of the operation that starts after argument o.
local function words(o)
  local w = {}
  for k = 1, 8 do w[k] = arg(o + k) end
  return w
end

-- (read as every production call reads: the header feedback too)
local _, now = rule_read()
local out
if arg(1) == 4 then
  out = {}
  for j = 1, arg(2) do out[j] = test_op(words(2 + (j - 1) * 8), now) end
else
  out = test_op(words(0), now)
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
