//! [`AsyncIoTimer`]: tollgate's clock and timer on `std::time::Instant` and `async-io`, the
//! timer both async-std and smol run on.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::OnceLock;

use tollgate::{Clock, Instant, Timer};

/// The monotonic `std::time::Instant` as a tollgate [`Clock`], with [`async_io::Timer`] for
/// sleeps: works under async-std, smol, and any executor (async-io drives its timers from
/// its own reactor thread when nobody else does).
///
/// Tollgate instants count nanoseconds from a process-wide origin captured at first use.
///
/// ```
/// use std::time::Duration;
/// use tollgate_async_std::{AsyncIoTimer, Clock, Timer};
///
/// let timer = AsyncIoTimer::new();
/// let deadline = timer.now() + Duration::from_millis(5);
/// smol::block_on(timer.sleep_until(deadline));
/// assert!(timer.now() >= deadline);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AsyncIoTimer;

/// The same type as [`AsyncIoTimer`], by the name the other adapters' clocks use.
pub type AsyncIoClock = AsyncIoTimer;

impl AsyncIoTimer {
    /// A handle to the process-wide clock.
    pub const fn new() -> Self {
        AsyncIoTimer
    }

    /// The `std::time::Instant` of a tollgate instant of this clock, e.g. an
    /// [`Error::ready_at`](tollgate::Error::ready_at); `None` past what the platform can
    /// represent.
    pub fn to_std(&self, instant: Instant) -> Option<std::time::Instant> {
        origin().checked_add(Duration::from_nanos(instant.as_nanos()))
    }

    /// The tollgate instant of a `std::time::Instant` (saturating at the origin).
    pub fn from_std(&self, instant: std::time::Instant) -> Instant {
        let nanos = instant.saturating_duration_since(origin()).as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

fn origin() -> std::time::Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    // Every later reading is at or after it (the clock is monotonic), so none saturates.
    *ORIGIN.get_or_init(std::time::Instant::now)
}

impl Clock for AsyncIoTimer {
    #[inline]
    fn now(&self) -> Instant {
        self.from_std(std::time::Instant::now())
    }
}

impl Timer for AsyncIoTimer {
    type Sleep<'a> = AsyncIoSleep;

    fn sleep_until(&self, deadline: Instant) -> AsyncIoSleep {
        // A deadline the platform cannot represent is never reached.
        let timer = self.to_std(deadline).map_or_else(async_io::Timer::never, async_io::Timer::at);
        AsyncIoSleep { timer }
    }
}

/// The future returned by [`AsyncIoTimer::sleep_until`]: an [`async_io::Timer`] that
/// completes with `()`.
///
/// # Cancel safety
/// Dropping it deregisters the timer.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct AsyncIoSleep {
    timer: async_io::Timer,
}

impl Future for AsyncIoSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.timer).poll(cx).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        let timer = AsyncIoTimer::new();
        let t = Instant::from_millis(1_234);
        assert_eq!(timer.to_std(t).map(|s| timer.from_std(s)), Some(t));
        // Far past the platform's range: a timer that never fires, no panic.
        drop(timer.sleep_until(Instant::MAX));
    }
}
