//! The admission rule as pure functions over plain data: [`RateState`] holds one model's
//! counters (no pointers into anything, no locks, no clock), and each operation takes `now`.
//! Where the state lives — in memory, serialised, in Redis — is the [`StateStore`]'s business
//! (`store.rs`); how a caller waits is the limiter's.
//!
//! The rule, for a model with limits `L₀ … Lₙ` and a request [`Estimate`] `e` of input and
//! output tokens (weight 1 in a [`Counts::Requests`] limit, `e.total()` in a [`Counts::Tokens`]
//! one, `e.input` in a [`Counts::InputTokens`] one, 0 in a [`Counts::OutputTokens`] one, which
//! only needs room for one more token: output is counted when it is produced, at settle):
//!
//! - **clock**: every operation, reads included, first clamps `now` to the latest instant the
//!   state has seen and records it, so a clock that steps back only delays;
//! - **admit**: if every limit has room for its weight, charge every limit and return a
//!   [`Charge`]; otherwise charge nothing and return a [`Wait`]: the latest of the limits'
//!   earliest instants, and which limit that is (`Instant::MAX`: never);
//! - **settle**: in every total- and input-token limit, what was charged at admission (the
//!   total, the input) becomes the actual count of its kind — in a window, in the slot it was
//!   charged to while that slot is in the window; once it has left, a refund refunds nothing
//!   and an excess is charged now (it was used); in a bucket, a refund moves the bucket back
//!   by at most what of the charge has not drained yet (never past full, never into room
//!   later charges hold), an excess is charged now. In an output-token limit, which nothing
//!   was reserved in, the actual output is charged *now*, when it was produced (a provider
//!   counts output as it is produced, so charged in the admission's slot it would leave the
//!   window up to a request's duration before the provider's count of it);
//! - **usage**: per limit, what is charged in the window ending now (a bucket: its burst
//!   minus what it could admit now).
//!
//! Feedback from a provider works on the same state, never giving more room than the limits
//! alone would unless the caller asks otherwise: **drain** makes a limit's room no more than
//! the provider's remaining (in a window, by holding what the provider counts beyond the
//! state's own charges as other clients' share until the provider's reset, each report
//! replacing the last; a bucket is charged the excess), and **set_max** changes a limit's
//! maximum keeping its counters.
//!
//! [`StateStore`]: super::StateStore

use alloc::vec::Vec;

use super::estimate::Estimate;
use super::gcra::Gcra;
use super::limit::{Counts, Limit, LimitKind};
use crate::Instant;
use crate::error::InvalidConfig;
use crate::window::HeapWindow;

/// What an admission charged, to settle it later: the instant it was charged at (after the
/// state's clock clamp) and the estimate. Plain data, so it can cross to another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Charge {
    /// The state's clock at admission: every window charged it in the slot of this instant.
    pub at: Instant,
    /// The tokens reserved in total-token limits (the estimate's total).
    pub tokens: u64,
    /// The input tokens reserved in input-token limits (the estimate's input; equal to
    /// `tokens` for an admission of a plain count, [`RateState::admit_at`]).
    pub input: u64,
}

impl Charge {
    /// What an admission of `estimate` at `at` charged.
    pub const fn new(at: Instant, estimate: Estimate) -> Self {
        Self { at, tokens: estimate.total(), input: estimate.input }
    }

    /// A plain count `actual` of a request admitted with this charge, split as the rule
    /// settles it ([`RateState::settle_at`]): input first, up to the input reserved, the rest
    /// as output.
    pub const fn split(&self, actual: u64) -> Estimate {
        let input = if actual < self.input { actual } else { self.input };
        Estimate { input, output: actual - input }
    }
}

/// Why a request does not fit now: when it would, if nothing else changes, and which limit
/// is the last to have room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Wait {
    /// The earliest instant every limit has room; `Instant::MAX`: never (room only after the
    /// end of the clock).
    pub ready_at: Instant,
    /// The index, in the model's list of limits, of the limit that has room last.
    pub limit: usize,
}

/// One model's rate-limit counters: plain data, one entry per limit in list order. Built from
/// the limits, changed only by the rule's operations, and convertible to and from a flat list
/// of integers ([`encode`](Self::encode), [`decode`](Self::decode)) for stores that keep it
/// elsewhere.
///
/// ```
/// use core::time::Duration;
/// use tollgate::model::{Limit, RateState};
/// use tollgate::Instant;
///
/// let limits = [
///     Limit::requests("rpm", 2, Duration::from_secs(60)),
///     Limit::tokens("tpm", 1_000, Duration::from_secs(60)),
/// ];
/// let mut state = RateState::new(&limits);
/// let charge = state.admit_at(800, Instant::ZERO).unwrap();
/// let wait = state.admit_at(300, Instant::ZERO).unwrap_err();
/// assert_eq!(wait.limit, 1); // tpm is the limit that has room last
/// state.settle_at(charge, 500, Instant::from_secs(1));
/// assert!(state.earliest_at(300, Instant::from_secs(1)).is_none());
///
/// // The same state as integers, and back.
/// let mut words = Vec::new();
/// state.encode(&mut words);
/// let mut back = RateState::decode(&limits, &words)?;
/// let mut used = Vec::new();
/// back.usage_at(Instant::from_secs(1), &mut used);
/// assert_eq!(used, [1, 500]);
/// # Ok::<_, tollgate::InvalidConfig>(())
/// ```
#[derive(Debug, Clone)]
pub struct RateState {
    latest: Instant,
    meters: Vec<Meter>,
}

#[derive(Debug, Clone)]
struct Meter {
    counts: Counts,
    how: How,
}

#[derive(Debug, Clone)]
enum How {
    Window(HeapWindow, Others),
    Bucket(Gcra),
}

