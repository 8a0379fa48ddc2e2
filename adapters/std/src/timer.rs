//! [`StdTimer`]: the [`StdClock`] as a [`Timer`], for async code driven by [`block_on`] — or,
//! through a helper thread, by any other executor.
//!
//! # Why the helper thread stays
//!
//! Nothing blocking in this crate uses it: the blocking [`RateLimiter`] sleeps the calling
//! thread itself, and the blocking [`ModelRateLimiter`]'s futures run under [`block_on`], whose
//! sleeps tell the driver their deadline (`tests/no_helper_thread.rs` checks that neither
//! starts the thread). It exists for the futures of this crate that *other* code polls:
//!
//! - `tollgate_std::AsyncRateLimiter` and the other aliases every adapter exports (the set is
//!   fixed by `tollgate::__adapter_aliases!`), and [`RateLimiter::as_async`], which lets
//!   threads and tasks share one budget. Their futures may be awaited on any executor —
//!   `futures::executor`, a tokio or async-io runtime, a test harness — and a [`StdSleep`]
//!   polled there has nobody else to wake it when its deadline comes.
//! - Sleeps polled *under* [`block_on`] but with a waker that is not `block_on`'s: combinators
//!   that give each child its own waker (`FuturesUnordered`, `join_all` over many futures,
//!   instrumentation wrappers). The sleep cannot tell that case from a foreign executor: both
//!   show a waker it does not know.
//!
//! Without the thread, such a sleep would either never wake (a silent hang of correct code),
//! panic (a crash of correct code, including the combinator case above, under our own
//! `block_on`), or wake itself at once on every poll (a busy loop, one CPU per waiting task).
//! One thread, started only on the first such poll (never, in a program that uses only the
//! blocking limiters or `block_on`), is the cheapest of the four. A program on tokio or
//! async-io should use `tollgate-tokio` / `tollgate-async-std`, whose timers are the
//! runtime's own; the thread is the fallback that keeps the std aliases correct everywhere.
//!
//! [`block_on`]: crate::block_on
//! [`RateLimiter`]: crate::RateLimiter
//! [`RateLimiter::as_async`]: crate::RateLimiter::as_async
//! [`ModelRateLimiter`]: crate::ModelRateLimiter

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;

use tollgate::{Clock, Instant, Timer};

use crate::StdClock;
use crate::block_on::register_deadline;

/// The [`StdClock`] as a [`Timer`]: async limiters on it are what the blocking
/// [`RateLimiter`](crate::RateLimiter) drives with [`block_on`](crate::block_on).
///
/// A [`StdSleep`] polled by [`block_on`](crate::block_on) (directly or through combinators
/// that pass its waker down, such as `join`/`select`) records its deadline with it, and
/// `block_on` parks the thread with `park_timeout` until the earliest one: no extra thread.
///
/// Polled by any other executor, a sleep falls back to one process-wide helper thread
/// (`tollgate-std-timer`, started on first need) that waits for the earliest registered
/// deadline and wakes the waker. So `tollgate_std::AsyncRateLimiter` works under any
/// executor, at the cost of that thread; in a tokio or async-io program prefer the
/// `tollgate-tokio` or `tollgate-async-std` timers, which use the runtime's own timer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StdTimer;

impl StdTimer {
    /// A handle to the process-wide timer.
    pub const fn new() -> Self {
        StdTimer
    }
}

impl Clock for StdTimer {
    #[inline]
    fn now(&self) -> Instant {
        StdClock::new().now()
    }
}

impl Timer for StdTimer {
    type Sleep<'a> = StdSleep;

    fn sleep_until(&self, deadline: Instant) -> StdSleep {
        StdSleep { deadline, fallback: None }
    }
}

/// The future returned by [`StdTimer::sleep_until`]: completes once [`StdClock`] reaches its
/// deadline.
///
/// # Cancel safety
/// Dropping it unregisters it from the helper thread, if it was registered there.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct StdSleep {
    deadline: Instant,
    /// Set once a foreign executor has polled us: our entry in the helper thread's queue.
    fallback: Option<Registration>,
}

impl StdSleep {
    /// The instant this sleep completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for StdSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if StdClock::new().now() >= self.deadline {
            self.fallback = None;
            return Poll::Ready(());
        }
        if register_deadline(cx.waker(), self.deadline) {
            // Our `block_on` will re-poll us by the deadline; a helper-thread entry from an
            // earlier foreign poll is no longer needed.
            self.fallback = None;
            return Poll::Pending;
        }
        let deadline = self.deadline;
        match &mut self.fallback {
            Some(registration) => registration.update(cx.waker()),
            None => self.fallback = Some(Registration::new(deadline, cx.waker())),
        }
        Poll::Pending
    }
}

