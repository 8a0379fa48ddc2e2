//! [`RingWindow`]: a ring of per-slot counters enforcing "at most `limit` per window", with its
//! storage inline ([`SlidingWindow<SLOTS>`](SlidingWindow), no allocation) or on the heap
//! ([`HeapWindow`], ring length chosen at run time). The ring arithmetic below is written once,
//! over any `AsRef<[u64]> + AsMut<[u64]>` storage; `SLOTS` stands for the ring's length.
//!
//! # How it counts
//!
//! Time is cut into slots of equal length `s`, aligned to the clock's epoch: slot `k` covers
//! `[k·s, (k+1)·s)`. Each admission adds its weight to the counter of the slot it happens in.
//! The count "in the window ending at `now`" is the sum of every slot that overlaps
//! `(now - W, now]`, each counted *whole* even when only its last nanosecond is inside. Every
//! admission inside the true window is therefore counted (plus perhaps a few just before it),
//! so admitting only while `count + n <= limit` never lets any true half-open window
//! `[t, t + W)` hold more than `limit`.
//!
//! # Slot length
//!
//! With `s = W / SLOTS` the window `(now - W, now]` can touch `SLOTS + 1` slots whenever it
//! does not start on a slot boundary, one more than the ring holds. The slot length is
//! therefore `s = ceil(W / (SLOTS - 1))`: `SLOTS - 1` slots cover at least a whole window, so
//! the window overlaps at most `SLOTS` of them and the ring always suffices.
//!
//! The price of counting slots whole: an admission at `t` keeps counting until its slot
//! has wholly left the window, at most `s - 1` ns after `t + W`. A request therefore waits
//! less than one slot length longer than an exact sliding log would make it wait.
//!
//! # Cost
//!
//! Memory is one ring of counters whatever the limit. Every operation is `O(SLOTS)` at worst:
//! slots that fell out of the window are zeroed lazily on the next call, and a jump of any
//! length (even years) clears at most `SLOTS` counters.

use core::ops::Range;
use core::time::Duration;

#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use crate::Instant;
use crate::error::{Error, InvalidConfig};
use crate::time::duration_to_nanos_saturating;

/// A sliding-window counter over a ring of counters kept in `C`: at most `limit` units
/// admitted in any window of length `window` (see the module docs for the slot rule).
///
/// One implementation of the ring arithmetic for every kind of storage; use it through its
/// aliases: [`SlidingWindow<SLOTS>`](SlidingWindow) (an inline array, no allocation, `const`
/// constructor, for `static`s and embedded targets) and, with `alloc`, [`HeapWindow`] (a ring
/// whose length is chosen at run time, e.g. from a config file). The two behave identically
/// for the same ring length.
///
/// It is plain data mutated through `&mut self`: no atomics, no locks. Limiters that share one
/// keep it behind a lock. Time is passed explicitly to every call (`*_at(now)`); a `now`
/// earlier than one already seen is treated as that latest instant, so a clock that steps back
/// can delay admissions but never double-counts or over-admits.
#[derive(Debug, Clone)]
pub struct RingWindow<C> {
    /// `counts[k % len]` holds slot `k` for `k` in `head + 1 - len ..= head`.
    counts: C,
    /// Absolute number of the slot holding `latest`.
    head: u64,
    /// The latest instant seen; earlier `now`s are clamped up to it.
    latest: Instant,
    window_nanos: u64,
    slot_nanos: u64,
    limit: u64,
}

/// A sliding-window counter: at most `limit` units admitted in any window of length `window`,
/// tracked in a fixed ring of `SLOTS` counters held inline (see the module docs for the slot
/// rule). No allocation; [`new`](RingWindow::new) is `const`.
///
/// `SLOTS` must be at least 2 (a compile-time error otherwise). More slots mean a finer
/// count and shorter extra waits (less than one slot length, `window / (SLOTS - 1)`).
///
/// ```compile_fail
/// # use core::time::Duration;
/// # use tollgate::SlidingWindow;
/// let w: SlidingWindow<1> = SlidingWindow::new(Duration::from_secs(1), 1); // SLOTS >= 2
/// ```
///
/// ```
/// use core::time::Duration;
/// use tollgate::{Error, Instant, SlidingWindow};
///
/// // 3 requests per minute, counted in 60 slots of ~1.017 s (60 s / 59).
/// let mut rpm: SlidingWindow<60> = SlidingWindow::new(Duration::from_secs(60), 3);
/// let t0 = Instant::from_secs(1_000);
/// for _ in 0..3 {
///     rpm.try_add_at(1, t0).unwrap();
/// }
/// assert_eq!(rpm.used_at(t0), 3);
///
/// // The fourth must wait until the slot holding the first three has left the window.
/// let Err(Error::RateLimited(refused)) = rpm.try_add_at(1, t0) else { panic!() };
/// let ready_at = refused.ready_at();
/// assert!(ready_at >= t0 + Duration::from_secs(60));
/// assert!(ready_at < t0 + Duration::from_secs(60) + rpm.slot_length());
/// assert!(!rpm.fits_at(1, Instant::from_nanos(ready_at.as_nanos() - 1)));
/// assert!(rpm.try_add_at(1, ready_at).is_ok());
/// ```
pub type SlidingWindow<const SLOTS: usize> = RingWindow<[u64; SLOTS]>;