/// What a window holds, beside its own charges, for usage the provider counts and this state
/// did not make (other clients on the same key). Kept apart from the ring so that each report
/// *replaces* the last: the other clients' requests leave the provider's window one by one and
/// are replaced, so their share is a level, not a charge that leaves in one piece a window
/// later. What is held is the larger of the latest report's share, counted strictly (the
/// state's oldest slot, which may straddle the provider's window start, as theirs), and the
/// highest share of the reports whose resets are still ahead, counted with that slot as ours
/// (exact when it is empty, else no more than theirs, so an old report's slot error is not
/// held for a window): a share that dips for a moment (one of their requests gone, the next
/// not yet sent) comes back with their next request, and no header can say when that is.
///
/// The highest are kept as a queue of at most [`SHARES`] reports, shares decreasing and
/// resets increasing from front to back (a report hides every earlier one it is at least as
/// high as, taking the later reset of the two): the front one not yet reset is the highest in
/// force. When the queue is full, a new report merges into the newest kept, which is higher,
/// extending its reset (stricter, never looser).
#[derive(Debug, Clone, Copy, Default)]
struct Others {
    /// The latest report's share, counted strictly (the straddling slot as theirs).
    latest: Share,
    /// The reports' shares counted with the straddling slot as ours (exact when it is empty,
    /// otherwise no more than theirs): the highest not yet reset is held.
    shares: [Share; SHARES],
    len: u8,
}

/// How many reports [`Others`] keeps apart.
const SHARES: usize = 4;

/// One report's share of the others, until that report's reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Share {
    amount: u64,
    until: Instant,
}

impl Others {
    fn kept(&self) -> &[Share] {
        &self.shares[..usize::from(self.len)]
    }

    /// The share in force at `now`: the latest report's, or the highest of the reports not
    /// yet reset, whichever is larger.
    fn at(&self, now: Instant) -> u64 {
        let high = self.kept().iter().find(|s| now < s.until).map_or(0, |s| s.amount);
        let latest = if now < self.latest.until { self.latest.amount } else { 0 };
        high.max(latest)
    }

    /// When every report's share has ended (`now` if none is in force).
    fn until(&self, now: Instant) -> Instant {
        let high = self.kept().last().map_or(now, |s| s.until);
        high.max(self.latest.until).max(now)
    }

    /// A report at `seen` of a share of `strict` (counting the straddling slot as theirs)
    /// and `floor` (counting it as ours), until `until`.
    fn report(&mut self, strict: u64, floor: u64, until: Instant, seen: Instant) {
        self.latest = Share { amount: strict, until };
        self.hold(floor, until, seen);
    }

    /// Keeps a report's share of `amount` until `until` among the highest.
    fn hold(&mut self, amount: u64, until: Instant, seen: Instant) {
        let mut kept = [Share::default(); SHARES];
        let mut n = 0;
        for s in self.kept().iter().filter(|s| seen < s.until) {
            kept[n] = *s;
            n += 1;
        }
        // Reports no higher than this one are hidden by it; should one have lasted longer,
        // this one's share lasts as long (stricter).
        let mut until = until;
        while n > 0 && kept[n - 1].amount <= amount {
            until = until.max(kept[n - 1].until);
            n -= 1;
        }
        if n > 0 && kept[n - 1].until >= until {
            // Hidden by a higher report that lasts at least as long.
        } else if n == SHARES {
            // Full: the newest kept, higher, lasts until this one's reset too.
            kept[n - 1].until = until;
        } else {
            kept[n] = Share { amount, until };
            n += 1;
        }
        self.shares = kept;
        self.len = n as u8;
    }

    /// As words: the latest share and reset, the count kept, then each one's share and reset.
    fn encode(&self, out: &mut Vec<u64>) {
        out.push(self.latest.amount);
        out.push(self.latest.until.as_nanos());
        out.push(u64::from(self.len));
        for s in &self.shares {
            out.push(s.amount);
            out.push(s.until.as_nanos());
        }
    }

    /// Reads back what [`encode`](Self::encode) wrote ([`OTHERS_WORDS`] words).
    fn decode(words: &[u64]) -> Option<Self> {
        let [amount, until, len, rest @ ..] = words else { return None };
        let len = *len;
        if len > SHARES as u64 || rest.len() != 2 * SHARES {
            return None;
        }
        let latest = Share { amount: *amount, until: Instant::from_nanos(*until) };
        let mut others = Self { latest, len: len as u8, ..Self::default() };
        for (s, w) in others.shares.iter_mut().zip(rest.chunks_exact(2)) {
            *s = Share { amount: w[0], until: Instant::from_nanos(w[1]) };
        }
        Some(others)
    }
}

/// Words an [`Others`] takes in [`RateState::encode`].
const OTHERS_WORDS: usize = 3 + 2 * SHARES;

impl Meter {
    fn new(limit: &Limit) -> Self {
        let how = match limit.kind {
            // Limits are validated first; should one not be, its values are clamped to valid
            // ones (at most MAX_SLOTS slots) rather than panic.
            LimitKind::Window { window, slots } => How::Window(
                HeapWindow::clamped_in(
                    window,
                    limit.max,
                    slots.clamp(1, Limit::MAX_SLOTS) as usize + 1,
                ),
                Others::default(),
            ),
            LimitKind::Bucket { rate } => How::Bucket(Gcra::new(rate, limit.max.max(1))),
        };
        Self { counts: limit.counts, how }
    }

    /// What an admission of `e` must find room for in this limit.
    fn need(&self, e: Estimate) -> u64 {
        match self.counts {
            Counts::OutputTokens => 1,
            _ => self.weight(e),
        }
    }

    /// What an admission of `e` charges this limit (output: nothing until it is produced).
    fn weight(&self, e: Estimate) -> u64 {
        match self.counts {
            Counts::Requests => 1,
            Counts::Tokens => e.total(),
            Counts::InputTokens => e.input,
            Counts::OutputTokens => 0,
        }
    }

    /// What `charge` put into this limit at admission, and what `actual` makes of it.
    fn settled(&self, charge: Charge, actual: Estimate) -> Option<(u64, u64)> {
        match self.counts {
            Counts::Requests => None,
            Counts::Tokens => Some((charge.tokens, actual.total())),
            Counts::InputTokens => Some((charge.input, actual.input)),
            Counts::OutputTokens => Some((0, actual.output)),
        }
    }

    /// The limit's maximum (a window's limit, a bucket's burst).
    fn max(&self) -> u64 {
        match &self.how {
            How::Window(w, _) => w.limit(),
            How::Bucket(b) => b.burst(),
        }
    }

    fn set_max(&mut self, max: u64) {
        let max = max.max(1);
        match &mut self.how {
            How::Window(w, _) => {
                let _ = w.set_limit(max);
            }
            How::Bucket(b) => b.set_burst(max),
        }
    }

