//! Sleeping the calling thread until an instant of [`StdClock`]: how a blocking wait spends
//! the time between its reservation and the reservation's instant.

use std::thread;

use tollgate::{Clock, Instant};

use crate::StdClock;

/// Blocks the calling thread until [`StdClock`] reads at least `deadline`; returns at once if
/// it already does. `Instant::MAX` (a token that never comes) blocks forever.
///
/// [`thread::sleep`] is the most precise sleep std offers on stable (`nanosleep` on Linux,
/// nanosecond resolution, late by the kernel's timer slack, about 50 µs). It sleeps on the
/// OS monotonic clock while the deadline is on [`StdClock`], whose time-stamp-counter scale
/// may differ from it by a few parts per million, and a sleep may end early (a signal on some
/// platforms; `std` retries `EINTR` itself, but makes no promise elsewhere): so the deadline
/// is re-checked on [`StdClock`] after every sleep and an early wake-up sleeps again for what
/// is left. Nothing can return before the deadline. The sleep is not a `park`, so an
/// `unpark` aimed at this thread by unrelated code cannot end it either.
pub(crate) fn sleep_until(deadline: Instant) {
    let clock = StdClock::new();
    loop {
        let now = clock.now();
        if now >= deadline {
            return;
        }
        // `Instant::MAX - now` is about 584 years: `thread::sleep` handles any `Duration`
        // (it sleeps in chunks where the OS call cannot take it whole), so "never" is a loop
        // of very long sleeps rather than a special case.
        thread::sleep(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicBool, Ordering};
    use core::time::Duration;
    use std::sync::Arc;

    #[test]
    fn a_past_deadline_returns_at_once() {
        let start = std::time::Instant::now();
        sleep_until(Instant::ZERO);
        sleep_until(StdClock::new().now());
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn never_returns_before_the_deadline_even_when_unparked() {
        let clock = StdClock::new();
        let deadline = clock.now() + Duration::from_millis(40);
        let done = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let done = Arc::clone(&done);
            thread::spawn(move || {
                sleep_until(deadline);
                let woke = clock.now();
                done.store(true, Ordering::Release);
                woke
            })
        };
        // Unpark it over and over: a `park`-based sleep without a re-check would return early.
        while !done.load(Ordering::Acquire) {
            sleeper.thread().unpark();
            thread::sleep(Duration::from_micros(200));
        }
        let woke = sleeper.join().unwrap();
        assert!(woke >= deadline, "woke {:?} early", deadline - woke);
        assert!(woke - deadline < Duration::from_millis(500), "{:?} late", woke - deadline);
    }
}
