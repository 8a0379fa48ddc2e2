//! [`TokioTimer`]: tollgate's clock and timer on `tokio::time`, so a paused tokio clock
//! (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`) drives limiters too.

use core::time::Duration;
use std::sync::OnceLock;

use tollgate::{Clock, Instant, Timer};

/// The tokio clock as a tollgate [`Clock`] and [`Timer`]: `now` reads
/// [`tokio::time::Instant::now`], sleeps are [`tokio::time::sleep_until`].
///
/// Because both go through `tokio::time`, a paused runtime drives the limiter
/// deterministically: tests advance time instead of sleeping.
///
/// Tollgate instants count nanoseconds from a process-wide origin fixed at first use, one
/// year before the real `std::time::Instant::now()` of that moment. A paused tokio clock starts
/// at the real time its runtime was built and only moves forward, so runtimes built before or
/// after the first use never read below the origin.
///
/// # Panics
/// Like [`tokio::time::sleep_until`], awaiting a sleep (so an `acquire` that has to wait)
/// outside a tokio runtime with the time driver enabled panics. Reading the clock and the
/// non-waiting `try_acquire` work anywhere.
///
/// ```
/// use std::time::Duration;
/// use tollgate_tokio::{Clock, TokioTimer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let timer = TokioTimer::new();
/// let before = timer.now();
/// tokio::time::sleep(Duration::from_secs(5)).await; // instant on a paused clock
/// assert_eq!(timer.now() - before, Duration::from_secs(5));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TokioTimer;

/// The same type as [`TokioTimer`], by the name the other adapters' clocks use.
pub type TokioClock = TokioTimer;

impl TokioTimer {
    /// A handle to the tokio clock.
    pub const fn new() -> Self {
        TokioTimer
    }

    /// The tokio instant of a tollgate instant of this clock, e.g. an
    /// [`Error::ready_at`](tollgate::Error::ready_at), to sleep until it yourself.
    pub fn to_tokio(&self, instant: Instant) -> tokio::time::Instant {
        let origin = origin();
        origin.checked_add(Duration::from_nanos(instant.as_nanos())).unwrap_or_else(far_future)
    }

    /// The tollgate instant of a tokio instant (saturating at the origin).
    #[inline]
    pub fn from_tokio(&self, instant: tokio::time::Instant) -> Instant {
        let since = instant.saturating_duration_since(origin());
        // In `u64`, saturating, rather than through `as_nanos`'s `u128`: this runs on every
        // clock read (every decision of a limiter on this clock).
        let nanos = since.as_secs().saturating_mul(1_000_000_000);
        Instant::from_nanos(nanos.saturating_add(u64::from(since.subsec_nanos())))
    }
}

/// The instant tollgate's `Instant::ZERO` stands for.
#[inline]
fn origin() -> tokio::time::Instant {
    static ORIGIN: OnceLock<tokio::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        // Real time, not `tokio::time::Instant::now()`: a paused clock that has already
        // auto-advanced far ahead would put the origin above the clocks of runtimes built
        // later. A year back covers any runtime built before this one; smaller steps are for
        // platforms whose `Instant` cannot go that far below "now" (e.g. just after boot).
        const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);
        let real = std::time::Instant::now();
        let steps = [YEAR, YEAR / 365, Duration::from_secs(60 * 60), Duration::from_secs(1)];
        let base = steps.iter().find_map(|back| real.checked_sub(*back)).unwrap_or(real);
        tokio::time::Instant::from_std(base)
    })
}

/// Stand-in for a deadline the platform's `Instant` cannot represent: far enough that nobody
/// waits for it in practice, and clamped by tokio's timer anyway.
#[cold]
fn far_future() -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    [Duration::from_secs(30 * 365 * 24 * 60 * 60), Duration::from_secs(24 * 60 * 60)]
        .iter()
        .find_map(|ahead| now.checked_add(*ahead))
        .unwrap_or(now)
}

impl Clock for TokioTimer {
    #[inline]
    fn now(&self) -> Instant {
        self.from_tokio(tokio::time::Instant::now())
    }
}

impl Timer for TokioTimer {
    type Sleep<'a> = tokio::time::Sleep;

    fn sleep_until(&self, deadline: Instant) -> tokio::time::Sleep {
        tokio::time::sleep_until(self.to_tokio(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        let timer = TokioTimer::new();
        let t = Instant::from_secs(42);
        assert_eq!(timer.from_tokio(timer.to_tokio(t)), t);
        // The origin is a year back, so real time reads about a year.
        assert!(timer.now() >= Instant::from_secs(365 * 24 * 60 * 60 - 1));
        // Far past the platform's range: no panic.
        let _ = timer.to_tokio(Instant::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_runtime_moves_the_clock() {
        let timer = TokioTimer::new();
        let start = timer.now();
        timer.sleep_until(start + Duration::from_millis(1_500)).await;
        assert_eq!(timer.now() - start, Duration::from_millis(1_500));
    }
}
