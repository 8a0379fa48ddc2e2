//! Time as the core sees it: an [`Instant`] in nanoseconds, a [`Clock`] that reads it, and a
//! [`Timer`] that lets an async task wait for it.
//!
//! The core never reads a system clock itself. Adapters supply clocks backed by `std`, tokio,
//! async-io or embassy; tests use [`ManualClock`].

use core::fmt;
use core::future::Future;
use core::ops::{Add, Sub};
use core::time::Duration;

// The test clock lives in its own file; it is found here beside the traits it implements.
pub use crate::manual_clock::ManualClock;
#[cfg(feature = "alloc")]
pub use crate::manual_clock::ManualSleep;

/// A point in time: nanoseconds since the epoch of the [`Clock`] that produced it.
///
/// Instants from different clocks are not comparable. Arithmetic never panics: the operators
/// saturate, and `checked_*` twins report overflow.
///
/// ```
/// use core::time::Duration;
/// use tollgate::Instant;
///
/// let t = Instant::from_millis(1_500);
/// assert_eq!(t + Duration::from_millis(500), Instant::from_secs(2));
/// assert_eq!(t - Instant::from_secs(10), Duration::ZERO); // saturates instead of panicking
/// assert_eq!(Instant::MAX.checked_add(Duration::from_nanos(1)), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The clock's epoch.
    pub const ZERO: Self = Self(0);
    /// The last representable instant, about 584 years after the epoch.
    pub const MAX: Self = Self(u64::MAX);

    /// An instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// An instant `micros` microseconds after the epoch, saturating at [`Instant::MAX`].
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros.saturating_mul(1_000))
    }

    /// An instant `millis` milliseconds after the epoch, saturating at [`Instant::MAX`].
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000_000))
    }

    /// An instant `secs` seconds after the epoch, saturating at [`Instant::MAX`].
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Microseconds since the epoch, rounded down.
    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    /// Milliseconds since the epoch, rounded down.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// Whole seconds since the epoch, rounded down.
    ///
    /// ```
    /// use tollgate::Instant;
    ///
    /// assert_eq!(Instant::from_millis(61_999).as_secs(), 61);
    /// assert_eq!(Instant::MAX.as_secs(), 18_446_744_073); // about 584 years
    /// const T: u64 = Instant::from_secs(5).as_secs();
    /// assert_eq!(T, 5);
    /// ```
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// Time since the epoch.
    pub const fn elapsed_since_epoch(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self + d`, or `None` past [`Instant::MAX`].
    pub const fn checked_add(self, d: Duration) -> Option<Self> {
        match duration_to_nanos(d) {
            Some(n) => match self.0.checked_add(n) {
                Some(t) => Some(Self(t)),
                None => None,
            },
            None => None,
        }
    }

    /// `self - d`, or `None` before the epoch.
    pub const fn checked_sub(self, d: Duration) -> Option<Self> {
        match duration_to_nanos(d) {
            Some(n) => match self.0.checked_sub(n) {
                Some(t) => Some(Self(t)),
                None => None,
            },
            None => None,
        }
    }

    /// `self + d`, clamped to [`Instant::MAX`].
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_to_nanos_saturating(d)))
    }

    /// `self - d`, clamped to [`Instant::ZERO`].
    pub const fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(duration_to_nanos_saturating(d)))
    }

    /// Time from `earlier` to `self`, or `None` if `earlier` is later than `self`.
    pub const fn checked_duration_since(self, earlier: Self) -> Option<Duration> {
        match self.0.checked_sub(earlier.0) {
            Some(n) => Some(Duration::from_nanos(n)),
            None => None,
        }
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later than `self`.
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Whole nanoseconds in `d`, or `None` if they do not fit in a `u64` (about 584 years).
const fn duration_to_nanos(d: Duration) -> Option<u64> {
    let nanos = d.as_nanos();
    if nanos > u64::MAX as u128 { None } else { Some(nanos as u64) }
}

pub(crate) const fn duration_to_nanos_saturating(d: Duration) -> u64 {
    match duration_to_nanos(d) {
        Some(n) => n,
        None => u64::MAX,
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating: never panics.
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturating: never panics.
    fn sub(self, d: Duration) -> Instant {
        self.saturating_sub(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: an `earlier` that is later gives zero.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({:?})", Duration::from_nanos(self.0))
    }
}

/// A monotonic source of [`Instant`]s.
///
/// `now` must never go backwards. If a faulty clock does, the core treats the earlier reading as
/// "no time has passed": limits stay enforced, waits may get longer, nothing panics.
pub trait Clock {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// A [`Clock`] an async task can wait on.
///
/// Implementations must complete the future no earlier than `deadline` as read by
/// [`Clock::now`] of the same value; waking late is allowed (the limiter re-reads the clock).
pub trait Timer: Clock {
    /// The future returned by [`Timer::sleep_until`].
    type Sleep<'a>: Future<Output = ()> + 'a
    where
        Self: 'a;

    /// A future that completes once `self.now() >= deadline`.
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep<'_>;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

impl<T: Timer + ?Sized> Timer for &T {
    type Sleep<'a>
        = T::Sleep<'a>
    where
        Self: 'a;

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep<'_> {
        (**self).sleep_until(deadline)
    }
}

#[cfg(feature = "alloc")]
impl<C: Clock + ?Sized> Clock for alloc::sync::Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

#[cfg(feature = "alloc")]
impl<T: Timer + ?Sized> Timer for alloc::sync::Arc<T> {
    type Sleep<'a>
        = T::Sleep<'a>
    where
        Self: 'a;

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep<'_> {
        (**self).sleep_until(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_at_both_ends() {
        let d = Duration::from_secs(1);
        assert_eq!(Instant::MAX + d, Instant::MAX);
        assert_eq!(Instant::ZERO - d, Instant::ZERO);
        assert_eq!(Instant::MAX.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(Instant::ZERO.checked_sub(Duration::from_nanos(1)), None);
        assert_eq!(Instant::ZERO.checked_add(Duration::MAX), None);
        assert_eq!(Instant::ZERO.saturating_add(Duration::MAX), Instant::MAX);
        assert_eq!(Instant::ZERO - Instant::MAX, Duration::ZERO);
        assert_eq!(Instant::MAX - Instant::ZERO, Duration::from_nanos(u64::MAX));
        assert_eq!(Instant::ZERO.checked_duration_since(Instant::from_nanos(1)), None);
        assert_eq!(Instant::from_secs(u64::MAX), Instant::MAX);
        assert_eq!(Instant::from_millis(u64::MAX), Instant::MAX);
        assert_eq!(Instant::from_micros(u64::MAX), Instant::MAX);
    }

    #[test]
    fn conversions_round_trip() {
        let t = Instant::from_secs(3);
        assert_eq!(t.as_nanos(), 3_000_000_000);
        assert_eq!(t.as_micros(), 3_000_000);
        assert_eq!(t.as_millis(), 3_000);
        assert_eq!(t.elapsed_since_epoch(), Duration::from_secs(3));
        assert_eq!(Instant::from_nanos(1_999_999).as_millis(), 1);
    }
}
