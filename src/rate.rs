//! [`Rate`]: a validated "n per period".

use core::time::Duration;

use crate::error::InvalidConfig;
use crate::time::duration_to_nanos_saturating;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// `count` events per `period`, both non-zero.
///
/// Fractional rates are written through the period: 0.4 per second is `Rate::new(2, 5 s)`.
/// The constructors are `const fn` and panic on zero, which in a `const` or `static` is a
/// compile error with a clear message; use the `try_*` forms for values read at run time.
///
/// ```
/// use core::time::Duration;
/// use tollgate::Rate;
///
/// const API: Rate = Rate::per_minute(500);
/// assert_eq!(API.count(), 500);
/// let slow = Rate::new(2, Duration::from_secs(5)); // 0.4 per second
/// assert_eq!(slow.period(), Duration::from_secs(5));
/// assert!(Rate::try_per_second(0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u64,
    period_nanos: u64,
}

impl Rate {
    /// `count` per `period` (the period saturates at about 584 years).
    ///
    /// # Panics
    /// If `count` or `period` is zero (at compile time in const context).
    /// [`Rate::try_new`] returns an error instead.
    pub const fn new(count: u64, period: Duration) -> Self {
        match Self::try_new(count, period) {
            Ok(rate) => rate,
            Err(_) => panic!("tollgate::Rate needs a non-zero count and a non-zero period"),
        }
    }

    /// `count` per `period`, or an error if either is zero.
    pub const fn try_new(count: u64, period: Duration) -> Result<Self, InvalidConfig> {
        let period_nanos = duration_to_nanos_saturating(period);
        if count == 0 {
            return Err(InvalidConfig::new("rate.count", "must be greater than zero"));
        }
        if period_nanos == 0 {
            return Err(InvalidConfig::new("rate.period", "must be at least one nanosecond"));
        }
        Ok(Self { count, period_nanos })
    }

    /// `n` per second. Panics on zero; see [`Rate::try_per_second`].
    pub const fn per_second(n: u32) -> Self {
        Self::new(n as u64, Duration::from_secs(1))
    }

    /// `n` per minute. Panics on zero; see [`Rate::try_per_minute`].
    pub const fn per_minute(n: u32) -> Self {
        Self::new(n as u64, Duration::from_secs(60))
    }

    /// `n` per hour. Panics on zero.
    pub const fn per_hour(n: u32) -> Self {
        Self::new(n as u64, Duration::from_secs(3_600))
    }

    /// `n` per day. Panics on zero.
    pub const fn per_day(n: u32) -> Self {
        Self::new(n as u64, Duration::from_secs(86_400))
    }

    /// `n` per second, or an error on zero.
    pub const fn try_per_second(n: u32) -> Result<Self, InvalidConfig> {
        Self::try_new(n as u64, Duration::from_secs(1))
    }

    /// `n` per minute, or an error on zero.
    pub const fn try_per_minute(n: u32) -> Result<Self, InvalidConfig> {
        Self::try_new(n as u64, Duration::from_secs(60))
    }

    /// Events per period.
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        Duration::from_nanos(self.period_nanos)
    }

    pub(crate) const fn period_nanos(&self) -> u64 {
        self.period_nanos
    }

    /// The burst a limiter built with only this rate gets: the events in one second, at least 1
    /// (the Python seed's rule, so `per_second(10)` can spend 10 at once from a full bucket).
    pub const fn default_burst(&self) -> u64 {
        let per_sec = (self.count as u128 * NANOS_PER_SEC as u128) / self.period_nanos as u128;
        if per_sec == 0 {
            1
        } else if per_sec > u64::MAX as u128 {
            u64::MAX
        } else {
            per_sec as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_rejected_at_run_time() {
        assert_eq!(Rate::try_per_second(0).unwrap_err().field, "rate.count");
        assert_eq!(Rate::try_new(1, Duration::ZERO).unwrap_err().field, "rate.period");
        assert_eq!(Rate::try_new(1, Duration::from_nanos(1)).unwrap().period_nanos(), 1);
    }

    #[test]
    #[should_panic(expected = "non-zero count")]
    fn zero_panics_in_the_const_constructor() {
        let n = core::hint::black_box(0);
        let _ = Rate::per_second(n);
    }

    #[test]
    fn default_burst_follows_the_seed() {
        assert_eq!(Rate::per_second(10).default_burst(), 10);
        assert_eq!(Rate::per_minute(30).default_burst(), 1);
        assert_eq!(Rate::new(2, Duration::from_secs(5)).default_burst(), 1);
        assert_eq!(Rate::per_second(u32::MAX).default_burst(), u32::MAX as u64);
        assert_eq!(Rate::new(u64::MAX, Duration::from_nanos(1)).default_burst(), u64::MAX);
    }

    #[test]
    fn huge_periods_saturate() {
        let r = Rate::new(1, Duration::MAX);
        assert_eq!(r.period_nanos(), u64::MAX);
    }
}
