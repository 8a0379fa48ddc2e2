//! [`ManualClock`]: a clock that moves only when a test says so, and (with `alloc`) a
//! [`Timer`](crate::Timer) whose sleepers wake when it is advanced past their deadline.

use core::time::Duration;

use crate::sync::{AtomicU64, Ordering, const_fn};
use crate::{Clock, Instant};

/// A clock for deterministic tests: it starts at [`Instant::ZERO`] (or where you say) and
/// moves only on [`advance`](ManualClock::advance) or [`set`](ManualClock::set).
///
/// With the `alloc` feature it is also a [`Timer`](crate::Timer): futures returned by
/// `sleep_until` complete as soon as the clock is moved to or past their deadline, so async
/// code under test never sleeps for real. Share it by reference or `Arc`.
///
/// ```
/// use core::time::Duration;
/// use tollgate::{Clock, Instant, ManualClock};
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now(), Instant::from_millis(250));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicU64,
    #[cfg(feature = "alloc")]
    sleepers: crate::sync::Mutex<sleepers::Sleepers>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    const_fn! {
        /// A clock reading [`Instant::ZERO`].
        pub fn new() -> Self {
            Self::starting_at(Instant::ZERO)
        }
    }

    const_fn! {
        /// A clock reading `start`.
        pub fn starting_at(start: Instant) -> Self {
            Self {
                now: AtomicU64::new(start.as_nanos()),
                #[cfg(feature = "alloc")]
                sleepers: crate::sync::Mutex::new(sleepers::Sleepers::new()),
            }
        }
    }

    /// Moves the clock forward by `d` (saturating at [`Instant::MAX`]) and wakes every
    /// sleeper whose deadline has now passed.
    pub fn advance(&self, d: Duration) {
        let d = crate::time::duration_to_nanos_saturating(d);
        let mut current = self.now.load(Ordering::Acquire);
        while let Err(actual) = self.now.compare_exchange_weak(
            current,
            current.saturating_add(d),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            current = actual;
        }
        self.wake_due();
    }

    /// Sets the clock to `t`, which may be earlier than now: use it to test how code copes
    /// with a clock that steps backwards. Wakes every sleeper whose deadline has passed.
    pub fn set(&self, t: Instant) {
        self.now.store(t.as_nanos(), Ordering::Release);
        self.wake_due();
    }

    #[cfg(not(feature = "alloc"))]
    fn wake_due(&self) {}
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.now.load(Ordering::Acquire))
    }
}

#[cfg(feature = "alloc")]
mod sleepers {
    //! The timer half of `ManualClock`: a registry of sleeping futures keyed by id.
    use alloc::vec::Vec;
    use core::future::Future;
    use core::pin::Pin;
    use core::task::{Context, Poll, Waker};

    use super::ManualClock;
    use crate::{Clock, Instant, Timer};

    #[derive(Debug)]
    pub(super) struct Sleepers {
        next_id: u64,
        waiting: Vec<(u64, Instant, Waker)>,
    }

    impl Sleepers {
        pub(super) const fn new() -> Self {
            Self { next_id: 0, waiting: Vec::new() }
        }
    }

    impl ManualClock {
        pub(super) fn wake_due(&self) {
            let now = self.now();
            let due: Vec<Waker> = self.sleepers.with(|s| {
                let mut due = Vec::new();
                s.waiting.retain(|(_, deadline, waker)| {
                    if *deadline <= now {
                        due.push(waker.clone());
                        false
                    } else {
                        true
                    }
                });
                due
            });
            // Woken outside the lock: a waker may poll (and so re-lock) synchronously.
            for waker in due {
                waker.wake();
            }
        }

        /// The earliest deadline any pending sleeper waits for.
        pub fn next_deadline(&self) -> Option<Instant> {
            self.sleepers.with(|s| s.waiting.iter().map(|(_, d, _)| *d).min())
        }