    /// Makes the limit's room at most the provider's `remaining`, as the provider reported it
    /// at `seen` (no later than `now`), until `expires`; returns what the limit now holds for
    /// usage it did not make (see [`RateState::drain_seen_at`] for the rule).
    fn drain(
        &mut self,
        remaining: u64,
        tolerance: u64,
        expires: Instant,
        seen: Instant,
        now: Instant,
    ) -> u64 {
        let max = self.max();
        match &mut self.how {
            How::Window(w, others) => {
                w.used_at(now); // expire old slots first
                let Some((strict, lenient)) = own_at(w, seen) else { return 0 };
                let counted = max.saturating_sub(remaining);
                // No sign of anyone else (the least the provider may count is no more than
                // what this state may have charged): nothing is held. Otherwise hold the most
                // their share can be, with the oldest slot's uncertain part counted as
                // theirs, so the room never grows by that slot's error when it leaves.
                let at_least = counted.saturating_sub(tolerance);
                // When the straddling slot is gone from the ring, what it held is unknown:
                // the report counts for the latest share (the slot as theirs, until the next
                // report replaces it) but holds nothing for longer.
                let (amount, floor) = match lenient {
                    Some(lenient) if at_least > lenient => {
                        (counted - strict.min(counted), counted - lenient.min(counted))
                    }
                    None if at_least > strict => (counted - strict, 0),
                    _ => (0, 0),
                };
                // A reset is reported to the second at best (RFC 3339): one slot more.
                let until = expires.saturating_add(w.slot_length());
                others.report(amount, floor, until, seen);
                others.at(now)
            }
            How::Bucket(b) => {
                let room = max.saturating_sub(b.used(now));
                let excess = room.saturating_sub(remaining);
                if excess > 0 {
                    b.charge(excess, now);
                }
                excess
            }
        }
    }

    fn fits(&mut self, n: u64, now: Instant) -> bool {
        match &mut self.how {
            How::Window(w, others) => w.fits_at(n.saturating_add(others.at(now)), now),
            How::Bucket(b) => b.fits(n, now),
        }
    }

    /// When `n` fit (`n` within the limit's capacity, checked before the rule runs).
    fn earliest(&mut self, n: u64, now: Instant) -> Instant {
        match &mut self.how {
            How::Window(w, others) => {
                let theirs = others.at(now);
                let ours = w.earliest_fit_at(n, now).unwrap_or(Instant::MAX);
                if theirs == 0 {
                    return ours;
                }
                // Either room beside their share (at its largest) before it ends, or room
                // once it has ended: stricter than exact by what of it ends earlier.
                let beside = match n.checked_add(theirs) {
                    Some(both) => w.earliest_fit_at(both, now).unwrap_or(Instant::MAX),
                    None => Instant::MAX,
                };
                beside.min(ours.max(others.until(now)))
            }
            How::Bucket(b) => b.earliest(n, now),
        }
    }

    fn charge(&mut self, n: u64, now: Instant) {
        match &mut self.how {
            How::Window(w, _) => {
                w.add_at(n, now);
            }
            How::Bucket(b) => b.charge(n, now),
        }
    }

    fn settle(&mut self, charge: Charge, actual: Estimate, now: Instant) {
        let Some((estimated, actual)) = self.settled(charge, actual) else { return };
        if estimated == actual {
            return;
        }
        if self.counts == Counts::OutputTokens {
            // Nothing was reserved: the output counts from when it was produced (the end of
            // the request, now), as a provider counts it, not from the admission.
            self.charge(actual, now);
            return;
        }
        match &mut self.how {
            How::Window(w, _) => {
                let slot = w.slot_of(charge.at);
                if !w.adjust_at(slot, estimated, actual, now) && actual > estimated {
                    w.add_at(actual - estimated, now);
                }
            }
            How::Bucket(b) if actual > estimated => b.charge(actual - estimated, now),
            How::Bucket(b) => b.refund(estimated - actual, charge.at, now),
        }
    }

    fn used(&mut self, now: Instant) -> u64 {
        match &mut self.how {
            How::Window(w, others) => w.used_at(now).saturating_add(others.at(now)),
            How::Bucket(b) => b.used(now),
        }
    }
}

impl RateState {
    /// Empty counters for `limits`, which should be valid ([`Limit::validate`]; the model
    /// limiter validates them in its constructor). An invalid value is clamped to the nearest
    /// valid one (a zero `max` to 1, slots into `1..=MAX_SLOTS`), never a panic.
    pub fn new(limits: &[Limit]) -> Self {
        Self { latest: Instant::ZERO, meters: limits.iter().map(Meter::new).collect() }
    }

    /// Bytes this state holds on the heap (the per-limit entries and the windows' rings).
    pub fn heap_bytes(&self) -> usize {
        let rings: usize = self
            .meters
            .iter()
            .map(|m| match &m.how {
                How::Window(w, _) => core::mem::size_of_val(w.counts()),
                How::Bucket(_) => 0,
            })
            .sum();
        self.meters.capacity() * core::mem::size_of::<Meter>() + rings
    }

    /// The latest instant the state has seen.
    pub fn latest(&self) -> Instant {
        self.latest
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        self.latest = self.latest.max(now);
        self.latest
    }

    /// Admits a request of `tokens` estimated tokens at `now` if every limit has room,
    /// charging every limit; otherwise charges nothing and says when it would fit.
    ///
    /// The caller checks first that `tokens` is within every token limit's capacity
    /// (`Error::InsufficientCapacity` otherwise); beyond it the answer is a `Wait` until `Instant::MAX`.
    ///
    /// # Errors
    /// A [`Wait`] when some limit has no room now.
    pub fn admit_at(&mut self, tokens: u64, now: Instant) -> Result<Charge, Wait> {
        self.admit_io_at(Estimate::from(tokens), now)
    }

    /// As [`admit_at`](Self::admit_at) for an estimate of input and output tokens apart:
    /// each limit weighs it by what it counts (see the module docs).
    ///
    /// # Errors
    /// A [`Wait`] when some limit has no room now.
    pub fn admit_io_at(&mut self, estimate: Estimate, now: Instant) -> Result<Charge, Wait> {
        let now = self.clamp(now);
        if !self.meters.iter_mut().all(|m| m.fits(m.need(estimate), now)) {
            return Err(self.wait(estimate, now));
        }
        for m in &mut self.meters {
            m.charge(m.weight(estimate), now);
        }
        Ok(Charge::new(now, estimate))
    }

