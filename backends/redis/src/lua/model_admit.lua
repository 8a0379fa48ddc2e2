-- model_admit. ARGV after the config: tokens, input (of them), id, max_parallel, lease_ttl,
-- ticket_ttl (us),
-- state_ttl_ms, max_wait (us; -1 unbounded), try (1: never queue), publish command, channel.
-- -> {1, now, at, lease_expiry}        admitted (or admitted already under this id)
--    {0, now, ready_at, limit, why}    refused (why 0: rate limits, 1: slot or queue ahead)
--    {2, now}                          queued behind others: wait for a wake message
--    {3, now}                          at the head, no parallel slot: wait for a wake message
--    {4, now, ready_at, limit}         at the head, no room until ready_at: sleep until then
--    {5, now, reset}                   the quota is exhausted until reset (-1: until resumed):
--                                      fails, waiters included (it leaves the queue)
--    {-2}                              another config is stored for this model
-- During a cooldown nobody is admitted: a try is refused with ready_at no earlier than its end,
-- the head of the queue sleeps until then (4), the others wait behind it as usual.
-- every reply but -2 padded with zeros to 5 entries, then a 6th: 1 if the state did not exist
-- (the client tells an expiry after idling from a loss: restart, FLUSHALL, eviction).
local fp, now = rule_read()
if fp and fp ~= ARGV[1] then return {-2} end
-- every write of the state writes the fingerprint: none means no state (a first use, an
-- expiry, or a loss)
local FRESH = 0
if not fp then FRESH = 1 end
local function reply(t)
  for i = #t + 1, 5 do t[i] = 0 end
  t[6] = FRESH
  return t
end
local tokens, input, id = tonumber(ARGV[OP + 1]), tonumber(ARGV[OP + 2]), ARGV[OP + 3]
local maxp, lease_ttl, ticket_ttl = tonumber(ARGV[OP + 4]), tonumber(ARGV[OP + 5]), tonumber(ARGV[OP + 6])
local state_ttl, max_wait, try = tonumber(ARGV[OP + 7]), tonumber(ARGV[OP + 8]), tonumber(ARGV[OP + 9])
local pub, chan = ARGV[OP + 10], ARGV[OP + 11]

local prev = redis.call('HGET', AK, id)
if prev then -- a retry after a lost reply: the same admission, not a second one
  local at = rule_parse(prev)
  return reply({1, now, at, tonumber(redis.call('ZSCORE', LK, id)) or 0})
end
local freed = reap(now)
local head = queue_head(now)
-- in the queue only if there is one (an expired ticket was pruned with the others)
local queued = head and (head == id or redis.call('ZSCORE', QK, id))

if EX then
  -- the next waiter learns it too (`model_feedback` told them all; a message may be lost)
  if queued then dequeue(id) end
  wake(now, pub, chan)
  return reply({5, now, EX})
end

local function refuse(ready, limit, why)
  if queued then dequeue(id) end
  -- a place or a slot came free: it goes to the waiters behind (see `grant`)
  if (queued or freed > 0) and grant(now, maxp, lease_ttl, pub, chan) then keep_leases(lease_ttl) end
  rule_touch(now, state_ttl)
  return reply({0, now, ready, limit, why})
end
local function rate_ready()
  if rule_fits(tokens, input, now) then return rule_after_pause(now, 0) end
  return rule_after_pause(rule_wait(tokens, input, now))
end

if head and head ~= id then -- someone is ahead: never overtake
  local ready, limit = rate_ready()
  if try == 1 then return refuse(ready, limit, 1) end
  if ready == NEVER or (max_wait >= 0 and ready - now > max_wait) then return refuse(ready, limit, 0) end
  enqueue(id, now, ticket_ttl, tokens, input)
  -- reading the windows may have written the state (a head moved): keep it expiring
  rule_touch(now, state_ttl)
  if freed > 0 then wake(now, pub, chan) end
  return reply({2, now})
end
if redis.call('ZCARD', LK) >= maxp then
  local ready, limit = rate_ready()
  if try == 1 then return refuse(ready, limit, 1) end
  if ready == NEVER or (max_wait >= 0 and ready - now > max_wait) then return refuse(ready, limit, 0) end
  enqueue(id, now, ticket_ttl, tokens, input)
  rule_touch(now, state_ttl) -- as above
  return reply({3, now})
end
if not PU and rule_admit(tokens, input, now) then
  redis.call('ZADD', LK, tg_s(now + lease_ttl), id)
  redis.call('HSET', AK, id, rule_record(now, tokens, input))
  if queued then dequeue(id) end
  if head then grant(now, maxp, lease_ttl, pub, chan) end -- the next in line may fit too
  keep_leases(lease_ttl)
  rule_touch(now, state_ttl)
  return reply({1, now, now, now + lease_ttl})
end
local ready, limit
if PU then ready, limit = rate_ready() else ready, limit = rule_wait(tokens, input, now) end
if try == 1 or ready == NEVER or (max_wait >= 0 and ready - now > max_wait) then
  return refuse(ready, limit, 0)
end
-- holds the head while it sleeps: the ticket lasts until ready_at and one ticket TTL more,
-- so the head sleeps once (a message still wakes it early, e.g. after a refund)
enqueue(id, now, ticket_ttl + ready - now, tokens, input)
rule_touch(now, state_ttl)
return reply({4, now, ready, limit})