        /// Moves the clock to the earliest pending deadline (never backwards) and wakes
        /// those sleepers, like tokio's auto-advancing paused clock. Returns `false` if
        /// nobody is sleeping.
        pub fn advance_to_next_deadline(&self) -> bool {
            match self.next_deadline() {
                Some(deadline) => {
                    if deadline > self.now() {
                        self.set(deadline);
                    } else {
                        self.wake_due();
                    }
                    true
                }
                None => false,
            }
        }

        /// How many sleepers are registered (pending futures that have been polled).
        pub fn sleepers(&self) -> usize {
            self.sleepers.with(|s| s.waiting.len())
        }
    }

    /// The future returned by [`ManualClock::sleep_until`](Timer::sleep_until).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct ManualSleep<'a> {
        clock: &'a ManualClock,
        deadline: Instant,
        id: Option<u64>,
    }

    impl Future for ManualSleep<'_> {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let this = &mut *self;
            let (clock, deadline) = (this.clock, this.deadline);
            // Check and register under the lock that `wake_due` takes after moving the clock:
            // either we see the new time, or it sees our waker. No lost wake-up.
            let done = clock.sleepers.with(|s| {
                let registered = this.id.and_then(|id| s.waiting.iter().position(|e| e.0 == id));
                if clock.now() >= deadline {
                    if let Some(i) = registered {
                        s.waiting.swap_remove(i);
                    }
                    return true;
                }
                match registered {
                    Some(i) => {
                        if !s.waiting[i].2.will_wake(cx.waker()) {
                            s.waiting[i].2 = cx.waker().clone();
                        }
                    }
                    None => {
                        let id = s.next_id;
                        s.next_id += 1;
                        s.waiting.push((id, deadline, cx.waker().clone()));
                        this.id = Some(id);
                    }
                }
                false
            });
            if done {
                this.id = None;
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    impl Drop for ManualSleep<'_> {
        fn drop(&mut self) {
            if let Some(id) = self.id {
                self.clock.sleepers.with(|s| s.waiting.retain(|e| e.0 != id));
            }
        }
    }

    impl Timer for ManualClock {
        type Sleep<'a> = ManualSleep<'a>;

        fn sleep_until(&self, deadline: Instant) -> ManualSleep<'_> {
            ManualSleep { clock: self, deadline, id: None }
        }
    }
}

#[cfg(feature = "alloc")]
pub use sleepers::ManualSleep;

#[cfg(all(test, feature = "alloc", not(tollgate_loom)))]
mod tests {
    use super::*;
    use crate::Timer;
    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll};
    use futures_util::task::noop_waker;

    #[test]
    fn sleepers_wake_only_when_their_deadline_passes() {
        let clock = ManualClock::new();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut a = pin!(clock.sleep_until(Instant::from_secs(1)));
        let mut b = pin!(clock.sleep_until(Instant::from_secs(2)));
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.next_deadline(), Some(Instant::from_secs(1)));
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.sleepers(), 1);
        assert_eq!(a.as_mut().poll(&mut cx), Poll::Ready(()));
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert!(clock.advance_to_next_deadline());
        assert_eq!(clock.now(), Instant::from_secs(2));
        assert_eq!(b.as_mut().poll(&mut cx), Poll::Ready(()));
        assert!(!clock.advance_to_next_deadline());
    }

    #[test]
    fn dropped_sleepers_unregister() {
        let clock = ManualClock::new();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        {
            let mut s = pin!(clock.sleep_until(Instant::from_secs(1)));
            assert!(s.as_mut().poll(&mut cx).is_pending());
            assert_eq!(clock.sleepers(), 1);
        }
        assert_eq!(clock.sleepers(), 0);
    }

    #[test]
    fn advance_saturates_and_set_can_go_back() {
        let clock = ManualClock::starting_at(Instant::MAX);
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Instant::MAX);
        clock.set(Instant::from_secs(1));
        assert_eq!(clock.now(), Instant::from_secs(1));
    }
}