    /// `None` if a request of `tokens` would be admitted at `now`; otherwise when it would
    /// be, as [`admit_at`](Self::admit_at) would refuse it. Charges nothing.
    pub fn earliest_at(&mut self, tokens: u64, now: Instant) -> Option<Wait> {
        self.earliest_io_at(Estimate::from(tokens), now)
    }

    /// As [`earliest_at`](Self::earliest_at) for an estimate of input and output apart.
    pub fn earliest_io_at(&mut self, estimate: Estimate, now: Instant) -> Option<Wait> {
        let now = self.clamp(now);
        if self.meters.iter_mut().all(|m| m.fits(m.need(estimate), now)) {
            None
        } else {
            Some(self.wait(estimate, now))
        }
    }

    /// For a request that does not fit now: the latest earliest instant over the limits.
    fn wait(&mut self, estimate: Estimate, now: Instant) -> Wait {
        let mut wait = Wait { ready_at: now, limit: 0 };
        for (i, m) in self.meters.iter_mut().enumerate() {
            let at = m.earliest(m.need(estimate), now);
            if at > wait.ready_at {
                wait = Wait { ready_at: at, limit: i };
            }
        }
        // Not fitting now, yet "ready" now, happens only at the end of the clock, where the
        // windows say "room only after Instant::MAX": that is never, not now.
        if wait.ready_at <= now {
            wait.ready_at = Instant::MAX;
        }
        wait
    }

    /// Replaces `charge`'s estimate with `actual` tokens in every token limit (see the module
    /// docs for a settle after the charge has left a window). The count is split as
    /// [`Charge::split`] says: input up to the input reserved, the rest output.
    pub fn settle_at(&mut self, charge: Charge, actual: u64, now: Instant) {
        self.settle_io_at(charge, charge.split(actual), now);
    }

    /// As [`settle_at`](Self::settle_at) with the actual input and output apart: total-token
    /// limits get the total, input-token limits the input, output-token limits the output
    /// (which nothing had reserved: all of it is charged at `now`, when it was produced).
    pub fn settle_io_at(&mut self, charge: Charge, actual: Estimate, now: Instant) {
        let now = self.clamp(now);
        for m in &mut self.meters {
            m.settle(charge, actual, now);
        }
    }

    /// Makes the room of limit `limit` (an index in the list) no more than the provider's
    /// `remaining`, reported now, until about `expires` (when the provider's count resets):
    /// [`drain_seen_at`](Self::drain_seen_at) with `seen = now`, which says the rule. In a
    /// window, what the provider counts beyond this state's own charges is held as other
    /// clients' share, replacing what the previous report held; a bucket is charged the
    /// excess. Returns what the limit holds for the others now: 0 when the provider shows
    /// nobody else, or the index is out of range.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::model::{Limit, RateState};
    /// use tollgate::Instant;
    ///
    /// let mut s = RateState::new(&[Limit::tokens("tpm", 1_000, Duration::from_secs(60))]);
    /// let now = Instant::from_secs(100);
    /// // The provider says 300 left, resetting in 10 s: 700 are charged until about then.
    /// assert_eq!(s.drain_at(0, 300, now + Duration::from_secs(10), now), 700);
    /// assert!(s.earliest_at(301, now).is_some());
    /// assert_eq!(s.earliest_at(1_000, now + Duration::from_secs(11)), None);
    /// ```
    pub fn drain_at(
        &mut self,
        limit: usize,
        remaining: u64,
        expires: Instant,
        now: Instant,
    ) -> u64 {
        let now = self.clamp(now);
        self.meters.get_mut(limit).map_or(0, |m| m.drain(remaining, 0, expires, now, now))
    }

    /// As [`drain_at`](Self::drain_at) for a `remaining` the provider reported at `seen`
    /// (no later than `now`; a later one is taken as `now`), e.g. when the response was
    /// produced rather than when it is read. `remaining` is the least the provider can have
    /// left, and it may have up to `tolerance` more (a figure rounded to the thousand: 500).
    ///
    /// The rule, for a window: the provider counts `max − remaining` in the window ending at
    /// `seen`; of that, what this state charged in the same window is its own, and the rest
    /// is other clients' share. That share is held beside the state's own charges until
    /// `expires` (plus one slot, as resets are rounded), and each observation **replaces**
    /// the previous one's: their requests leave the window one by one and are replaced, so
    /// their share is a level, not a lump that would leave all at once a window later (and
    /// let through, that instant, room the others have already retaken). Own requests leave
    /// as they leave the provider's window, so they are never counted twice. A lower share
    /// does not undercut a higher one reported earlier before that one's reset: their share
    /// dips whenever one of their requests has left and the next is not sent yet, and the
    /// next one comes without notice (so what is held is the highest share of the reports
    /// whose resets are still ahead).
    ///
    /// The state's oldest slot may straddle the provider's window start; the part of it the
    /// provider still counts is unknown. When the provider counts more than this state may
    /// have charged even at `remaining + tolerance` (someone else is there), the latest
    /// report counts that whole slot, and the tolerance, as theirs, so the room never grows
    /// by that slot's error when it leaves (the earlier reports held count the slot as ours:
    /// see above); when it counts no more, nothing is held (the state's own books are already
    /// at least as strict). Own charges made after
    /// `seen` in `seen`'s slot cannot be told apart from those before it: they count as
    /// seen; those in later slots do not. The state keeps its window and one slot more, so a
    /// report seen a slot or more before `now` is ignored (returns what is held): the charges
    /// of its window's oldest slots are gone, and own requests it counts would pass for
    /// someone else's (a straddling oldest slot that is gone counts as theirs in this
    /// report's share, which lasts until the next report, and the report holds nothing
    /// longer).
    ///
    /// A bucket is charged, as [`drain_at`](Self::drain_at) says, until its room is at most
    /// `remaining` (it refills at its own rate; nothing to replace). Returns what the limit
    /// holds for the others now (a bucket: what was charged).
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::model::{Limit, RateState};
    /// use tollgate::Instant;
    ///
    /// let mut s = RateState::new(&[Limit::requests("rpm", 100, Duration::from_secs(60))]);
    /// let t = Instant::from_secs(1_000);
    /// for _ in 0..10 {
    ///     s.admit_at(0, t).unwrap();
    /// }
    /// // The provider counts 30: 10 of ours, 20 of someone else's.
    /// let reset = t + Duration::from_secs(60);
    /// assert_eq!(s.drain_seen_at(0, 70, 0, reset, t, t), 20);
    /// // A later answer says they now hold 25: replaced, not added.
    /// let later = t + Duration::from_secs(5);
    /// let reset = later + Duration::from_secs(60);
    /// assert_eq!(s.drain_seen_at(0, 65, 0, reset, later, later), 25);
    /// let mut used = Vec::new();
    /// s.usage_at(later, &mut used);
    /// assert_eq!(used, [35]);
    /// // Then 15: the 25 still holds until its report's reset (plus a slot), then the 15.
    /// assert_eq!(s.drain_seen_at(0, 75, 0, reset, later, later), 25);
    /// s.usage_at(reset + Duration::from_secs(1), &mut used);
    /// assert_eq!(used, [0]); // our 10 have left too, and so has the 15 (same reset)
    /// ```
    pub fn drain_seen_at(
        &mut self,
        limit: usize,
        remaining: u64,
        tolerance: u64,
        expires: Instant,
        seen: Instant,
        now: Instant,
    ) -> u64 {
        let now = self.clamp(now);
        let seen = seen.min(now);
        self.meters.get_mut(limit).map_or(0, |m| m.drain(remaining, tolerance, expires, seen, now))
    }

