//! [`TokioTimer`]: tollgate's clock and timer on `tokio::time`, so a paused tokio clock
//! (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`) drives limiters too; with the
//! `quanta` feature, optionally reading the CPU's time-stamp counter instead (for servers).

use core::time::Duration;
use std::sync::OnceLock;

use tollgate::{Clock, Instant, Timer};

/// The tokio clock as a tollgate [`Clock`] and [`Timer`]: `now` reads
/// [`tokio::time::Instant::now`], sleeps are [`tokio::time::sleep_until`].
///
/// Because both go through `tokio::time`, a paused runtime drives the limiter
/// deterministically: tests advance time instead of sleeping.
///
/// With the `quanta` feature, `TokioTimer::tsc()` is the same type reading the CPU's
/// time-stamp counter for `now` (9 ns a read against 21–41 ns for `tokio::time::Instant::now`
/// here, which matters when a decision is a compare-and-swap) and still sleeping on tokio's
/// timer; see there for what it gives up.
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
pub struct TokioTimer {
    source: Source,
}

/// Where a [`TokioTimer`] reads the time. One type for both, so that every limiter alias of
/// this crate (`AsyncRateLimiter`, `KeyedRateLimiter`, the HTTP layer's) takes either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
enum Source {
    /// `tokio::time::Instant::now`: follows a paused runtime.
    #[default]
    Tokio,
    /// The time-stamp counter through `quanta` (see `TokioTimer::tsc`).
    #[cfg(feature = "quanta")]
    Tsc,
}

/// The same type as [`TokioTimer`], by the name the other adapters' clocks use.
pub type TokioClock = TokioTimer;

impl TokioTimer {
    /// A handle to the tokio clock.
    pub const fn new() -> Self {
        TokioTimer { source: Source::Tokio }
    }

    /// A timer whose `now` reads the CPU's invariant time-stamp counter through
    /// [`quanta`](https://docs.rs/quanta) (where the CPU has none that is invariant, quanta
    /// reads the OS monotonic clock), on the same scale and origin as [`TokioTimer::new`];
    /// sleeps still go through tokio's timer. For servers, where every request reads the
    /// clock: about 9 ns a read here against 21–41 ns for `tokio::time::Instant::now`.
    ///
    /// What it gives up:
    /// - **A paused tokio clock does not drive it.** In tests with `start_paused` or
    ///   `tokio::time::pause`, use [`TokioTimer::new`]: this clock keeps real time, and a wait
    ///   on it (whose sleeps a paused runtime ends at once) spins until real time catches up.
    /// - **Its rate is the counter's calibration.** quanta calibrates the counter against the
    ///   OS clock once; the two can differ by a few parts per million, so a sleep is converted
    ///   to tokio's clock at the moment it starts (never through a fixed offset, which would
    ///   drift), and a wait that tokio ends a few microseconds early sleeps again: nobody is
    ///   admitted before their instant on this clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_tokio::{AsyncRateLimiter, Clock, Rate, TokioTimer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let timer = TokioTimer::tsc();
    /// let limiter = AsyncRateLimiter::with_timer(Rate::per_second(100), 1, timer);
    /// limiter.acquire().await;
    /// let start = timer.now();
    /// limiter.acquire().await; // waits ~10 ms of real time
    /// assert!(timer.now() - start >= Duration::from_millis(9));
    /// # }
    /// ```
    #[cfg(feature = "quanta")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quanta")))]
    pub fn tsc() -> Self {
        tsc::anchor(); // calibrate now, not on the first request
        TokioTimer { source: Source::Tsc }
    }

    /// Whether this timer reads the time-stamp counter (`TokioTimer::tsc()`, feature `quanta`).
    pub const fn is_tsc(&self) -> bool {
        match self.source {
            Source::Tokio => false,
            #[cfg(feature = "quanta")]
            Source::Tsc => true,
        }
    }

    /// The tokio instant of a tollgate instant of this clock, e.g. an
    /// [`Error::ready_at`](tollgate::Error::ready_at), to sleep until it yourself.
    pub fn to_tokio(&self, instant: Instant) -> tokio::time::Instant {
        match self.source {
            Source::Tokio => origin()
                .checked_add(Duration::from_nanos(instant.as_nanos()))
                .unwrap_or_else(far_future),
            // Relative to a reading of both clocks now: the counter's rate may differ from the
            // OS clock's by parts per million, which a fixed offset would accumulate.
            #[cfg(feature = "quanta")]
            Source::Tsc => {
                let (now, tokio_now) = (self.now(), tokio::time::Instant::now());
                if instant >= now {
                    tokio_now.checked_add(instant - now).unwrap_or_else(far_future)
                } else {
                    tokio_now.checked_sub(now - instant).unwrap_or_else(origin)
                }
            }
        }
    }

    /// The tollgate instant of a tokio instant (saturating at the origin).
    #[inline]
    pub fn from_tokio(&self, instant: tokio::time::Instant) -> Instant {
        match self.source {
            Source::Tokio => Self::from_tokio_clock(instant),
            #[cfg(feature = "quanta")]
            Source::Tsc => {
                let (now, tokio_now) = (self.now(), tokio::time::Instant::now());
                if instant >= tokio_now {
                    now.saturating_add(instant - tokio_now)
                } else {
                    now.saturating_sub(tokio_now - instant)
                }
            }
        }
    }

    /// A tokio instant on the tollgate scale of [`TokioTimer::new`].
    #[inline]
    fn from_tokio_clock(instant: tokio::time::Instant) -> Instant {
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

/// The time-stamp counter, anchored once to the tokio clock's scale.
#[cfg(feature = "quanta")]
mod tsc {
    use std::sync::OnceLock;

    use tollgate::Instant;

    pub(super) struct Anchor {
        clock: quanta::Clock,
        /// The counter's reading at `at`.
        raw: u64,
        /// The instant of [`TokioTimer::new`](super::TokioTimer::new)'s scale it was read at.
        at: Instant,
    }

    pub(super) fn anchor() -> &'static Anchor {
        static ANCHOR: OnceLock<Anchor> = OnceLock::new();
        ANCHOR.get_or_init(|| {
            let clock = quanta::Clock::new();
            // Real time, as the origin is: a paused runtime's clock would put the counter's
            // zero wherever that runtime had got to.
            let at = super::TokioTimer::from_tokio_clock(tokio::time::Instant::from_std(
                std::time::Instant::now(),
            ));
            Anchor { raw: clock.raw(), clock, at }
        })
    }

    #[inline]
    pub(super) fn now() -> Instant {
        let a = anchor();
        // 0 for a reading at or before the anchor (a counter slightly behind on another
        // core): the core treats an earlier reading as no time passed.
        Instant::from_nanos(
            a.at.as_nanos().saturating_add(a.clock.delta_as_nanos(a.raw, a.clock.raw())),
        )
    }
}

impl Clock for TokioTimer {
    #[inline]
    fn now(&self) -> Instant {
        match self.source {
            Source::Tokio => Self::from_tokio_clock(tokio::time::Instant::now()),
            #[cfg(feature = "quanta")]
            Source::Tsc => tsc::now(),
        }
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
