-- The rule's four operations on the test clock, for the parity tests. ARGV after the config:
-- op (0 admit, 1 earliest, 2 settle, 3 usage), tokens, at, estimate, actual; the clock last.
-- admit -> {1, at} | {0, ready_at, limit}; earliest -> {1} fits | {0, ready_at, limit};
-- settle -> {1}; usage -> the usage of each limit.
local op, tokens = tonumber(ARGV[OP + 1]), tonumber(ARGV[OP + 2])
local now = tg_now(S)
local out
if op == 0 then
  if rule_admit(tokens, now) then out = {1, now} else
    local ready, limit = rule_wait(tokens, now)
    out = {0, ready, limit}
  end
elseif op == 1 then
  if rule_fits(tokens, now) then out = {1} else
    local ready, limit = rule_wait(tokens, now)
    out = {0, ready, limit}
  end
elseif op == 2 then
  rule_settle(tonumber(ARGV[OP + 3]), tonumber(ARGV[OP + 4]), tonumber(ARGV[OP + 5]), now)
  out = {1}
else
  out = rule_usage(now)
end
rule_flush()
redis.call('HSET', S, 'clk', tg_s(now))
return out