    /// The largest total and the largest input any estimate may have, at the maxima now in
    /// force (`u64::MAX`: no such limit): see [`never_fits`].
    pub(crate) fn caps(&self) -> (u64, u64) {
        caps(self.meters.iter().map(|m| (m.counts, m.max())))
    }

    /// The maximum of limit `limit` now (a window's, or a bucket's burst); `None` out of range.
    pub fn max_of(&self, limit: usize) -> Option<u64> {
        self.meters.get(limit).map(Meter::max)
    }

    /// Sets the maximum of limit `limit` (at least 1), keeping what it has counted: a lower
    /// one only delays admissions until the usage fits. Out of range: nothing.
    pub fn set_max(&mut self, limit: usize, max: u64) {
        if let Some(m) = self.meters.get_mut(limit) {
            m.set_max(max);
        }
    }

    /// The state for a new list of limits, keeping what this one counted: a limit of the new
    /// list with the name, counts and kind of one in `old` (this state's list) keeps its
    /// counters and takes the new maximum; one whose shape changed starts with the old
    /// limit's usage charged at `now` (later than it was, so it holds longer: stricter, never
    /// looser); a new name starts empty.
    pub fn reconfigured_at(&mut self, old: &[Limit], new: &[Limit], now: Instant) -> Self {
        let now = self.clamp(now);
        let mut meters = Vec::with_capacity(new.len());
        for limit in new {
            let same = old.iter().position(|o| o.name == limit.name);
            let meter = match same {
                Some(i) if old[i].counts == limit.counts && old[i].kind == limit.kind => {
                    let mut m = self.meters[i].clone();
                    m.set_max(limit.max);
                    m
                }
                Some(i) if old[i].counts == limit.counts => {
                    let used = self.meters[i].used(now);
                    let mut m = Meter::new(limit);
                    if used > 0 {
                        m.charge(used, now);
                    }
                    m
                }
                _ => Meter::new(limit),
            };
            meters.push(meter);
        }
        Self { latest: now, meters }
    }

    /// Usage of each limit at `now`, in list order, into `used` (cleared first).
    pub fn usage_at(&mut self, now: Instant, used: &mut Vec<u64>) {
        let now = self.clamp(now);
        used.clear();
        used.extend(self.meters.iter_mut().map(|m| m.used(now)));
    }

    /// The whole state as integers: the latest instant, then per limit in list order a
    /// window's latest instant, ring counters and the others' share (the latest report's
    /// share and reset, how many reports are kept, then four shares and resets, unused ones
    /// zero), or a bucket's TAT as two words (low, high).
    /// [`decode`](Self::decode) with the same limits reads it back.
    pub fn encode(&self, out: &mut Vec<u64>) {
        out.clear();
        out.push(self.latest.as_nanos());
        for m in &self.meters {
            match &m.how {
                How::Window(w, others) => {
                    out.push(w.latest().as_nanos());
                    out.extend_from_slice(w.counts());
                    others.encode(out);
                }
                How::Bucket(b) => {
                    out.push(b.tat as u64);
                    out.push((b.tat >> 64) as u64);
                }
            }
        }
    }

    /// Rebuilds the state [`encode`](Self::encode) wrote, for the same `limits`.
    ///
    /// # Errors
    /// [`InvalidConfig`] with field `"state"` if `words` does not have the length `limits`
    /// give it; nothing is built.
    pub fn decode(limits: &[Limit], words: &[u64]) -> Result<Self, InvalidConfig> {
        let bad = InvalidConfig::new("state", "does not match the limits");
        let mut state = Self::new(limits);
        let (&latest, mut rest) = words.split_first().ok_or(bad)?;
        state.latest = Instant::from_nanos(latest);
        for m in &mut state.meters {
            match &mut m.how {
                How::Window(w, others) => {
                    let ring = w.counts().len();
                    let len = 1 + ring + OTHERS_WORDS;
                    if rest.len() < len {
                        return Err(bad);
                    }
                    let (head, tail) = rest.split_at(len);
                    let (counts, theirs) = head[1..].split_at(ring);
                    w.restore(Instant::from_nanos(head[0]), counts).map_err(|_| bad)?;
                    *others = Others::decode(theirs).ok_or(bad)?;
                    rest = tail;
                }
                How::Bucket(b) => {
                    let [lo, hi, tail @ ..] = rest else { return Err(bad) };
                    b.tat = *lo as u128 | (*hi as u128) << 64;
                    rest = tail;
                }
            }
        }
        if rest.is_empty() { Ok(state) } else { Err(bad) }
    }
}