/// A [`RingWindow`] whose ring length is chosen at run time (`alloc`): the same counting as
/// [`SlidingWindow`], for windows configured as data (the model limiter's limits).
///
/// ```
/// use core::time::Duration;
/// use tollgate::window::HeapWindow;
/// use tollgate::Instant;
///
/// // Requests per day in 24 one-hour slots: a ring of 25.
/// let mut rpd = HeapWindow::try_new_in(Duration::from_secs(86_400), 1_000, 25)?;
/// assert_eq!(rpd.slot_length(), Duration::from_secs(3_600));
/// rpd.try_add_at(1_000, Instant::ZERO)?;
/// assert!(!rpd.fits_at(1, Instant::from_secs(86_000)));
/// # Ok::<_, tollgate::Error>(())
/// ```
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub type HeapWindow = RingWindow<Box<[u64]>>;

/// The slot an admission was charged to, returned by [`RingWindow::try_add_at`] and
/// [`RingWindow::add_at`] and passed back to [`RingWindow::adjust_at`] to settle it.
///
/// Opaque: it names an absolute slot of the window that issued it and means nothing to
/// another window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotId(u64);

/// Validates a window's parameters and derives its slot length for a ring of `ring` counters
/// (`ring >= 2`): `SLOTS - 1` slots cover the whole window, so the window overlaps at most
/// `ring` of them.
const fn slot_nanos(
    window: Duration,
    limit: u64,
    ring: usize,
) -> Result<(u64, u64), InvalidConfig> {
    let window_nanos = duration_to_nanos_saturating(window);
    if window_nanos == 0 {
        return Err(InvalidConfig::new("window", "must be at least one nanosecond"));
    }
    if limit == 0 {
        return Err(InvalidConfig::new("limit", "must be greater than zero"));
    }
    Ok((window_nanos, window_nanos.div_ceil(ring as u64 - 1)))
}

impl<const SLOTS: usize> RingWindow<[u64; SLOTS]> {
    /// Rejects `SLOTS < 2` when the type is used, not at run time.
    const fn assert_slots() {
        const {
            assert!(
                SLOTS >= 2,
                "tollgate::SlidingWindow needs SLOTS >= 2 (one slot cannot cover a sliding window)"
            )
        }
    }

    /// An empty window admitting at most `limit` per `window` (which saturates at about
    /// 584 years).
    ///
    /// # Panics
    /// If `window` or `limit` is zero (at compile time in const context). Use
    /// [`SlidingWindow::try_new`] for values read at run time.
    pub const fn new(window: Duration, limit: u64) -> Self {
        match Self::try_new(window, limit) {
            Ok(w) => w,
            Err(_) => {
                panic!("tollgate::SlidingWindow needs a non-zero window and a non-zero limit")
            }
        }
    }

