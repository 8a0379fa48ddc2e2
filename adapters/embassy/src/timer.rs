//! [`EmbassyTimer`]: tollgate's clock and timer on `embassy_time::Instant` and
//! `embassy_time::Timer::at`.

use embassy_time::TICK_HZ;
use tollgate::{Clock, Instant, Timer};

const NANOS_PER_SEC: u64 = 1_000_000_000;

const fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// `nanos = ticks · NANOS / TICKS`, the ratio reduced so the fast path rarely overflows.
const GCD: u64 = gcd(NANOS_PER_SEC, TICK_HZ);
const NANOS: u64 = NANOS_PER_SEC / GCD;
const TICKS: u64 = TICK_HZ / GCD;

/// The embassy-time clock as a tollgate [`Clock`] and [`Timer`]: `now` reads
/// [`embassy_time::Instant::now`], sleeps are [`embassy_time::Timer::at`].
///
/// Tollgate instants are nanoseconds since embassy's epoch (boot). Ticks convert to
/// nanoseconds exactly (rounded down, so the clock stays monotonic), and a deadline converts
/// to the first tick at or after it, so a sleep never ends early whatever the tick rate.
///
/// A zero-sized handle with a `const` constructor, for `static` limiters:
///
/// ```
/// use tollgate_embassy::{AsyncRateLimiter, EmbassyTimer, Rate};
///
/// static LIMITER: AsyncRateLimiter =
///     AsyncRateLimiter::with_timer(Rate::per_second(5), 5, EmbassyTimer::new());
/// assert_eq!(LIMITER.burst(), 5);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EmbassyTimer;

/// The same type as [`EmbassyTimer`]: a clock for non-waiting use (`try_acquire`, buckets).
pub type EmbassyClock = EmbassyTimer;

impl EmbassyTimer {
    /// A handle to the embassy-time clock.
    pub const fn new() -> Self {
        EmbassyTimer
    }

    /// The tollgate instant of an embassy instant: exact, rounded down to the nanosecond,
    /// saturating at [`Instant::MAX`].
    pub const fn from_embassy(instant: embassy_time::Instant) -> Instant {
        Instant::from_nanos(ticks_to_nanos(instant.as_ticks()))
    }

    /// The first embassy instant at or after a tollgate instant (rounded up to the tick),
    /// saturating at [`embassy_time::Instant::MAX`].
    pub const fn to_embassy(instant: Instant) -> embassy_time::Instant {
        embassy_time::Instant::from_ticks(nanos_to_ticks_ceil(instant.as_nanos()))
    }
}

const fn ticks_to_nanos(ticks: u64) -> u64 {
    scale_down(ticks, NANOS, TICKS)
}

const fn nanos_to_ticks_ceil(nanos: u64) -> u64 {
    scale_up(nanos, TICKS, NANOS)
}

/// `floor(x · num / den)`, saturating; `u128` only when the product overflows.
const fn scale_down(x: u64, num: u64, den: u64) -> u64 {
    match x.checked_mul(num) {
        Some(product) => product / den,
        None => saturate(x as u128 * num as u128 / den as u128),
    }
}

/// `ceil(x · num / den)`, saturating.
const fn scale_up(x: u64, num: u64, den: u64) -> u64 {
    match x.checked_mul(num) {
        Some(product) => product.div_ceil(den),
        None => saturate((x as u128 * num as u128).div_ceil(den as u128)),
    }
}

const fn saturate(x: u128) -> u64 {
    if x > u64::MAX as u128 { u64::MAX } else { x as u64 }
}

impl Clock for EmbassyTimer {
    #[inline]
    fn now(&self) -> Instant {
        Self::from_embassy(embassy_time::Instant::now())
    }
}

impl Timer for EmbassyTimer {
    type Sleep<'a> = embassy_time::Timer;

    fn sleep_until(&self, deadline: Instant) -> embassy_time::Timer {
        embassy_time::Timer::at(Self::to_embassy(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configured rate (1 MHz under the mock driver) and awkward ones embassy offers:
    /// ticks → nanoseconds → ticks never gains, and a deadline's tick never reads early.
    #[test]
    fn conversions_are_exact_and_deadlines_round_up() {
        let rates = [TICK_HZ, 1, 32_768, 1_000_000, 16_777_216, 1_000_000_000, 5_242_880_000];
        for hz in rates {
            let g = gcd(NANOS_PER_SEC, hz);
            let (nanos_per, ticks_per) = (NANOS_PER_SEC / g, hz / g);
            let to_nanos = |t| scale_down(t, nanos_per, ticks_per);
            let to_ticks = |n| scale_up(n, ticks_per, nanos_per);
            for ticks in [0, 1, 2, 999, 32_768, 123_456_789, u64::MAX / 7, u64::MAX] {
                let nanos = to_nanos(ticks);
                assert!(to_ticks(nanos) <= ticks || nanos == u64::MAX, "{hz} Hz, {ticks} ticks");
            }
            for nanos in [0, 1, 999, 1_000, 1_001, 30_517, 123_456_789, u64::MAX / 3, u64::MAX] {
                let ticks = to_ticks(nanos);
                assert!(to_nanos(ticks) >= nanos || ticks == u64::MAX, "{hz} Hz, {nanos} ns");
                if ticks > 0 && ticks < u64::MAX {
                    assert!(to_nanos(ticks - 1) < nanos, "{hz} Hz, {nanos} ns: not the first tick");
                }
            }
        }
        // 32 768 Hz: one tick is 30 517.578125 ns.
        assert_eq!(scale_down(1, 1_953_125, 64), 30_517);
        assert_eq!(scale_up(30_518, 64, 1_953_125), 2);
    }
}
