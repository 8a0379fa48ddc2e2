-- A model's parallel slots and its FIFO queue. KEYS[2] leases (zset id -> expiry), KEYS[3]
-- queue (zset ticket -> sequence), KEYS[4] tickets (hash ticket -> "expiry:tokens:input", the
-- waiter's estimate beside its ticket's expiry; `seq` the counter),
-- KEYS[5] admissions (hash id -> "at:estimate", for settle-once and retried admits).
-- Production only: time in microseconds.
local LK, QK, XK, AK
local function queue_setup()
  LK, QK, XK, AK = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
end
local SLACK_MS = 1000

-- Drops expired leases and their admission records (a late settle is then void); how many.
local function reap(now)
  local dead = redis.call('ZRANGEBYSCORE', LK, '-inf', tg_s(now))
  if #dead > 0 then
    redis.call('HDEL', AK, unpack(dead))
    redis.call('ZREMRANGEBYSCORE', LK, '-inf', tg_s(now))
  end
  return #dead
end

-- The oldest live ticket, after dropping the tickets ahead of it that stopped refreshing.
local function queue_head(now)
  while true do
    local h = redis.call('ZRANGE', QK, '0', '0')[1]
    if not h then return nil end
    local exp = tonumber(string.match(redis.call('HGET', XK, h) or '', '^(%-?%d+)')) or 0
    if exp > now then return h end
    redis.call('ZREM', QK, h)
    redis.call('HDEL', XK, h)
  end
end

-- Joins the queue (keeping its place if already in it) and refreshes the ticket, which keeps
-- the waiter's estimate (tokens, input of them): what `grant` admits it with.
local function enqueue(id, now, ticket_ttl, tokens, input)
  if not redis.call('ZSCORE', QK, id) then
    redis.call('ZADD', QK, redis.call('HINCRBY', XK, 'seq', 1), id)
  end
  redis.call('HSET', XK, id, string.format('%d:%d:%d', now + ticket_ttl, tokens, input))
  local ms = tg_ceil_div(ticket_ttl, 1000) + SLACK_MS
  redis.call('PEXPIRE', QK, tg_s(ms))
  redis.call('PEXPIRE', XK, tg_s(ms))
end

-- (A ticket's expiry is only ever kept beside its place in the queue.)
local function dequeue(id)
  if redis.call('ZREM', QK, id) == 1 then redis.call('HDEL', XK, id) end
end

-- Tells the head of the queue to try again (a slot or room may have freed).
local function wake(now, pub, chan)
  local h = queue_head(now)
  if h then redis.call(pub, chan, h) end
end

local function keep_leases(lease_ttl)
  local ms = tg_ceil_div(lease_ttl, 1000) + SLACK_MS
  local t = tg_s(ms)
  redis.call('PEXPIRE', LK, t)
  redis.call('PEXPIRE', AK, t)
end

-- Admits the queued waiters on their behalf, oldest first, while the oldest has a slot and
-- room in every limit: each gets its lease and admission record, leaves the queue, and a
-- message naming it (its next call finds the admission, as a retry does). So room that frees
-- goes at once to as many waiters as it fits, in one call, instead of one waiter per round
-- trip; a waiter gone meanwhile gives its admission back when its dequeue arrives. Stops at
-- the first that does not fit (nobody is overtaken) and tells it to try again itself (to
-- sleep until its instant, say). Returns whether it admitted any (the caller then keeps the
-- leases and writes the state). During a pause (`rule_read`) it admits nobody: it only tells
-- the head, which then sleeps until the cooldown's end or fails on the exhausted quota.
local function grant(now, maxp, lease_ttl, pub, chan)
  if PU or EX then
    wake(now, pub, chan)
    return false
  end
  local active, any = nil, false
  while true do
    local h = queue_head(now)
    if not h then return any end
    local _, tokens, input = string.match(redis.call('HGET', XK, h) or '', '^(%-?%d+):(%d+):(%d+)$')
    tokens, input = tonumber(tokens), tonumber(input)
    if active == nil then active = redis.call('ZCARD', LK) end
    if tokens == nil or active >= maxp or not rule_admit(tokens, input, now) then
      redis.call(pub, chan, h)
      return any
    end
    active, any = active + 1, true
    redis.call('ZADD', LK, tg_s(now + lease_ttl), h)
    redis.call('HSET', AK, h, rule_record(now, tokens, input))
    dequeue(h)
    redis.call(pub, chan, h)
  end
end