    /// An empty window, or an error if `window` or `limit` is zero.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::SlidingWindow;
    ///
    /// let err = SlidingWindow::<10>::try_new(Duration::ZERO, 5).unwrap_err();
    /// assert_eq!(err.field, "window");
    /// assert!(SlidingWindow::<10>::try_new(Duration::from_secs(1), 0).is_err());
    /// ```
    pub const fn try_new(window: Duration, limit: u64) -> Result<Self, InvalidConfig> {
        Self::assert_slots();
        match slot_nanos(window, limit, SLOTS) {
            Ok((window_nanos, slot_nanos)) => Ok(Self {
                counts: [0; SLOTS],
                head: 0,
                latest: Instant::ZERO,
                window_nanos,
                slot_nanos,
                limit,
            }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(feature = "alloc")]
impl RingWindow<Box<[u64]>> {
    /// An empty window with a ring of `ring` counters allocated on the heap: as
    /// [`SlidingWindow::<ring>::try_new`](SlidingWindow::try_new) with `ring` chosen at run
    /// time. Memory is `8 · ring` bytes, whatever the limit.
    ///
    /// # Errors
    /// [`InvalidConfig`] if `window` or `limit` is zero (fields `"window"`, `"limit"`), or if
    /// `ring < 2` (field `"slots"`).
    pub fn try_new_in(window: Duration, limit: u64, ring: usize) -> Result<Self, InvalidConfig> {
        if ring < 2 {
            return Err(InvalidConfig::new("slots", "a ring needs at least 2 counters"));
        }
        let (window_nanos, slot_nanos) = slot_nanos(window, limit, ring)?;
        Ok(Self::build(window_nanos, slot_nanos, limit, ring))
    }

    /// As [`try_new_in`](Self::try_new_in), with each value clamped to the nearest valid one
    /// instead of an error (window ≥ 1 ns, limit ≥ 1, ring ≥ 2): for callers that validated
    /// first and must not panic if they did not.
    pub(crate) fn clamped_in(window: Duration, limit: u64, ring: usize) -> Self {
        let window_nanos = duration_to_nanos_saturating(window).max(1);
        let ring = ring.max(2);
        Self::build(window_nanos, window_nanos.div_ceil(ring as u64 - 1), limit.max(1), ring)
    }

    fn build(window_nanos: u64, slot_nanos: u64, limit: u64, ring: usize) -> Self {
        Self {
            counts: alloc::vec![0; ring].into_boxed_slice(),
            head: 0,
            latest: Instant::ZERO,
            window_nanos,
            slot_nanos,
            limit,
        }
    }
}

impl<C> RingWindow<C> {
    /// The most that may be admitted in any window.
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The length of the sliding window.
    pub const fn window(&self) -> Duration {
        Duration::from_nanos(self.window_nanos)
    }

    /// The length of one slot, `ceil(window / (ring - 1))`: a request may wait less than
    /// this much longer than an exact sliding log would require.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::SlidingWindow;
    ///
    /// let w: SlidingWindow<61> = SlidingWindow::new(Duration::from_secs(60), 100);
    /// assert_eq!(w.slot_length(), Duration::from_secs(1));
    /// ```
    pub const fn slot_length(&self) -> Duration {
        Duration::from_nanos(self.slot_nanos)
    }

    /// The latest instant this window has seen (every `now` is clamped up to it).
    pub const fn latest(&self) -> Instant {
        self.latest
    }

    /// The slot an admission at `at` was charged to, for an `at` this window has seen
    /// (e.g. the instant returned with the charge): the same [`SlotId`] that
    /// [`add_at`](Self::add_at) returned then. Lets a caller keep one instant for several
    /// windows instead of one slot id per window.
    pub const fn slot_of(&self, at: Instant) -> SlotId {
        SlotId(at.as_nanos() / self.slot_nanos)
    }

    /// Changes the limit (e.g. from a provider's rate-limit headers). Admissions already
    /// counted stay; lowering the limit below them only delays the next admissions.
    ///
    /// # Errors
    /// [`InvalidConfig`] on a zero limit; the old limit is kept.
    pub fn set_limit(&mut self, limit: u64) -> Result<(), InvalidConfig> {
        if limit == 0 {
            return Err(InvalidConfig::new("limit", "must be greater than zero"));
        }
        self.limit = limit;
        Ok(())
    }

    /// The oldest slot overlapping `(now - W, now]`; its first instant is `now - W + 1`.
    fn first_slot(&self, now: Instant) -> u64 {
        now.as_nanos().saturating_sub(self.window_nanos - 1) / self.slot_nanos
    }

    fn fits(&self, used: u64, n: u64) -> bool {
        used <= self.limit && n <= self.limit - used
    }
}

impl<C: AsRef<[u64]> + AsMut<[u64]>> RingWindow<C> {
    /// The ring's counters as stored: `counts()[k % len]` holds slot `k` (for stores that
    /// serialise the window; see [`restore`](Self::restore)).
    pub fn counts(&self) -> &[u64] {
        self.counts.as_ref()
    }

    /// Replaces the mutable state, `latest` and the ring's counters, with values read back
    /// from [`latest`](Self::latest) and [`counts`](Self::counts) of a window of the same
    /// parameters (how a store that keeps the state serialised rebuilds it).
    ///
    /// # Errors
    /// [`InvalidConfig`] (field `"slots"`) if `counts` has another length than the ring; the
    /// window is unchanged.
    pub fn restore(&mut self, latest: Instant, counts: &[u64]) -> Result<(), InvalidConfig> {
        let ring = self.counts.as_mut();
        if counts.len() != ring.len() {
            return Err(InvalidConfig::new("slots", "the ring has another length"));
        }
        ring.copy_from_slice(counts);
        self.latest = latest;
        self.head = latest.as_nanos() / self.slot_nanos;
        Ok(())
    }

    /// The conservative count of the window ending at `now`: every slot overlapping
    /// `(now - window, now]`, counted whole (saturating at `u64::MAX`).
    pub fn used_at(&mut self, now: Instant) -> u64 {
        let now = self.advance(now);
        self.used_from(self.first_slot(now))
    }

    /// Whether `n` more fit at `now`: `used_at(now) + n <= limit`.
    ///
    /// `n == 0` fits unless the window is over its limit (possible after
    /// [`add_at`](Self::add_at), [`adjust_at`](Self::adjust_at) or
    /// [`set_limit`](Self::set_limit)).
    pub fn fits_at(&mut self, n: u64, now: Instant) -> bool {
        let used = self.used_at(now);
        self.fits(used, n)
    }

    /// The earliest instant, not before `now`, at which `n` more fit if nothing else is
    /// added: `now` itself if they fit now.
    ///
    /// Exact for the conservative count: [`fits_at`](Self::fits_at) holds at the returned
    /// instant and not one nanosecond before it (unless it is `now`). Should the window only
    /// empty after the end of the clock's range, the answer saturates at [`Instant::MAX`].
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] if `n > limit`: no wait would ever help.
    pub fn earliest_fit_at(&mut self, n: u64, now: Instant) -> Result<Instant, Error> {
        let now = self.advance(now);
        Ok(self.ready_at(n, now)?.unwrap_or(now))
    }

    /// Adds `n` at `now` if it fits, and returns the slot charged (keep it to
    /// [`adjust_at`](Self::adjust_at) the amount later). A refusal changes nothing but the
    /// ring's lazy expiry.
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] if `n > limit`; [`Error::RateLimited`] with the
    /// [`earliest_fit_at`](Self::earliest_fit_at) instant otherwise.
    pub fn try_add_at(&mut self, n: u64, now: Instant) -> Result<SlotId, Error> {
        let now = self.advance(now);
        match self.ready_at(n, now)? {
            None => Ok(self.charge(n)),
            Some(ready_at) => Err(Error::RateLimited(crate::Refusal::at(ready_at))),
        }
    }

    /// Adds `n` at `now` whether it fits or not (saturating), and returns the slot charged.
    ///
    /// For charging what is owed regardless, such as a settle that exceeded its estimate;
    /// later admissions wait until the excess has left the window.
    pub fn add_at(&mut self, n: u64, now: Instant) -> SlotId {
        self.advance(now);
        self.charge(n)
    }

    /// Settles an earlier entry: the `from` units charged to `slot` become `to` (a refund
    /// when lower, a further charge when higher). Returns whether `slot` was still in the
    /// window, i.e. whether anything changed.
    ///
    /// If `slot` has already left the window ending at `now`, nothing changes and it returns
    /// `false`: its units no longer count anyway. A caller that must still charge an excess
    /// (`to > from`) then adds it at `now` with [`add_at`](Self::add_at), as the model
    /// limiter does. The counter saturates at 0 and at `u64::MAX`, so a wrong `from` can never
    /// underflow or panic.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::{Instant, SlidingWindow};
    ///
    /// let mut w: SlidingWindow<61> = SlidingWindow::new(Duration::from_secs(60), 1_000);
    /// let slot = w.add_at(100, Instant::ZERO);
    /// assert!(w.adjust_at(slot, 100, 300, Instant::from_secs(30)));
    /// assert_eq!(w.used_at(Instant::from_secs(30)), 300);
    /// // At 70 s the slot has left the window: nothing to adjust.
    /// assert!(!w.adjust_at(slot, 300, 900, Instant::from_secs(70)));
    /// assert_eq!(w.used_at(Instant::from_secs(70)), 0);
    /// ```
    pub fn adjust_at(&mut self, slot: SlotId, from: u64, to: u64, now: Instant) -> bool {
        let now = self.advance(now);
        // Every slot from `first_slot` to `head` is in the ring (at most its length of them);
        // a later slot can only come from another window.
        if slot.0 < self.first_slot(now) || slot.0 > self.head {
            return false;
        }
        let i = self.index(slot.0);
        let counts = self.counts.as_mut();
        counts[i] = if to >= from {
            counts[i].saturating_add(to - from)
        } else {
            counts[i].saturating_sub(from - to)
        };
        true
    }

    /// Clamps `now` to the latest instant seen and zeroes the slots that left the ring,
    /// clearing at most one ring of counters however far time jumped.
    fn advance(&mut self, now: Instant) -> Instant {
        if now <= self.latest {
            return self.latest;
        }
        self.latest = now;
        let head = now.as_nanos() / self.slot_nanos;
        let gap = head - self.head;
        if gap >= self.counts.as_ref().len() as u64 {
            self.counts.as_mut().fill(0);
        } else if gap > 0 {
            let (a, b) = self.positions(self.head + 1, head);
            let counts = self.counts.as_mut();
            counts[a].fill(0);
            counts[b].fill(0);
        }
        self.head = head;
        now
    }

    /// The sum of slots `first ..= head` (`first <= head`), saturating.
    fn used_from(&self, first: u64) -> u64 {
        let (a, b) = self.positions(first, self.head);
        let counts = self.counts.as_ref();
        counts[a].iter().chain(&counts[b]).fold(0, |sum: u64, &c| sum.saturating_add(c))
    }

    /// Where slots `first ..= last` (`first <= last`, at most one ring of them; the newest
    /// kept if more) sit in the ring: up to two index ranges, in slot order. Contiguous ranges
    /// instead of one `%` per slot, which is a division when the ring's length is only known
    /// at run time.
    fn positions(&self, first: u64, last: u64) -> (Range<usize>, Range<usize>) {
        let len = self.counts.as_ref().len();
        let n = (last - first).min(len as u64 - 1) as usize + 1;
        let start = self.index(last - (n as u64 - 1));
        if start + n <= len { (start..start + n, 0..0) } else { (start..len, 0..start + n - len) }
    }

    /// When `n` more fit, for an advanced `now`: `None` if they fit now, else the first
    /// instant they do (a separate "now" case, because near the end of the clock the answer
    /// saturates at `Instant::MAX`, which may equal `now`).
    fn ready_at(&self, n: u64, now: Instant) -> Result<Option<Instant>, Error> {
        if n > self.limit {
            return Err(Error::InsufficientCapacity { requested: n, capacity: self.limit });
        }
        let first = self.first_slot(now);
        if self.fits(self.used_from(first), n) {
            return Ok(None);
        }
        // Walk from the newest slot back, growing the sum of the slots that would still
        // count; the oldest slot that still lets `n` fit is where the window must start.
        // Summing from the new end keeps the sum exact below `limit` even when older slots
        // saturate.
        // `start` is u128: with one-nanosecond slots the head slot can be u64::MAX.
        let (a, b) = self.positions(first, self.head);
        let counts = self.counts.as_ref();
        let mut start = self.head as u128 + 1; // with every slot gone, n <= limit fits
        let mut sum: u64 = 0;
        // Slots `head`, `head - 1`, … down to `first`.
        for &count in counts[b].iter().rev().chain(counts[a].iter().rev()) {
            sum = sum.saturating_add(count);
            if !self.fits(sum, n) {
                break;
            }
            start -= 1;
        }
        // The window (T - W, T] starts in slot `start` once T - W + 1 >= start·s.
        let at = start * self.slot_nanos as u128 + self.window_nanos as u128 - 1;
        Ok(Some(if at > u64::MAX as u128 { Instant::MAX } else { Instant::from_nanos(at as u64) }))
    }

    /// Adds `n` to the head slot; the ring must already be advanced.
    fn charge(&mut self, n: u64) -> SlotId {
        let i = self.index(self.head);
        let counts = self.counts.as_mut();
        counts[i] = counts[i].saturating_add(n);
        SlotId(self.head)
    }

    fn index(&self, slot: u64) -> usize {
        (slot % self.counts.as_ref().len() as u64) as usize
    }
}

#[cfg(all(test, not(tollgate_loom)))]
mod tests {
    use super::*;

