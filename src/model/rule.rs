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
//! - **settle**: in every token limit, what was charged at admission (the total, the input,
//!   or nothing for output) becomes the actual count of its kind — in a window, in the slot it was charged to while that slot is in the window; once
//!   it has left, a refund refunds nothing and an excess is charged now (it was used); in a
//!   bucket, a refund moves the bucket back by at most what of the charge has not drained yet
//!   (never past full, never into room later charges hold), an excess is charged now;
//! - **usage**: per limit, what is charged in the window ending now (a bucket: its burst
//!   minus what it could admit now).
//!
//! Feedback from a provider works on the same state, only ever making it stricter unless the
//! caller asks otherwise: **drain** charges a limit until its room is no more than the
//! provider's remaining (in a window, in the slot that leaves the window when the provider's
//! count resets), and **set_max** changes a limit's maximum keeping its counters.
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
    Window(HeapWindow),
    Bucket(Gcra),
}

impl Meter {
    fn new(limit: &Limit) -> Self {
        let how = match limit.kind {
            // Limits are validated first; should one not be, its values are clamped to valid
            // ones (at most MAX_SLOTS slots) rather than panic.
            LimitKind::Window { window, slots } => How::Window(HeapWindow::clamped_in(
                window,
                limit.max,
                slots.clamp(1, Limit::MAX_SLOTS) as usize + 1,
            )),
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
            How::Window(w) => w.limit(),
            How::Bucket(b) => b.burst(),
        }
    }

    fn set_max(&mut self, max: u64) {
        let max = max.max(1);
        match &mut self.how {
            How::Window(w) => {
                let _ = w.set_limit(max);
            }
            How::Bucket(b) => b.set_burst(max),
        }
    }

    /// Charges what the limit must lose for its room to be at most `remaining`; returns it.
    /// A window charges it to the slot of `expires - window` (clamped into the window), so it
    /// leaves the window when the provider's count resets rather than a whole window later.
    fn drain(&mut self, remaining: u64, expires: Instant, now: Instant) -> u64 {
        let room = self.max().saturating_sub(self.used(now));
        let excess = room.saturating_sub(remaining);
        if excess == 0 {
            return 0;
        }
        match &mut self.how {
            How::Window(w) => {
                let span = crate::time::duration_to_nanos_saturating(w.window());
                let oldest = (now.as_nanos() + 1).saturating_sub(span);
                let at = expires.as_nanos().saturating_sub(span).clamp(oldest, now.as_nanos());
                let at = Instant::from_nanos(at);
                if !w.adjust_at(w.slot_of(at), 0, excess, now) {
                    w.add_at(excess, now);
                }
            }
            How::Bucket(b) => b.charge(excess, now),
        }
        excess
    }

    fn fits(&mut self, n: u64, now: Instant) -> bool {
        match &mut self.how {
            How::Window(w) => w.fits_at(n, now),
            How::Bucket(b) => b.fits(n, now),
        }
    }

    /// When `n` fit (`n` within the limit's capacity, checked before the rule runs).
    fn earliest(&mut self, n: u64, now: Instant) -> Instant {
        match &mut self.how {
            How::Window(w) => w.earliest_fit_at(n, now).unwrap_or(Instant::MAX),
            How::Bucket(b) => b.earliest(n, now),
        }
    }

    fn charge(&mut self, n: u64, now: Instant) {
        match &mut self.how {
            How::Window(w) => {
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
        match &mut self.how {
            How::Window(w) => {
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
            How::Window(w) => w.used_at(now),
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
                How::Window(w) => core::mem::size_of_val(w.counts()),
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
    /// (which nothing had reserved: all of it is charged, in the admission's slot while that
    /// is in the window).
    pub fn settle_io_at(&mut self, charge: Charge, actual: Estimate, now: Instant) {
        let now = self.clamp(now);
        for m in &mut self.meters {
            m.settle(charge, actual, now);
        }
    }

    /// Charges limit `limit` (an index in the list) until its room is at most `remaining`,
    /// the charge leaving a window at about `expires` (when the provider's count resets;
    /// a bucket refills at its own rate). Returns what was charged: 0 when the room was
    /// already no more than `remaining`, or the index is out of range.
    ///
    /// In a window the charge goes to the slot of `expires − window`, or the oldest slot still
    /// in the window if that is earlier: so it lasts until about `expires`, at most one slot
    /// longer — but at least until the oldest slot leaves, which, before the clock has run a
    /// whole window, is a whole window (stricter, never looser).
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
        self.meters.get_mut(limit).map_or(0, |m| m.drain(remaining, expires, now))
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
    /// window's latest instant and ring counters, or a bucket's TAT as two words (low, high).
    /// [`decode`](Self::decode) with the same limits reads it back.
    pub fn encode(&self, out: &mut Vec<u64>) {
        out.clear();
        out.push(self.latest.as_nanos());
        for m in &self.meters {
            match &m.how {
                How::Window(w) => {
                    out.push(w.latest().as_nanos());
                    out.extend_from_slice(w.counts());
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
                How::Window(w) => {
                    let len = w.counts().len() + 1;
                    if rest.len() < len {
                        return Err(bad);
                    }
                    let (head, tail) = rest.split_at(len);
                    w.restore(Instant::from_nanos(head[0]), &head[1..]).map_err(|_| bad)?;
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
        assert_eq!(words.len(), 1 + 1 + 61 + 2);
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