/// A sleeper's entry in the helper thread's queue; removed when dropped.
#[derive(Debug)]
struct Registration {
    key: (Instant, u64),
}

impl Registration {
    fn new(deadline: Instant, waker: &Waker) -> Self {
        let helper = Helper::get();
        let mut queue = helper.lock();
        let key = (deadline, queue.next_id);
        queue.next_id += 1;
        let earliest = queue.sleepers.keys().next().is_none_or(|first| key < *first);
        queue.sleepers.insert(key, waker.clone());
        let running = queue.running;
        drop(queue);
        if !running {
            // No helper thread could be started: wake at once so the executor polls again.
            // That degrades to polling rather than hanging.
            waker.wake_by_ref();
        } else if earliest {
            helper.changed.notify_one();
        }
        Registration { key }
    }

    fn update(&mut self, waker: &Waker) {
        let helper = Helper::get();
        let mut queue = helper.lock();
        match queue.sleepers.get_mut(&self.key) {
            Some(stored) => {
                if !stored.will_wake(waker) {
                    *stored = waker.clone();
                }
            }
            None => {
                // Fired, but polled again before the clock reached the deadline (the helper's
                // and our reading of the clock race); queue it again.
                drop(queue);
                *self = Registration::new(self.key.0, waker);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(helper) = HELPER.get() {
            helper.lock().sleepers.remove(&self.key);
        }
    }
}

/// The helper thread's shared state.
struct Helper {
    queue: Mutex<Queue>,
    /// Signalled when a sleeper with a new earliest deadline arrives.
    changed: Condvar,
}

struct Queue {
    next_id: u64,
    sleepers: BTreeMap<(Instant, u64), Waker>,
    running: bool,
}

static HELPER: OnceLock<Helper> = OnceLock::new();

impl Helper {
    fn get() -> &'static Helper {
        HELPER.get_or_init(|| {
            let running = thread::Builder::new()
                .name("tollgate-std-timer".into())
                .spawn(|| Helper::get().run())
                .is_ok();
            Helper {
                queue: Mutex::new(Queue { next_id: 0, sleepers: BTreeMap::new(), running }),
                changed: Condvar::new(),
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Critical sections only insert into or remove from a map; a panic elsewhere cannot
        // leave it inconsistent, so poisoning is ignored.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&self) {
        let clock = StdClock::new();
        let mut due = Vec::new();
        let mut queue = self.lock();
        loop {
            let now = clock.now();
            while let Some(entry) = queue.sleepers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                // Wake outside the lock: a waker may poll (and so register) synchronously.
                drop(queue);
                due.drain(..).for_each(Waker::wake);
                queue = self.lock();
                continue;
            }
            queue = match queue.sleepers.keys().next() {
                Some(&(deadline, _)) => {
                    self.changed
                        .wait_timeout(queue, deadline - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
                None => self.changed.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use std::pin::pin;

    fn registered(key: (Instant, u64)) -> bool {
        HELPER.get().is_some_and(|h| h.lock().sleepers.contains_key(&key))
    }

    #[test]
    fn a_foreign_poll_registers_with_the_helper_and_drop_unregisters() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut sleep =
            Box::pin(StdTimer::new().sleep_until(StdClock::new().now() + Duration::from_secs(60)));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        let key = sleep.fallback.as_ref().expect("registered with the helper").key;
        assert!(registered(key));
        assert!(sleep.as_mut().poll(&mut cx).is_pending()); // re-poll keeps one entry
        assert_eq!(sleep.fallback.as_ref().map(|r| r.key), Some(key));
        drop(sleep);
        assert!(!registered(key));
    }

    #[test]
    fn under_block_on_no_helper_entry_is_made() {
        let deadline = StdClock::new().now() + Duration::from_millis(5);
        crate::block_on(async {
            let mut sleep = pin!(StdTimer::new().sleep_until(deadline));
            core::future::poll_fn(|cx| {
                let poll = sleep.as_mut().poll(cx);
                assert!(sleep.fallback.is_none());
                poll
            })
            .await;
        });
        assert!(StdClock::new().now() >= deadline);
    }
}