    fn ns(n: u64) -> Instant {
        Instant::from_nanos(n)
    }

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    /// 10 s window, 11 slots: slots of exactly 1 s, easy to reason about.
    fn ten_by_one(limit: u64) -> SlidingWindow<11> {
        SlidingWindow::new(Duration::from_secs(10), limit)
    }

    #[test]
    fn slot_length_lets_slots_minus_one_cover_the_window() {
        assert_eq!(ten_by_one(1).slot_length(), Duration::from_secs(1));
        let w: SlidingWindow<60> = SlidingWindow::new(Duration::from_secs(60), 1);
        assert_eq!(w.slot_length(), Duration::from_nanos(60_000_000_000u64.div_ceil(59)));
        let w: SlidingWindow<2> = SlidingWindow::new(Duration::from_nanos(7), 1);
        assert_eq!(w.slot_length(), Duration::from_nanos(7));
        let w: SlidingWindow<100> = SlidingWindow::new(Duration::from_nanos(3), 1);
        assert_eq!(w.slot_length(), Duration::from_nanos(1));
        assert_eq!(w.window(), Duration::from_nanos(3));
        assert_eq!(w.limit(), 1);
        let w: SlidingWindow<4> = SlidingWindow::new(Duration::MAX, 1);
        assert_eq!(w.window(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn adds_count_until_their_slot_leaves_the_window() {
        let mut w = ten_by_one(5);
        w.try_add_at(2, secs(1)).unwrap();
        w.try_add_at(3, ns(5_500_000_000)).unwrap();
        assert_eq!(w.used_at(secs(6)), 5);
        assert!(!w.fits_at(1, secs(6)));
        // (t - 10 s, t] overlaps slot 1 until its first instant, t - 10 s + 1 ns, reaches 2 s.
        assert_eq!(w.used_at(ns(11_999_999_998)), 5);
        assert_eq!(w.used_at(ns(11_999_999_999)), 3);
        assert_eq!(w.used_at(ns(15_999_999_998)), 3);
        assert_eq!(w.used_at(ns(15_999_999_999)), 0);
    }

    #[test]
    fn a_partly_covered_slot_counts_whole() {
        let mut w = ten_by_one(1);
        // Admitted at the very start of slot 3; at 13.5 s the true window (3.5 s, 13.5 s]
        // no longer holds it, but slot 3 still overlaps, so the limit stays reached.
        w.try_add_at(1, secs(3)).unwrap();
        assert!(!w.fits_at(1, ns(13_500_000_000)));
        assert!(w.fits_at(1, secs(14)));
    }

    #[test]
    fn the_limit_holds_in_every_true_window_around_a_boundary() {
        let mut w = ten_by_one(2);
        // Two at the very end of slot 0: the true window (t - 10 s, t] holds them until
        // t = 10.999999999 s, exactly when slot 0 leaves, so here counting is exact.
        w.try_add_at(2, ns(999_999_999)).unwrap();
        for t in [9_999_999_999u64, 10_000_000_000, 10_999_999_998] {
            assert!(w.try_add_at(1, ns(t)).is_err(), "at {t}");
        }
        w.try_add_at(2, ns(10_999_999_999)).unwrap();
    }

    #[test]
    fn earliest_fit_is_exact() {
        let mut w: SlidingWindow<7> = SlidingWindow::new(Duration::from_nanos(1_000), 10);
        // s = ceil(1000 / 6) = 167 ns.
        assert_eq!(w.slot_length(), Duration::from_nanos(167));
        w.try_add_at(4, ns(100)).unwrap(); // slot 0
        w.try_add_at(3, ns(400)).unwrap(); // slot 2
        w.try_add_at(3, ns(900)).unwrap(); // slot 5
        let now = ns(950);
        assert_eq!(w.earliest_fit_at(0, now), Ok(now));
        for n in 1..=10 {
            let at = w.earliest_fit_at(n, now).unwrap();
            assert!(w.clone().fits_at(n, at), "n={n} at={at:?}");
            assert!(!w.clone().fits_at(n, ns(at.as_nanos() - 1)), "n={n} at={at:?}");
        }
        // Slot 0 leaves once t - 1000 + 1 >= 167; slot 2 once >= 3·167; slot 5 once >= 6·167.
        assert_eq!(w.earliest_fit_at(4, now), Ok(ns(167 + 999)));
        assert_eq!(w.earliest_fit_at(7, now), Ok(ns(3 * 167 + 999)));
        assert_eq!(w.earliest_fit_at(8, now), Ok(ns(6 * 167 + 999)));
        assert_eq!(
            w.try_add_at(4, now),
            Err(Error::RateLimited(crate::Refusal::at(ns(167 + 999))))
        );
        // Asking from later gives the same instant, and from the instant itself, "now".
        assert_eq!(w.earliest_fit_at(4, ns(1_100)), Ok(ns(1_166)));
        assert_eq!(w.earliest_fit_at(4, ns(1_166)), Ok(ns(1_166)));
    }

    #[test]
    fn adjust_refunds_charges_and_ignores_expired_slots() {
        let mut w = ten_by_one(10);
        let a = w.try_add_at(8, secs(1)).unwrap();
        assert!(!w.fits_at(3, secs(2)));
        w.adjust_at(a, 8, 5, secs(2)); // refund 3
        assert_eq!(w.used_at(secs(2)), 5);
        let b = w.try_add_at(5, secs(2)).unwrap();
        assert_ne!(a, b);
        w.adjust_at(b, 5, 7, secs(3)); // charge 2 more: over the limit
        assert_eq!(w.used_at(secs(3)), 12);
        assert!(!w.fits_at(0, secs(3)));
        // Slot 1 leaves once t - 10 s + 1 ns >= 2 s.
        assert_eq!(w.earliest_fit_at(3, secs(3)), Ok(ns(11_999_999_999)));
        // Once slot 1 has left, adjusting it changes nothing (not even the reused counter).
        w.adjust_at(a, 5, 0, secs(12));
        w.adjust_at(a, 0, 1_000, secs(12));
        assert_eq!(w.used_at(secs(12)), 7);
        // Much later, when the ring index of slot 1 is reused.
        let c = w.add_at(1, secs(23));
        assert_eq!(w.used_at(secs(23)), 1);
        w.adjust_at(a, 0, 1_000, secs(23));
        assert_eq!(w.used_at(secs(23)), 1);
        w.adjust_at(c, 1, 0, secs(23));
        assert_eq!(w.used_at(secs(23)), 0);
    }

    #[test]
    fn adjust_saturates_instead_of_wrapping() {
        let mut w = ten_by_one(10);
        let a = w.try_add_at(2, secs(1)).unwrap();
        w.adjust_at(a, 100, 0, secs(1));
        assert_eq!(w.used_at(secs(1)), 0);
        w.adjust_at(a, 0, u64::MAX, secs(1));
        w.adjust_at(a, 0, u64::MAX, secs(1));
        assert_eq!(w.used_at(secs(1)), u64::MAX);
        w.add_at(u64::MAX, secs(2));
        assert_eq!(w.used_at(secs(2)), u64::MAX);
        assert!(!w.fits_at(0, secs(2)));
        // Slot 2 is saturated too, so room comes only when it leaves.
        assert_eq!(w.earliest_fit_at(1, secs(2)), Ok(ns(12_999_999_999)));
        // A slot id from the future (another window) is ignored.
        w.adjust_at(SlotId(1_000), 5, 0, secs(2));
        assert_eq!(w.used_at(secs(2)), u64::MAX);
    }

    #[test]
    fn a_clock_stepping_back_counts_as_the_latest_instant() {
        let mut w = ten_by_one(3);
        w.try_add_at(2, secs(20)).unwrap();
        // Back to 5 s: charged to the slot of 20 s, not to an old slot that would expire early.
        let s = w.try_add_at(1, secs(5)).unwrap();
        assert_eq!(s, w.add_at(0, secs(20)));
        assert_eq!(w.used_at(secs(0)), 3);
        assert_eq!(w.earliest_fit_at(1, secs(1)), Ok(ns(30_999_999_999)));
        assert!(!w.fits_at(1, ns(30_999_999_998)));
        assert!(w.fits_at(1, ns(30_999_999_999)));
        // Having seen 30.999999999 s, going back to 20 s must not bring the old slot back.
        assert_eq!(w.used_at(secs(20)), 0);
    }

    #[test]
    fn jumps_of_years_clear_the_ring_at_once() {
        let mut w: SlidingWindow<60> = SlidingWindow::new(Duration::from_secs(60), 5);
        w.try_add_at(5, secs(1)).unwrap();
        let years = 200 * 365 * 24 * 3600;
        assert_eq!(w.used_at(secs(years)), 0);
        w.try_add_at(5, secs(years)).unwrap();
        assert_eq!(w.used_at(secs(years + 30)), 5);
        // Gone within one slot length (~1.017 s) after the window.
        assert_eq!(w.used_at(secs(years + 62)), 0);
        // Back in time by years: clamped, nothing resurrected.
        assert_eq!(w.used_at(secs(1)), 0);
    }

    #[test]
    fn instants_near_the_end_of_the_clock_do_not_overflow() {
        let mut w: SlidingWindow<60> = SlidingWindow::new(Duration::from_secs(60), 3);
        w.try_add_at(1, ns(u64::MAX - 5_000_000_000)).unwrap();
        w.try_add_at(2, Instant::MAX).unwrap();
        assert_eq!(w.used_at(Instant::MAX), 3);
        assert!(!w.fits_at(1, Instant::MAX));
        // The slots never empty before the clock ends: saturated at MAX, still no panic.
        assert_eq!(w.earliest_fit_at(1, Instant::MAX), Ok(Instant::MAX));
        assert_eq!(
            w.try_add_at(1, Instant::MAX),
            Err(Error::RateLimited(crate::Refusal::at(Instant::MAX)))
        );
        let s = w.add_at(1, Instant::MAX);
        w.adjust_at(s, 3, 0, Instant::MAX);
        assert_eq!(w.used_at(Instant::MAX), 1);

        // One-nanosecond slots: the head slot number itself reaches u64::MAX.
        let mut fine: SlidingWindow<4> = SlidingWindow::new(Duration::from_nanos(3), 1);
        fine.try_add_at(1, Instant::MAX).unwrap();
        assert_eq!(fine.earliest_fit_at(1, Instant::MAX), Ok(Instant::MAX));
        assert_eq!(
            fine.try_add_at(1, Instant::MAX),
            Err(Error::RateLimited(crate::Refusal::at(Instant::MAX)))
        );

        let mut huge: SlidingWindow<2> = SlidingWindow::new(Duration::MAX, u64::MAX);
        huge.add_at(u64::MAX, ns(1));
        assert_eq!(huge.earliest_fit_at(1, Instant::MAX), Ok(Instant::MAX));
        assert_eq!(huge.used_at(Instant::MAX), u64::MAX);
    }

    #[test]
    fn zero_is_free_unless_over_the_limit() {
        let mut w = ten_by_one(2);
        w.try_add_at(2, secs(1)).unwrap();
        assert!(w.fits_at(0, secs(1)));
        assert_eq!(w.earliest_fit_at(0, secs(1)), Ok(secs(1)));
        let s = w.try_add_at(0, secs(1)).unwrap();
        assert_eq!(w.used_at(secs(1)), 2);
        w.adjust_at(s, 0, 1, secs(1));
        assert!(!w.fits_at(0, secs(1)));
        assert_eq!(w.earliest_fit_at(0, secs(1)), Ok(ns(11_999_999_999)));
    }

    #[test]
    fn more_than_the_limit_is_refused_at_once() {
        let mut w = ten_by_one(5);
        let e = Error::InsufficientCapacity { requested: 6, capacity: 5 };
        assert_eq!(w.try_add_at(6, secs(1)), Err(e));
        assert_eq!(w.earliest_fit_at(6, secs(1)), Err(e));
        assert!(!w.fits_at(6, secs(1)));
        assert!(!w.fits_at(u64::MAX, secs(1)));
        assert_eq!(w.used_at(secs(1)), 0);
        w.try_add_at(5, secs(1)).unwrap();
    }

    #[test]
    fn invalid_config_is_a_typed_error() {
        let e = SlidingWindow::<4>::try_new(Duration::ZERO, 1).unwrap_err();
        assert_eq!(e.field, "window");
        assert_eq!(
            SlidingWindow::<4>::try_new(Duration::from_nanos(1), 0).unwrap_err().field,
            "limit"
        );
        // Sub-nanosecond windows are zero nanoseconds.
        assert!(SlidingWindow::<4>::try_new(Duration::from_secs(0), 1).is_err());
        let mut w = SlidingWindow::<4>::try_new(Duration::from_nanos(1), 1).unwrap();
        assert_eq!(w.set_limit(0).unwrap_err().field, "limit");
        assert_eq!(w.limit(), 1);
        w.set_limit(7).unwrap();
        assert_eq!(w.limit(), 7);
    }

    #[test]
    fn new_is_usable_in_const_context() {
        const W: SlidingWindow<60> = SlidingWindow::new(Duration::from_secs(60), 500);
        let mut w = W;
        assert_eq!(w.limit(), 500);
        w.try_add_at(500, secs(1)).unwrap();
        assert!(!w.fits_at(1, secs(1)));
    }

    /// The heap ring runs the same arithmetic as the inline one: same answers for the same
    /// operations, at every step.
    #[cfg(feature = "alloc")]
    #[test]
    fn the_heap_ring_counts_as_the_inline_ring() {
        let mut a: SlidingWindow<7> = SlidingWindow::new(Duration::from_nanos(1_000), 10);
        let mut b = HeapWindow::try_new_in(Duration::from_nanos(1_000), 10, 7).unwrap();
        assert_eq!(a.slot_length(), b.slot_length());
        let mut t = 0u64;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t += x % 300;
            let (now, n) = (ns(t), x % 12);
            assert_eq!(a.try_add_at(n, now), b.try_add_at(n, now));
            assert_eq!(a.earliest_fit_at(n, now), b.earliest_fit_at(n, now));
            let s = a.slot_of(now);
            assert_eq!(a.adjust_at(s, n, n / 2, now), b.adjust_at(s, n, n / 2, now));
            assert_eq!(a.used_at(now), b.used_at(now));
        }
        assert_eq!(a.counts(), b.counts());
        let mut c = HeapWindow::try_new_in(Duration::from_nanos(1_000), 10, 7).unwrap();
        c.restore(b.latest(), b.counts()).unwrap();
        assert_eq!(c.used_at(b.latest()), b.used_at(b.latest()));
        assert_eq!(c.restore(Instant::ZERO, &[0; 3]).unwrap_err().field, "slots");
        assert_eq!(
            HeapWindow::try_new_in(Duration::from_secs(1), 1, 1).unwrap_err().field,
            "slots"
        );
    }

    #[test]
    fn a_one_nanosecond_window_with_two_slots() {
        let mut w: SlidingWindow<2> = SlidingWindow::new(Duration::from_nanos(1), 1);
        w.try_add_at(1, ns(5)).unwrap();
        assert_eq!(w.try_add_at(1, ns(5)), Err(Error::RateLimited(crate::Refusal::at(ns(6)))));
        w.try_add_at(1, ns(6)).unwrap();
    }
}