/// What `w` (advanced to a `now` no earlier than `seen`) charged in the window ending at
/// `seen`: `(strict, lenient)`, without and with the oldest slot when that slot may start
/// before the window does (only part of it is then in the window; `None` when that slot has
/// left the ring). `None` if the ring no
/// longer holds the slots wholly in that window (`seen` a slot or more before the ring's
/// latest instant: the ring holds one window and one slot).
fn own_at(w: &HeapWindow, seen: Instant) -> Option<(u64, Option<u64>)> {
    let span = crate::time::duration_to_nanos_saturating(w.window());
    let slot = crate::time::duration_to_nanos_saturating(w.slot_length()).max(1);
    let latest = w.latest().as_nanos();
    let seen = seen.as_nanos().min(latest);
    if seen.saturating_add(span) <= latest {
        return None;
    }
    let counts = w.counts();
    let len = counts.len() as u64;
    let head = latest / slot;
    let kept = (head + 1).saturating_sub(len);
    let start = (seen + 1).saturating_sub(span);
    let first = start / slot;
    // Before the clock has run a window, the window starts at the epoch: no straddle.
    let straddles = seen + 1 > span && start % slot != 0;
    if first + u64::from(straddles) < kept {
        // Part of that window has left the ring: what was charged there is lost, and own
        // requests the report counts would pass for someone else's.
        return None;
    }
    let count = |k: u64| counts[(k % len) as usize];
    let last = seen / slot;
    let inner: u64 = (first + u64::from(straddles)..=last).map(count).fold(0, u64::saturating_add);
    // A straddling slot that has left the ring: what it held is unknown.
    let lenient = match (straddles, first < kept) {
        (false, _) => Some(inner),
        (true, false) => Some(inner.saturating_add(count(first))),
        (true, true) => None,
    };
    Some((inner, lenient))
}

/// The largest estimate every token limit of `limits` could ever hold at once, and the index
/// of the limit that bounds it (`None`: no token limit, any estimate fits). An estimate above
/// it can never be admitted: the limiter fails it at once with
/// `Error::InsufficientCapacity`. Counts total- and input-token limits (a plain count is all
/// input); output is never reserved, so it never makes a request unfit.
pub(crate) fn capacity(limits: &[Limit]) -> Option<(u64, usize)> {
    limits
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.counts, Counts::Tokens | Counts::InputTokens))
        .map(|(i, l)| (l.max, i))
        .min_by_key(|&(max, _)| max)
}

/// The largest total (over total-token limits) and the largest input (over input-token
/// limits) of an estimate that can ever be admitted, from each limit's counts and maximum
/// (`u64::MAX`: no such limit).
pub(crate) fn caps(maxes: impl IntoIterator<Item = (Counts, u64)>) -> (u64, u64) {
    maxes.into_iter().fold((u64::MAX, u64::MAX), |(total, input), (counts, max)| match counts {
        Counts::Tokens => (total.min(max), input),
        Counts::InputTokens => (total, input.min(max)),
        Counts::Requests | Counts::OutputTokens => (total, input),
    })
}

/// `(requested, capacity)` if an estimate can never fit the caps ([`caps`]): its total above
/// the total cap, or else its input above the input cap. Output is never reserved, so it never
/// makes a request unfit.
pub(crate) fn never_fits((total, input): (u64, u64), e: Estimate) -> Option<(u64, u64)> {
    if e.total() > total {
        Some((e.total(), total))
    } else if e.input > input {
        Some((e.input, input))
    } else {
        None
    }
}

#[cfg(all(test, not(tollgate_loom)))]
mod tests {
    use super::*;
    use crate::Rate;
    use core::time::Duration;

    fn ns(n: u64) -> Instant {
        Instant::from_nanos(n)
    }

    #[test]
    fn a_bucket_admits_its_burst_then_paces_exactly() {
        // Bursts of 3, then one per 3 ns.
        let limits =
            [Limit::bucket("b", Counts::Requests, 3, Rate::new(1, Duration::from_nanos(3)))];
        let mut s = RateState::new(&limits);
        for _ in 0..3 {
            s.admit_at(0, ns(100)).unwrap();
        }
        let wait = s.admit_at(0, ns(100)).unwrap_err();
        assert_eq!(wait, Wait { ready_at: ns(103), limit: 0 });
        assert!(s.admit_at(0, ns(102)).is_err());
        s.admit_at(0, ns(103)).unwrap();
        let mut used = Vec::new();
        s.usage_at(ns(103), &mut used);
        assert_eq!(used, [3]);
        s.usage_at(ns(112), &mut used);
        assert_eq!(used, [0]);
    }

    /// Found in review: a late refund gave back tokens that had already drained, whose place
    /// in the bucket a later charge held, so a second full burst was admitted at once.
    #[test]
    fn a_late_refund_on_a_token_bucket_never_admits_beyond_the_burst() {
        let limits = [Limit::bucket("b", Counts::Tokens, 100, Rate::per_second(10))];
        let mut s = RateState::new(&limits);
        let first = s.admit_at(100, Instant::ZERO).unwrap();
        // Refilled by 10 s: a second full burst, rightly admitted.
        s.admit_at(100, Instant::from_secs(10)).unwrap();
        // The first request used nothing, but its tokens drained long ago: nothing comes back.
        s.settle_at(first, 0, Instant::from_secs(10));
        assert!(s.admit_at(1, Instant::from_secs(10)).is_err(), "200 tokens at one instant");
        // Half drained: a refund gives back at most the undrained half.
        let mut s = RateState::new(&limits);
        let first = s.admit_at(100, Instant::ZERO).unwrap();
        s.admit_at(50, Instant::from_secs(5)).unwrap(); // the 50 that refilled by 5 s
        s.settle_at(first, 0, Instant::from_secs(5));
        assert_eq!(s.earliest_at(50, Instant::from_secs(5)), None);
        assert!(s.earliest_at(51, Instant::from_secs(5)).is_some());
    }

    #[test]
    fn a_token_bucket_settles_refunds_up_to_full_and_charges_excess() {
        let limits = [Limit::bucket("b", Counts::Tokens, 100, Rate::per_second(10))];
        let mut s = RateState::new(&limits);
        let c = s.admit_at(100, Instant::from_secs(10)).unwrap();
        assert!(s.earliest_at(1, Instant::from_secs(10)).is_some());
        s.settle_at(c, 40, Instant::from_secs(10));
        assert_eq!(s.earliest_at(60, Instant::from_secs(10)), None);
        assert!(s.earliest_at(61, Instant::from_secs(10)).is_some());
        // Long after, the bucket is full: a refund gives nothing beyond full.
        let c = s.admit_at(100, Instant::from_secs(100)).unwrap();
        s.settle_at(c, 0, Instant::from_secs(200));
        assert_eq!(s.earliest_at(100, Instant::from_secs(200)), None);
        let never = Wait { ready_at: Instant::MAX, limit: 0 };
        assert_eq!(s.earliest_at(101, Instant::from_secs(200)), Some(never));
        let mut used = Vec::new();
        s.usage_at(Instant::from_secs(200), &mut used);
        assert_eq!(used, [0]);
        // An excess is charged now.
        let c = s.admit_at(10, Instant::from_secs(300)).unwrap();
        s.settle_at(c, 90, Instant::from_secs(300));
        s.usage_at(Instant::from_secs(300), &mut used);
        assert_eq!(used, [90]);
    }

