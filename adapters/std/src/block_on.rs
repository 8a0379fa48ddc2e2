//! [`block_on`]: runs a future to completion on the calling thread, parking between polls.
//!
//! This is how the blocking model limiter reuses the async core: it builds the same futures as
//! the async adapters and drives them here, so there is one implementation of that waiting
//! logic. (The blocking `RateLimiter` needs no futures: it reserves and sleeps; it comes here
//! only to join the async line when tasks of `as_async` are waiting in it.)

use core::cell::Cell;
use core::future::Future;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};
use std::pin::pin;
use std::sync::Arc;
use std::task::Wake;
use std::thread::{self, Thread};

use tollgate::{Clock, Instant};

use crate::StdClock;

/// Runs `future` to completion on the calling thread and returns its output.
///
/// Between polls the thread sleeps: it parks until the future's waker is called, or — when the
/// future is waiting on a [`StdTimer`](crate::StdTimer) sleep — with
/// [`park_timeout`](std::thread::park_timeout) until the earliest such deadline. There is no
/// busy loop and no helper thread on that path. Any other waker source works too (channels,
/// other threads, I/O reactors that run on their own threads).
///
/// Calls may nest (a future may call `block_on` itself); each level has its own waker.
///
/// # Panics
/// Only if `future` panics; the panic propagates to the caller.
///
/// ```
/// use std::time::Duration;
/// use tollgate_std::{block_on, AsyncRateLimiter, Rate};
///
/// // The async limiter with the std timer, driven on this thread: the same budget a
/// // blocking `RateLimiter` would use.
/// let limiter = AsyncRateLimiter::new(Rate::per_second(100), 1);
/// block_on(async {
///     limiter.acquire().await;
///     limiter.acquire().await; // parks the thread for about 10 ms
/// });
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let signal = Signal::take();
    let waker = Waker::from(Arc::clone(&signal));
    let mut cx = Context::from_waker(&waker);
    let clock = StdClock::new();
    let output = loop {
        // A wake that lands after this point and before the poll finishes makes us poll again
        // instead of parking: the flag, not the park token, carries it.
        signal.notified.store(false, Ordering::Release);
        let (poll, deadline) = Driver::enter(&signal, || future.as_mut().poll(&mut cx));
        if let Poll::Ready(output) = poll {
            break output;
        }
        // Park until woken or until the earliest timer deadline, whichever comes first.
        // `park`/`park_timeout` may return spuriously, hence the loop.
        while !signal.notified.load(Ordering::Acquire) {
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = clock.now();
                    if now >= deadline {
                        break;
                    }
                    thread::park_timeout(deadline - now);
                }
            }
        }
    };
    drop(waker);
    signal.give_back();
    output
}

/// Called by a waker: sets the flag and unparks the `block_on` thread.
#[derive(Debug)]
struct Signal {
    thread: Thread,
    notified: AtomicBool,
}

thread_local! {
    /// One spare signal per thread, so a `block_on` whose future is ready at once (a token is
    /// available) does not allocate.
    static SPARE: Cell<Option<Arc<Signal>>> = const { Cell::new(None) };

    /// The `block_on` polling on this thread right now, if any.
    static DRIVER: Cell<Driver> = const { Cell::new(Driver::NONE) };
}

impl Signal {
    fn take() -> Arc<Signal> {
        // A nested `block_on` finds no spare (the outer one holds it) and gets its own, so a
        // wake meant for one level is never consumed by the other.
        SPARE.try_with(Cell::take).ok().flatten().unwrap_or_else(|| {
            Arc::new(Signal { thread: thread::current(), notified: AtomicBool::new(false) })
        })
    }

    fn give_back(self: Arc<Self>) {
        // During thread-local destruction there is nowhere to put it; dropping it is fine.
        let _ = SPARE.try_with(|spare| spare.set(Some(self)));
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.thread.unpark();
        }
    }
}

/// What a `StdSleep` needs to know about the `block_on` currently polling on its thread.
#[derive(Clone, Copy)]
struct Driver {
    /// Address of the driving `block_on`'s signal: the data pointer of its waker.
    signal: *const (),
    /// Earliest deadline registered during the current poll.
    deadline: Option<Instant>,
}

impl Driver {
    const NONE: Driver = Driver { signal: core::ptr::null(), deadline: None };

    /// Polls with this `block_on` installed as the thread's driver and returns the poll result
    /// with the earliest deadline a sleep registered. The previous driver (an outer
    /// `block_on`) is restored afterwards, also if `poll` panics.
    fn enter<R>(signal: &Arc<Signal>, poll: impl FnOnce() -> R) -> (R, Option<Instant>) {
        struct Restore(Driver);
        impl Drop for Restore {
            fn drop(&mut self) {
                let _ = DRIVER.try_with(|d| d.set(self.0));
            }
        }
        let mine = Driver { signal: Arc::as_ptr(signal).cast(), deadline: None };
        let outer = DRIVER.try_with(|d| d.replace(mine)).unwrap_or(Driver::NONE);
        let restore = Restore(outer);
        let result = poll();
        let deadline = DRIVER.try_with(|d| d.get().deadline).ok().flatten();
        drop(restore);
        (result, deadline)
    }
}

/// Records `deadline` with the `block_on` that owns `waker`, if that `block_on` is polling on
/// this thread right now. Returns `false` for any other waker: the sleep is then being polled
/// by another executor (or by a combinator with its own wakers, such as `FuturesUnordered`),
/// which would not re-poll it when our park times out.
pub(crate) fn register_deadline(waker: &Waker, deadline: Instant) -> bool {
    DRIVER
        .try_with(|d| {
            let mut driver = d.get();
            if driver.signal.is_null() || driver.signal != waker.data() {
                return false;
            }
            driver.deadline = Some(driver.deadline.map_or(deadline, |d| d.min(deadline)));
            d.set(driver);
            true
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn ready_futures_return_at_once() {
        assert_eq!(block_on(async { 7 }), 7);
    }

    #[test]
    fn a_wake_from_another_thread_unparks() {
        let done = Arc::new(AtomicBool::new(false));
        let waiting = WaitFlag { done: Arc::clone(&done), spawned: false };
        let start = std::time::Instant::now();
        block_on(waiting);
        assert!(done.load(Ordering::Acquire));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    /// Pending until another thread sets `done` (after 20 ms) and wakes it.
    struct WaitFlag {
        done: Arc<AtomicBool>,
        spawned: bool,
    }

    impl Future for WaitFlag {
        type Output = ();
        fn poll(mut self: core::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.done.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if !self.spawned {
                self.spawned = true;
                let (done, waker) = (Arc::clone(&self.done), cx.waker().clone());
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(20));
                    done.store(true, Ordering::Release);
                    waker.wake();
                });
            }
            Poll::Pending
        }
    }

    #[test]
    fn nested_block_on_keeps_its_own_driver() {
        let out = block_on(async { block_on(async { 1 }) + block_on(async { 2 }) });
        assert_eq!(out, 3);
        assert!(DRIVER.with(|d| d.get().signal.is_null()));
    }
}
