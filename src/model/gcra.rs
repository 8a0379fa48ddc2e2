//! [`Gcra`]: the model limiter's token-bucket limit kind, as plain data in exact integers (the
//! atomic [`TokenBucket`](crate::TokenBucket) keeps its state in one lock-free word instead;
//! this one lives inside a model's state, under the store's lock or in a remote store).

use crate::{Instant, Rate};

/// A GCRA token bucket in exact integers. Time runs in units of `1 / count` ns, so one token
/// costs exactly `period` units and the clock at `t` ns is `t · count` units: no rounding,
/// ever (both products fit a `u128`).
#[derive(Debug, Clone)]
pub(super) struct Gcra {
    /// Theoretical arrival time, in units: when the bucket is full again.
    pub(super) tat: u128,
    count: u64,
    period: u64,
    burst: u64,
}

impl Gcra {
    pub(super) fn new(rate: Rate, burst: u64) -> Self {
        Self { tat: 0, count: rate.count(), period: rate.period_nanos(), burst }
    }

    fn clock(&self, now: Instant) -> u128 {
        now.as_nanos() as u128 * self.count as u128
    }

    fn cost(&self, n: u64) -> u128 {
        n as u128 * self.period as u128
    }

    /// The TAT after admitting `n` at `now`, and the latest TAT that admission allows.
    fn after(&self, n: u64, now: Instant) -> (u128, u128) {
        let clock = self.clock(now);
        let tat = self.tat.max(clock).saturating_add(self.cost(n));
        (tat, clock.saturating_add(self.cost(self.burst)))
    }

    pub(super) fn fits(&self, n: u64, now: Instant) -> bool {
        let (tat, limit) = self.after(n, now);
        n <= self.burst && tat <= limit
    }

    /// The first instant `n` fit: when the clock reaches `TAT + n·T - burst·T` (never if
    /// `n > burst`).
    pub(super) fn earliest(&self, n: u64, now: Instant) -> Instant {
        if n > self.burst {
            return Instant::MAX;
        }
        let need = self.tat.max(self.clock(now)).saturating_add(self.cost(n));
        let need = need.saturating_sub(self.cost(self.burst));
        let nanos = need.div_ceil(self.count as u128);
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).max(now)
    }

    pub(super) fn charge(&mut self, n: u64, now: Instant) {
        self.tat = self.after(n, now).0;
    }

    /// Gives back `n` tokens of a charge made at `at`, as far as that charge has not drained.
    ///
    /// A charge at `at` left the TAT at most `burst` tokens ahead of `clock(at)`; by `now`, at
    /// most `clock(at) + burst·T − clock(now)` of it can still be ahead of the clock. Tokens
    /// beyond that have flowed out of the bucket already, and the TAT position they held may
    /// belong to later charges: giving them back would let the bucket admit more than its burst
    /// (a late refund after a later full-burst admission admitted a second burst at once). As
    /// in a window, whose slot has left, a late refund refunds less, or nothing.
    pub(super) fn refund(&mut self, n: u64, at: Instant, now: Instant) {
        let undrained =
            self.clock(at).saturating_add(self.cost(self.burst)).saturating_sub(self.clock(now));
        let give = self.cost(n).min(undrained);
        // Never past full: a bucket that has refilled has nothing to give back.
        self.tat = self.tat.saturating_sub(give).max(self.clock(now).min(self.tat));
    }

    pub(super) fn burst(&self) -> u64 {
        self.burst
    }

    /// A new burst, keeping the TAT: a smaller one only delays admissions until what the
    /// bucket holds fits it.
    pub(super) fn set_burst(&mut self, burst: u64) {
        self.burst = burst.max(1);
    }

    pub(super) fn used(&self, now: Instant) -> u64 {
        let lead = self.tat.saturating_sub(self.clock(now));
        u64::try_from(lead.div_ceil(self.period as u128)).unwrap_or(u64::MAX)
    }
}