    #[test]
    fn encode_and_decode_round_trip() {
        let limits = [
            Limit::requests("rpm", 3, Duration::from_secs(60)),
            Limit::bucket("b", Counts::Tokens, 100, Rate::per_second(10)),
        ];
        let mut s = RateState::new(&limits);
        s.admit_at(30, Instant::from_secs(5)).unwrap();
        let mut words = Vec::new();
        s.encode(&mut words);
        assert_eq!(words.len(), 1 + (1 + 61 + OTHERS_WORDS) + 2);
        let mut t = RateState::decode(&limits, &words).unwrap();
        for now in [5, 6, 70] {
            let now = Instant::from_secs(now);
            assert_eq!(s.earliest_at(80, now), t.earliest_at(80, now));
        }
        assert_eq!(RateState::decode(&limits, &words[1..]).unwrap_err().field, "state");
        assert!(RateState::decode(&limits, &[]).is_err());
        words.push(0);
        assert!(RateState::decode(&limits, &words).is_err());
    }

    /// 10 s window in 1 s slots (a ring of 11), 100 requests.
    fn ten_s() -> RateState {
        RateState::new(&[Limit::requests("r", 100, Duration::from_secs(10)).with_slots(10)])
    }

    fn used(s: &mut RateState, at: Instant) -> u64 {
        let mut used = Vec::new();
        s.usage_at(at, &mut used);
        used[0]
    }

    #[test]
    fn each_report_replaces_the_others_share_and_it_never_leaves_in_one_piece() {
        let mut s = ten_s();
        let t = Instant::from_secs(100);
        let reset = |at: Instant| at + Duration::from_secs(10);
        // Someone else holds 30; reported again and again as the window slides: the share
        // stays 30 (no lump that would leave 10 s after the first report).
        for k in 0..30 {
            let at = t + Duration::from_millis(500 * k);
            assert_eq!(s.drain_seen_at(0, 70, 0, reset(at), at, at), 30);
            assert_eq!(used(&mut s, at), 30);
        }
        // The old rule charged each report's excess into the window: 30 came back at once
        // 10 s later. Here, a report 20 s after the first one still holds exactly 30.
        let at = t + Duration::from_secs(20);
        assert_eq!(used(&mut s, at), 30);
        // Without further reports it ends at the last report's reset (plus one slot).
        let last = t + Duration::from_millis(500 * 29);
        assert_eq!(used(&mut s, reset(last) + Duration::from_secs(1)), 0);
    }

    #[test]
    fn own_charges_are_never_counted_as_the_others_share() {
        let mut s = ten_s();
        let t = Instant::from_secs(100);
        for _ in 0..20 {
            s.admit_at(0, t).unwrap();
        }
        // The provider counts our 20 and nobody else: nothing is held.
        let reset = t + Duration::from_secs(12);
        assert_eq!(s.drain_seen_at(0, 80, 0, reset, t, t), 0);
        assert_eq!(used(&mut s, t), 20);
        // It counts 25: 5 are theirs.
        assert_eq!(s.drain_seen_at(0, 75, 0, reset, t, t), 5);
        assert_eq!(used(&mut s, t), 25);
        // Our 20 leave with their slot; their 5 stay until the reset (plus a slot).
        let later = t + Duration::from_secs(11);
        assert_eq!(used(&mut s, later), 5);
    }

    #[test]
    fn a_report_is_compared_with_the_books_when_it_was_produced() {
        let mut s = ten_s();
        for _ in 0..10 {
            s.admit_at(0, Instant::from_millis(100_200)).unwrap();
        }
        // Produced at 100.5 s: our 10 and 20 of someone else's.
        let seen = Instant::from_millis(100_500);
        // Read at 101.5 s, after 5 more of ours went (in a later slot): they are not in the
        // provider's figure, and not taken off their share either.
        for _ in 0..5 {
            s.admit_at(0, Instant::from_millis(101_300)).unwrap();
        }
        let read = Instant::from_millis(101_500);
        let reset = seen + Duration::from_secs(10);
        assert_eq!(s.drain_seen_at(0, 70, 0, reset, seen, read), 20);
        assert_eq!(used(&mut s, read), 35);
    }

    #[test]
    fn a_report_read_after_its_window_left_the_books_is_ignored() {
        let mut s = ten_s();
        for _ in 0..20 {
            s.admit_at(0, Instant::from_secs(95)).unwrap();
        }
        // Produced at 100 s (our 20 counted, nobody else), read at 106.5 s when our 20 have
        // left the window and the ring: compared with the books then, 20 would look like
        // someone else's. Ignored instead.
        let (t, read) = (Instant::from_secs(100), Instant::from_millis(106_500));
        let reset = Instant::from_secs(105);
        assert_eq!(s.drain_seen_at(0, 80, 0, reset, t, read), 0);
        assert_eq!(used(&mut s, read), 0);
        // Older than a window: ignored too.
        let much_later = t + Duration::from_secs(30);
        assert_eq!(s.drain_seen_at(0, 0, 0, much_later, t, much_later), 0);
        assert_eq!(used(&mut s, much_later), 0);
    }

    #[test]
    fn a_rounded_remaining_shows_nobody_else_unless_even_its_top_does() {
        let limits = [Limit::tokens("otpm", 10_000, Duration::from_secs(60))];
        let mut s = RateState::new(&limits);
        let t = Instant::from_secs(100);
        let c = s.admit_at(0, t).unwrap();
        s.settle_at(c, 4_300, t); // the provider counts 4 300, reports 6 000 ± 500 left
        let reset = t + Duration::from_secs(60);
        assert_eq!(s.drain_seen_at(0, 5_500, 500, reset, t, t), 0);
        assert_eq!(used(&mut s, t), 4_300);
        // 8 000 ± 500 counted: at least 7 500, more than our 4 300; at most 8 500 is held
        // for everyone's share beyond ours.
        assert_eq!(s.drain_seen_at(0, 1_500, 500, reset, t, t), 4_200);
    }

