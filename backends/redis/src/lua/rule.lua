-- The model admission rule (tollgate's `RateState`) on a hash at KEYS[1]. Fields: `clk` the
-- latest time seen, `fp` the config fingerprint; per window limit i: `h<i>` its head slot,
-- `w<i>:<K>` the count of absolute slot K (only the ring's slots head-len+1..head are kept)
-- and `n<i>` their sum;
-- per bucket limit i: `t<i>`, `r<i>`: its theoretical arrival time tat + r/D;
-- the provider's feedback, shared by every process of the model: `pu` the end of a cooldown
-- (a 429's "retry after"), `ex` the reset of an exhausted quota (-1: until resumed), and `fb`
-- what the provider's headers said (absent until they said something: see `fb_parse`).
-- ARGV[2] = number of limits, then 6 per limit: kind (0 window, 1 bucket), counts (0
-- requests, 1 tokens, 2 input tokens, 3 output tokens), max, then a window's W (length), s
-- (slot length), len (ring) or a bucket's P, D (one token costs P/D time units), 0.
-- A request is `tokens` (its estimate's total) and `input` (the part of it that is input).
-- The call's context (set by `rule_setup` at the start of every call): the state key, the
-- limits, where the operation's own arguments start (ARGV[OP + 1]), and what the call has read
-- and changed of the state, written back once by `rule_flush` (`now` is the same throughout a
-- call, so one call can decide many requests on one read and one write). Per window i: HEAD[i]
-- its head slot and TOT[i] its running total once read, OLD[i] the sum of its kept slots that
-- are older than the window, SLOT[i][K] slot K's value once known, DIRTY[i][K] whether that
-- value must be written, ADD[i][K] an increment of a slot whose value was not read (charges
-- need no read); per bucket i: BKT[i] its {tat, rem} once read, DIRTY[i] whether to write it.
local S, NL, LIM, OP, HEAD, TOT, OLD, SLOT, DIRTY, ADD, BKT
-- The pause in force at this call's `now`, as `rule_read` found it (nil: none): PU the
-- cooldown's end, EX the exhausted quota's reset (-1: unknown, until resumed).
local PU, EX
-- Header feedback, as `fb_parse` read it from the `fb` field (all nil when there is none, so
-- an admission pays nothing for it): CFG the config's limits (LIM is a copy with the learned
-- maxima, when any), LRN[i] limit i's learned maximum, OTH[i] window i's others' share (see
-- `oth_at`), TH[i] that share in force at this call's `now` (the same all call long unless a
-- drain changes it), FBD whether `fb` must be written back, FBOWN whether LRN, OTH and LIM
-- are this call's own (false: the parsed field's cache's, not to be changed; see `fb_own`).
local CFG, LRN, OTH, TH, FBD, FBOWN
local NEVER = -1 -- "room only after the end of the clock"

-- Parsed limits by config fingerprint (ARGV[1], a digest of every limit's integers). Loaded as
-- a library, this outlives the call, so a config is parsed once, not on every call (about a
-- microsecond each); as a script it starts empty every call. Bounded: emptied when full.
local PARSED, NPARSED = {}, 0

local function rule_setup()
  S = KEYS[1]
  local p = PARSED[ARGV[1]]
  if not p then
    local n = tonumber(ARGV[2])
    p = { n = n }
    for i = 1, n do
      local o = 2 + (i - 1) * 6
      p[i] = {
        kind = tonumber(ARGV[o + 1]), counts = tonumber(ARGV[o + 2]), max = tonumber(ARGV[o + 3]),
        a = tonumber(ARGV[o + 4]), b = tonumber(ARGV[o + 5]), c = tonumber(ARGV[o + 6]),
      }
    end
    if NPARSED >= 256 then PARSED, NPARSED = {}, 0 end
    PARSED[ARGV[1]], NPARSED = p, NPARSED + 1
  end
  NL, LIM, CFG = p.n, p, p
  OP = 2 + NL * 6
  HEAD, TOT, OLD, SLOT, DIRTY, ADD, BKT = {}, {}, {}, {}, {}, {}, {}
  -- (a library's upvalues outlive the call: a pause read by the last call is not this one's)
  PU, EX = nil, nil
  LRN, OTH, TH, FBD, FBOWN = nil, nil, nil, nil, nil
end

-- Header feedback -------------------------------------------------------------------------
-- The core's `RateState::drain_seen_at` and `set_max`, on the same state. `fb` holds, per
-- limit that feedback touched, one record "i:m:la:lu:n:a1:u1:...:an:un" (records joined by
-- ';'): i the limit's index (from 1), m its learned maximum (0: the configured one), then for a
-- window the others' share (see `oth_at`): la, lu the latest report's (strict) share and its
-- end, n shares kept of the highest reports not yet reset, each with its end. One field, read
-- by the HMGET every call makes anyway: nothing more to read when it is absent.

-- The share held for others at `now`: the latest report's, or the highest of the kept reports
-- not yet reset, whichever is larger (kept shares decrease and their ends increase).
local function oth_at(o, now)
  local high = 0
  for k = 1, #o.s do
    if now < o.s[k][2] then high = o.s[k][1]; break end
  end
  if now < o.lu and o.la > high then return o.la end
  return high
end

-- When every share held has ended (`now` if none is in force).
local function oth_until(o, now)
  local to = now
  if #o.s > 0 and o.s[#o.s][2] > to then to = o.s[#o.s][2] end
  if o.lu > to then to = o.lu end
  return to
end

local SHARES = 4 -- reports kept apart (the core's `SHARES`)

-- Keeps a report's share `amount` until `until_` among the highest, as of `seen`: reports no
-- higher are hidden by it (it lasts as long as the longest of them); hidden itself by a higher
-- one lasting as long; when full, the newest kept (higher) lasts until its end too.
local function oth_hold(o, amount, until_, seen)
  local kept = {}
  for k = 1, #o.s do
    if seen < o.s[k][2] then kept[#kept + 1] = o.s[k] end
  end
  local n = #kept
  while n > 0 and kept[n][1] <= amount do
    if kept[n][2] > until_ then until_ = kept[n][2] end
    kept[n] = nil
    n = n - 1
  end
  if n > 0 and kept[n][2] >= until_ then
    -- hidden by a higher report that lasts at least as long
  elseif n == SHARES then
    kept[n] = { kept[n][1], until_ }
  else
    kept[n + 1] = { amount, until_ }
  end
  o.s = kept
end

-- Limit i's maximum becomes `max` in this call's limits (LIM is copied from the parsed config
-- once, so the config's cache is never changed).
local function lim_max(i, max)
  if LIM == CFG then
    local l = { n = NL }
    for k = 1, NL do l[k] = CFG[k] end
    LIM = l
  end
  local c = CFG[i]
  if max == c.max then
    LIM[i] = c
  else
    LIM[i] = { kind = c.kind, counts = c.counts, max = max, a = c.a, b = c.b, c = c.c }
  end
end

-- Parsed `fb` fields by config fingerprint and text (as PARSED: a library's upvalue, so a
-- field read again unchanged, as every admission between two reports reads it, is parsed
-- once; bounded: emptied when full). An entry's tables are shared by the calls that read the
-- same text: a call that changes them takes copies first (`fb_own`).
local FBC, NFBC = {}, 0

local function fb_parse_text(text)
  LRN, OTH = {}, {}
  for rec in string.gmatch(text, '[^;]+') do
    local t = {}
    for x in string.gmatch(rec, '%-?%d+') do t[#t + 1] = tonumber(x) end
    local i = t[1]
    if i and i >= 1 and i <= NL and t[2] then
      if t[2] > 0 then
        LRN[i] = t[2]
        lim_max(i, t[2])
      end
      if CFG[i].kind == 0 and t[5] then
        local o = { la = t[3] or 0, lu = t[4] or 0, s = {} }
        for k = 1, t[5] do
          local a, u = t[4 + 2 * k], t[5 + 2 * k]
          if a and u then o.s[#o.s + 1] = { a, u } end
        end
        OTH[i] = o
      end
    end
  end
  return { lrn = LRN, oth = OTH, lim = LIM }
end

-- Reads `fb` (see above) into LRN, OTH, TH (and LIM, with the learned maxima). A field with
-- nothing in force any more is marked to be dropped (by the call's `rule_flush`), so
-- admissions stop reading it.
local function fb_parse(text, now)
  local byfp = FBC[ARGV[1]]
  local c = byfp and byfp[text]
  if c == nil then
    c = fb_parse_text(text)
    if NFBC >= 64 then FBC, NFBC = {}, 0 end
    byfp = FBC[ARGV[1]]
    if byfp == nil then
      byfp = {}
      FBC[ARGV[1]] = byfp
    end
    byfp[text], NFBC = c, NFBC + 1
  end
  LRN, OTH, LIM, FBOWN, TH = c.lrn, c.oth, c.lim, false, {}
  local stale = next(LRN) == nil
  for i, o in pairs(OTH) do
    TH[i] = oth_at(o, now)
    if o.lu > now or (#o.s > 0 and o.s[#o.s][2] > now - CFG[i].a) then stale = false end
  end
  if stale then FBD = true end
end

-- Makes LRN, OTH and LIM this call's own before it changes them (copies of the cache's).
local function fb_own()
  if FBOWN ~= false then return end
  FBOWN = true
  local l = { n = NL }
  for k = 1, NL do l[k] = LIM[k] end
  LIM = l
  local lrn, oth = {}, {}
  for k, v in pairs(LRN) do lrn[k] = v end
  for k, o in pairs(OTH) do
    local sh = {}
    for j = 1, #o.s do sh[j] = { o.s[j][1], o.s[j][2] } end
    oth[k] = { la = o.la, lu = o.lu, s = sh }
  end
  LRN, OTH = lrn, oth
end

-- Writes `fb` back if this call changed it, without what can no longer matter: the latest
-- share once ended, kept shares ended a window ago (a report is only applied when seen within
-- a window of the clock, and holding drops the shares ended by the time it was seen).
local function fb_flush(now)
  FBD = nil
  fb_own()
  local parts = {}
  for i = 1, NL do
    local m, o = LRN and LRN[i], OTH and OTH[i]
    local rec = nil
    if o then
      if o.lu <= now then o.la, o.lu = 0, 0 end
      local gone, s = now - CFG[i].a, {}
      for k = 1, #o.s do
        if o.s[k][2] > gone then s[#s + 1] = o.s[k] end
      end
      o.s = s
      if o.lu > 0 or #s > 0 then
        local w = { string.format('%d:%d:%d:%d:%d', i, m or 0, o.la, o.lu, #s) }
        for k = 1, #s do w[#w + 1] = string.format('%d:%d', s[k][1], s[k][2]) end
        rec = table.concat(w, ':')
      end
    end
    if rec == nil and m then rec = string.format('%d:%d:0:0:0', i, m) end
    if rec then parts[#parts + 1] = rec end
  end
  if #parts == 0 then
    redis.call('HDEL', S, 'fb')
  else
    redis.call('HSET', S, 'fb', table.concat(parts, ';'))
  end
end

-- What every admission reads first, in one command: the stored fingerprint (nil: no state
-- yet), the clock clamped so it never steps back, the pause in force (PU, EX) and the header
-- feedback, if any (`fb_parse`). A pause that has ended reads as none (`now` at its end admits).
local function rule_read()
  local v = redis.call('HMGET', S, 'fp', 'clk', 'pu', 'ex', 'fb')
  local now, last = tg_time(), tonumber(v[2])
  if last and now < last then now = last end
  if v[5] then fb_parse(v[5], now) end
  PU, EX = tonumber(v[3]), tonumber(v[4])
  if PU and PU <= now then PU = nil end
  if EX and EX >= 0 and EX <= now then EX = nil end
  return v[1], now
end

-- When a request whose rate limits have room at `ready` can go, given the cooldown: no
-- earlier than its end (NEVER stays NEVER).
local function rule_after_pause(ready, limit)
  if PU and ready ~= NEVER and ready < PU then return PU, -1 end
  return ready, limit
end

-- The field of window i's slot k. Integers become text through '%d': Lua's own conversion
-- keeps only 14 significant digits.
local function tg_slot(i, k)
  return string.format('w%d:%d', i, k)
end

-- What an admission of (tokens, input) must find room for in limit L: a request, the total,
-- the input, or (output, which nothing reserves) room for one more: the window not full.
local function need(L, tokens, input)
  local c = L.counts
  if c == 0 or c == 3 then return 1 end
  if c == 1 then return tokens end
  return input
end

-- What an admission of (tokens, input) charges limit L (output: nothing until produced).
local function weight(L, tokens, input)
  local c = L.counts
  if c == 0 then return 1 end
  if c == 1 then return tokens end
  if c == 2 then return input end
  return 0
end

-- Windows -------------------------------------------------------------------------------

-- Moves window i's head to the slot of `now`, dropping the slots that left the ring and
-- taking them off the window's running total `n<i>` (the sum of its kept slots).
local function win_advance(i, L, now)
  if HEAD[i] then return HEAD[i] end
  local head = tg_div(now, L.b)
  local hk, nk = 'h' .. i, 'n' .. i
  local hv = redis.call('HMGET', S, hk, nk)
  local old = tonumber(hv[1])
  TOT[i] = tonumber(hv[2]) or 0
  SLOT[i], DIRTY[i], ADD[i] = {}, {}, {}
  if old ~= nil and head <= old then
    HEAD[i] = old
    return old
  end
  if old ~= nil then
    local from, to = old - L.c + 1, math.min(old, head - L.c)
    if to >= from then
      local f = {}
      for k = from, to do f[#f + 1] = tg_slot(i, k) end
      local v = redis.call('HMGET', S, unpack(f))
      local gone = 0
      for j = 1, #v do gone = gone + (tonumber(v[j]) or 0) end
      redis.call('HDEL', S, unpack(f))
      if gone ~= 0 then
        TOT[i] = TOT[i] - gone
        redis.call('HSET', S, nk, tg_s(TOT[i]))
      end
    end
  end
  redis.call('HSET', S, hk, tg_s(head))
  HEAD[i] = head
  return head
end

-- The oldest slot overlapping (now - W, now].
local function win_first(L, now)
  local t = now - (L.a - 1)
  if t < 0 then t = 0 end
  return tg_div(t, L.b)
end

-- The values of window i's slots from..to (to >= from - 1), oldest first, as this call has
-- them (its own changes included); the ones read are kept for the rest of the call.
local function win_slots(i, from, to)
  if to < from then return {} end
  local known, add = SLOT[i], ADD[i]
  local f, at = {}, {}
  for k = from, to do
    if known[k] == nil then f[#f + 1] = tg_slot(i, k); at[#at + 1] = k end
  end
  if #f > 0 then
    local v = redis.call('HMGET', S, unpack(f))
    for j = 1, #v do
      local k, d = at[j], add[at[j]]
      known[k] = (tonumber(v[j]) or 0) + (d or 0)
      -- a charge not yet written is now in the value: the value is what gets written
      if d then add[k], DIRTY[i][k] = nil, true end
    end
  end
  local out = {}
  for k = from, to do out[#out + 1] = known[k] end
  return out
end

local function fits_sum(L, used, n)
  return used <= L.max and n <= L.max - used
end

-- The conservative count of the window ending at `now`: the running total less the kept
-- slots that are already older than the window (usually none or one; the same for the whole
-- call: charges go to the head, adjustments only to slots inside the window).
local function win_used(i, L, now)
  local head = win_advance(i, L, now)
  if OLD[i] == nil then
    local old = win_slots(i, head - L.c + 1, win_first(L, now) - 1)
    local sum = 0
    for j = 1, #old do sum = sum + old[j] end
    OLD[i] = sum
  end
  return TOT[i] - OLD[i]
end

local function win_earliest(i, L, n, now)
  if n > L.max then return NEVER end
  if fits_sum(L, win_used(i, L, now), n) then return now end
  -- From the newest slot back: the oldest slot that still lets n fit is where the window
  -- must start; it starts there once T - W + 1 >= start * s.
  local head = win_advance(i, L, now)
  local lo = math.max(win_first(L, now), head - L.c + 1)
  local v = win_slots(i, lo, head)
  local start = head + 1
  local sum = 0
  for j = #v, 1, -1 do
    sum = sum + v[j]
    if not fits_sum(L, sum, n) then break end
    start = start - 1
  end
  return start * L.b + L.a - 1
end

-- Charges n to the head slot (written by `rule_flush`).
local function win_charge(i, L, n, now)
  local head = HEAD[i] or win_advance(i, L, now)
  if n ~= 0 then
    local known = SLOT[i]
    if known[head] ~= nil then
      known[head] = known[head] + n
      DIRTY[i][head] = true
    else
      local add = ADD[i]
      add[head] = (add[head] or 0) + n
    end
    TOT[i] = TOT[i] + n
    DIRTY[i].n = true
  end
end

-- The `from` charged in slot K become `to`, if K is still in the window; false if it left.
local function win_adjust(i, L, K, from, to, now)
  local head = HEAD[i] or win_advance(i, L, now)
  if K > head or K < win_first(L, now) then return false end
  local old = SLOT[i][K]
  if old == nil then old = win_slots(i, K, K)[1] end
  local c = old + to - from
  if c < 0 then c = 0 end
  if c ~= old then
    SLOT[i][K] = c
    DIRTY[i][K] = true
    TOT[i] = TOT[i] + c - old
    DIRTY[i].n = true
  end
  return true
end

-- Writes window i's changes back.
local function win_flush(i)
  local dirty = DIRTY[i]
  if dirty == nil then return end
  for k, d in pairs(ADD[i]) do
    redis.call('HINCRBY', S, tg_slot(i, k), tg_s(d))
  end
  for k, _ in pairs(dirty) do
    if k ~= 'n' then
      local c = SLOT[i][k]
      if c == 0 then redis.call('HDEL', S, tg_slot(i, k)) else redis.call('HSET', S, tg_slot(i, k), tg_s(c)) end
    end
  end
  if dirty.n then redis.call('HSET', S, 'n' .. i, tg_s(TOT[i])) end
  SLOT[i], DIRTY[i], ADD[i] = {}, {}, {}
end

-- Buckets (GCRA): TAT = tat + rem / D time units, one token costs P / D ----------------------

local function bkt_get(i)
  local b = BKT[i]
  if b == nil then
    local v = redis.call('HMGET', S, 't' .. i, 'r' .. i)
    b = { tonumber(v[1]) or 0, tonumber(v[2]) or 0 }
    BKT[i] = b
  end
  return b[1], b[2]
end

-- TAT - now, in 1/D units (negative when the bucket is full).
local function bkt_lead(i, L, now)
  local tat, rem = bkt_get(i)
  return (tat - now) * L.b + rem
end

local function bkt_set_lead(i, L, now, lead)
  local q, r = tg_divmod(lead, L.b)
  BKT[i] = { now + q, r }
  DIRTY[i] = true
end

local function bkt_flush(i)
  if DIRTY[i] then
    redis.call('HSET', S, 't' .. i, tg_s(BKT[i][1]), 'r' .. i, tg_s(BKT[i][2]))
    DIRTY[i] = nil
  end
end

local function bkt_fits(i, L, n, now)
  local lead = math.max(bkt_lead(i, L, now), 0)
  return n <= L.max and lead + n * L.a <= L.max * L.a
end

local function bkt_earliest(i, L, n, now)
  if n > L.max then return NEVER end
  local x = math.max(bkt_lead(i, L, now), 0) + (n - L.max) * L.a
  if x <= 0 then return now end
  return now + tg_ceil_div(x, L.b)
end

local function bkt_charge(i, L, n, now)
  local lead = math.max(bkt_lead(i, L, now), 0)
  bkt_set_lead(i, L, now, lead + n * L.a)
end

-- Gives back n tokens of a charge made at `at`, as far as that charge has not drained.
local function bkt_refund(i, L, n, at, now)
  local lead = bkt_lead(i, L, now)
  if lead <= 0 then return end
  local undrained = math.max((at - now) * L.b + L.max * L.a, 0)
  local give = math.min(n * L.a, undrained)
  bkt_set_lead(i, L, now, math.max(lead - give, 0))
end

local function bkt_used(i, L, now)
  local lead = math.max(bkt_lead(i, L, now), 0)
  return tg_ceil_div(lead, L.a)
end

-- The rule ---------------------------------------------------------------------------------

local function fits(i, L, n, now)
  if L.kind == 0 then
    -- (after a call's first request, a window's count is two table reads: the hot path of a
    -- call deciding many)
    local old = OLD[i]
    local used
    if old ~= nil then used = TOT[i] - old else used = win_used(i, L, now) end
    -- (the others' share the provider counts, beside this state's own charges)
    if TH and TH[i] then used = used + TH[i] end
    return used <= L.max and n <= L.max - used
  end
  return bkt_fits(i, L, n, now)
end

local function earliest(i, L, n, now)
  if L.kind ~= 0 then return bkt_earliest(i, L, n, now) end
  local theirs = TH and TH[i] or 0
  local ours = win_earliest(i, L, n, now)
  if theirs == 0 then return ours end
  -- Room beside their share (at its largest) before it ends, or room once it has ended,
  -- whichever comes first (NEVER is later than any instant).
  local beside = win_earliest(i, L, n + theirs, now)
  if ours ~= NEVER then ours = math.max(ours, oth_until(OTH[i], now)) end
  if beside == NEVER then return ours end
  if ours == NEVER then return beside end
  return math.min(beside, ours)
end

-- When a request of (tokens, input) that does not fit now would: {ready_at (NEVER: never),
-- limit}.
local function rule_wait(tokens, input, now)
  local ready, limit = now, 0
  for i = 1, NL do
    local at = earliest(i, LIM[i], need(LIM[i], tokens, input), now)
    if at == NEVER then return NEVER, i - 1 end
    if at > ready then ready, limit = at, i - 1 end
  end
  if ready <= now then ready = NEVER end
  return ready, limit
end

local function rule_fits(tokens, input, now)
  for i = 1, NL do
    local L = LIM[i]
    if not fits(i, L, need(L, tokens, input), now) then return false end
  end
  return true
end

-- Admits at `now` (all limits charged) and returns true, or charges nothing and returns false.
local function rule_admit(tokens, input, now)
  if not rule_fits(tokens, input, now) then return false end
  for i = 1, NL do
    local L = LIM[i]
    local n = weight(L, tokens, input)
    if n ~= 0 then
      if L.kind == 0 then win_charge(i, L, n, now) else bkt_charge(i, L, n, now) end
    end
  end
  return true
end

-- Limit i's charge of `est` at `at` becomes `actual` (in the slot of `at` while it is in the
-- window; an excess past it is charged now; a bucket refunds what has not drained).
local function settle_one(i, L, at, est, actual, now)
  if actual == est then return end
  if L.kind == 0 then
    if not win_adjust(i, L, tg_div(at, L.b), est, actual, now) and actual > est then
      win_charge(i, L, actual - est, now)
    end
  elseif actual > est then
    bkt_charge(i, L, actual - est, now)
  else
    bkt_refund(i, L, est - actual, at, now)
  end
end

-- The estimate (est, est_in) charged at `at` becomes the actual (actual, actual_in): total-token
-- limits get the total, input-token limits the input, output-token limits the output (charged
-- now for the first time: it was produced by the end of the request).
local function rule_settle(at, est, est_in, actual, actual_in, now)
  for i = 1, NL do
    local L = LIM[i]
    local c = L.counts
    if c == 1 then
      settle_one(i, L, at, est, actual, now)
    elseif c == 2 then
      settle_one(i, L, at, est_in, actual_in, now)
    elseif c == 3 and actual > actual_in then
      if L.kind == 0 then win_charge(i, L, actual - actual_in, now) else bkt_charge(i, L, actual - actual_in, now) end
    end
  end
end

-- Undoes the admission of (tokens, input) made at `at`, for a caller that never got it (gone
-- by the answer): its tokens and its request come off every limit, as far as the slot is
-- still in the window or the charge has not drained.
local function rule_cancel(at, tokens, input, now)
  for i = 1, NL do
    local L = LIM[i]
    local w = weight(L, tokens, input)
    if w ~= 0 then
      if L.kind == 0 then win_adjust(i, L, tg_div(at, L.b), w, 0, now) else bkt_refund(i, L, w, at, now) end
    end
  end
end

-- What window i charged in the window ending at `seen` (no later than `now`, to which it is
-- advanced): strict, lenient, ok. strict without the oldest slot when that slot may start
-- before the window does, lenient with it (nil when that slot has left the ring); not ok when
-- the ring no longer holds the slots wholly in that window (the core's `own_at`).
local function own_at(i, L, seen, now)
  local span, slot, len = L.a, L.b, L.c
  if seen > now then seen = now end
  if seen + span <= now then return 0, nil, false end
  local head = tg_div(now, slot)
  local kept = math.max(head + 1 - len, 0)
  local start = math.max(seen + 1 - span, 0)
  local first, off = tg_divmod(start, slot)
  -- before the clock has run a window, the window starts at the epoch: no straddle
  local straddles = seen + 1 > span and off ~= 0
  local st = 0
  if straddles then st = 1 end
  if first + st < kept then return 0, nil, false end
  local inner = 0
  for _, c in ipairs(win_slots(i, first + st, tg_div(seen, slot))) do inner = inner + c end
  if not straddles then return inner, inner, true end
  if first >= kept then return inner, inner + win_slots(i, first, first)[1], true end
  return inner, nil, true
end

-- Makes limit i's room no more than the provider's `remaining` (it may have `tol` more), as
-- reported at `seen` (no later than `now`), until `expires` (the core's `drain_seen_at`): a
-- window holds what the provider counts beyond this state's own charges as the others'
-- share, each report replacing the last; a bucket is charged the excess. Returns what the
-- limit holds for the others now (0: a report older than the ring, or no such limit).
local function rule_drain(i, remaining, tol, expires, seen, now)
  local L = LIM[i]
  if L == nil then return 0 end
  if seen > now then seen = now end
  if L.kind ~= 0 then
    local room = math.max(L.max - bkt_used(i, L, now), 0)
    local excess = math.max(room - remaining, 0)
    if excess > 0 then bkt_charge(i, L, excess, now) end
    return excess
  end
  win_used(i, L, now) -- (advanced to now first)
  local strict, lenient, ok = own_at(i, L, seen, now)
  if not ok then return 0 end
  local counted = math.max(L.max - remaining, 0)
  local at_least = math.max(counted - tol, 0)
  local amount, floor = 0, 0
  if lenient ~= nil then
    if at_least > lenient then
      amount, floor = counted - math.min(strict, counted), counted - math.min(lenient, counted)
    end
  elseif at_least > strict then
    amount = counted - strict
  end
  -- a reset is reported to the second at best: one slot more
  local until_ = expires + L.b
  if OTH == nil then LRN, OTH, TH = {}, {}, {} end
  fb_own()
  local o = OTH[i] or { la = 0, lu = 0, s = {} }
  o.la, o.lu = amount, until_
  oth_hold(o, floor, until_, seen)
  OTH[i] = o
  TH[i] = oth_at(o, now)
  FBD = true
  return TH[i]
end

-- Limit i's maximum becomes `max` (at least 1), what it counted kept (the core's `set_max`);
-- the config, and so the fingerprint, stays. Returns the maximum before (nil: no such limit).
local function rule_set_max(i, max)
  local c = CFG[i]
  if c == nil then return nil end
  if max < 1 then max = 1 end
  local from = LIM[i].max
  if OTH == nil then LRN, OTH, TH = {}, {}, {} end
  fb_own()
  if max == c.max then LRN[i] = nil else LRN[i] = max end
  lim_max(i, max)
  FBD = true
  return from
end

-- An admission record: "at:tokens:input" (an older "at:tokens" is all input).
local function rule_record(at, tokens, input)
  return string.format('%d:%d:%d', at, tokens, input)
end

local function rule_parse(rec)
  local at, tokens, input = string.match(rec, '^(%-?%d+):(%d+):?(%d*)$')
  tokens = tonumber(tokens)
  return tonumber(at), tokens, tonumber(input) or tokens
end

local function rule_usage(now)
  local out = {}
  for i = 1, NL do
    local L = LIM[i]
    if L.kind == 0 then
      out[i] = win_used(i, L, now) + (TH and TH[i] or 0)
    else
      out[i] = bkt_used(i, L, now)
    end
  end
  return out
end

-- Writes back what this call changed (once, whatever it decided).
local function rule_flush(now)
  for i = 1, NL do
    if LIM[i].kind == 0 then win_flush(i) else bkt_flush(i) end
  end
  if FBD then fb_flush(now) end
end

-- Keeps the state alive for `ttl_ms` more, and at least until the pause in force ends (the
-- pause lives in the state: expiring with it would end it early); an exhaustion until resumed
-- keeps it for good (`resume` gives the expiry back).
local function rule_expire(now, ttl_ms)
  if EX == -1 then
    redis.call('PERSIST', S)
    return
  end
  local to = math.max(PU or 0, EX or 0)
  -- (a share held for others lives in the state too)
  if OTH then
    for _, o in pairs(OTH) do to = math.max(to, oth_until(o, now)) end
  end
  -- (µs of the server's clock to ms, and a second of slack)
  if to > now then ttl_ms = math.max(ttl_ms, tg_ceil_div(to - now, 1000) + 1000) end
  redis.call('PEXPIRE', S, tg_s(ttl_ms))
end

-- Writes the call's changes, records the clock and the fingerprint, and keeps the state alive
-- for `ttl_ms` more (see `rule_expire`).
local function rule_touch(now, ttl_ms)
  rule_flush(now)
  redis.call('HSET', S, 'clk', tg_s(now), 'fp', ARGV[1])
  rule_expire(now, ttl_ms)
end