    #[test]
    fn the_oldest_slot_counts_as_theirs_once_someone_else_shows() {
        let mut s = ten_s();
        // 5 of ours at 100.2 s; at 110.5 s the window (100.5, 110.5] straddles their slot
        // [100, 101): the provider no longer counts them, or still counts some.
        s.admit_at(0, Instant::from_millis(100_200)).unwrap();
        for _ in 0..4 {
            s.admit_at(0, Instant::from_millis(100_200)).unwrap();
        }
        let at = Instant::from_millis(110_500);
        let reset = at + Duration::from_secs(10);
        // The provider counts 10: someone else holds them (ours are gone there). Held: all
        // 10, although our 5 still count locally until 111 s — so that when they leave, the
        // room does not grow by 5 the provider never had.
        assert_eq!(s.drain_seen_at(0, 90, 0, reset, at, at), 10);
        assert_eq!(used(&mut s, at), 15);
        assert_eq!(used(&mut s, Instant::from_secs(111)), 10);
    }

    #[test]
    fn output_counts_from_the_settle_and_input_from_the_admission() {
        let minute = Duration::from_secs(60);
        let limits = [
            Limit::window("itpm", Counts::InputTokens, 10_000, minute),
            Limit::window("otpm", Counts::OutputTokens, 10_000, minute),
        ];
        let mut s = RateState::new(&limits);
        let mut used = Vec::new();
        // A 30 s request: admitted at 100 s, its 500 tokens of output produced by 130 s.
        let c = s.admit_io_at(Estimate { input: 300, output: 4_000 }, Instant::from_secs(100));
        s.settle_io_at(c.unwrap(), Estimate { input: 300, output: 500 }, Instant::from_secs(130));
        s.usage_at(Instant::from_secs(130), &mut used);
        assert_eq!(used, [300, 500]);
        // The admission's slot has left the window: the input with it, not the output (a
        // provider counts it until a minute after it was produced).
        s.usage_at(Instant::from_secs(161), &mut used);
        assert_eq!(used, [0, 500]);
        s.usage_at(Instant::from_secs(191), &mut used);
        assert_eq!(used, [0, 0]);
    }

    #[test]
    fn the_highest_share_holds_until_its_reset_then_the_next_highest() {
        let t = |s: u64| Instant::from_secs(s);
        let mut o = Others::default();
        o.hold(80, t(60), t(0));
        o.hold(70, t(65), t(5)); // lower: kept behind the 80
        o.hold(75, t(66), t(6)); // hides the 70 (higher, lasts longer)
        assert_eq!(o.kept().len(), 2);
        assert_eq!((o.at(t(59)), o.at(t(60)), o.at(t(65)), o.at(t(66))), (80, 75, 75, 0));
        assert_eq!(o.until(t(10)), t(66));
        // A higher report hides everything before it.
        o.hold(90, t(70), t(10));
        assert_eq!((o.kept().len(), o.at(t(10)), o.at(t(69))), (1, 90, 90));
        // Full: the newest two merge into the higher share until the later reset.
        for (k, amount) in [85, 84, 83, 82].into_iter().enumerate() {
            o.hold(amount, t(71 + k as u64), t(11));
        }
        assert_eq!(o.kept().len(), SHARES);
        assert_eq!((o.at(t(70)), o.at(t(71)), o.at(t(73)), o.at(t(74))), (85, 84, 83, 0));
        // A lower report that ends sooner than a higher one is hidden by it.
        let before = o.kept().to_vec();
        o.hold(10, t(20), t(12));
        assert_eq!(o.kept(), &before[..]);
        // Reports whose reset has passed are dropped.
        o.hold(5, t(200), t(100));
        assert_eq!((o.kept().len(), o.at(t(100))), (1, 5));
        // The latest report's strict share counts too, until its own reset.
        o.report(30, 5, t(150), t(100));
        assert_eq!((o.at(t(100)), o.at(t(150))), (30, 5));
    }

    #[test]
    fn a_report_whose_straddling_slot_is_gone_holds_nothing_past_the_next_report() {
        let mut s = ten_s();
        for _ in 0..5 {
            s.admit_at(0, Instant::from_millis(100_200)).unwrap();
        }
        // Produced at 110.5 s (window (100.5, 110.5], our 5 of slot 100 perhaps in it), read
        // at 111.5 s, when slot 100 has left the ring: the 10 counted are all taken as theirs
        // for now...
        let (seen, read) = (Instant::from_millis(110_500), Instant::from_millis(111_500));
        assert_eq!(s.drain_seen_at(0, 90, 0, seen + Duration::from_secs(10), seen, read), 10);
        // ...but held no longer than the next report, which shows nobody.
        let next = Instant::from_secs(112);
        assert_eq!(s.drain_seen_at(0, 100, 0, next + Duration::from_secs(10), next, next), 0);
        assert_eq!(used(&mut s, next), 0);
    }

    #[test]
    fn the_others_share_survives_encode_and_decode() {
        let limits = [Limit::requests("r", 100, Duration::from_secs(10)).with_slots(10)];
        let mut s = RateState::new(&limits);
        let t = Instant::from_secs(100);
        s.drain_seen_at(0, 60, 0, t + Duration::from_secs(10), t, t);
        s.drain_seen_at(0, 80, 0, t + Duration::from_secs(5), t, t);
        let mut words = Vec::new();
        s.encode(&mut words);
        let mut back = RateState::decode(&limits, &words).unwrap();
        for at in [100, 104, 106, 111, 112] {
            let at = Instant::from_secs(at);
            assert_eq!(used(&mut back, at), used(&mut s, at), "{at:?}");
        }
    }

    #[test]
    fn capacity_is_the_smallest_token_limit() {
        let limits = [
            Limit::requests("r", 1, Duration::from_secs(1)),
            Limit::tokens("a", 500, Duration::from_secs(1)),
            Limit::bucket("b", Counts::Tokens, 200, Rate::per_second(1)),
        ];
        assert_eq!(capacity(&limits), Some((200, 2)));
        assert_eq!(capacity(&limits[..1]), None);
    }
}
