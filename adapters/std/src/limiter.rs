//! [`RateLimiter`]: the blocking token-bucket limiter for threads.
//!
//! A blocking wait is never cancelled (a thread cannot be dropped half-way through a call), so
//! it needs none of the async wait machine's care for cancellation: a waiting thread reserves
//! its tokens in the bucket at once and sleeps until the reservation's instant. The async
//! limiter must not do that (a cancelled waiter in the middle of the queue would leave its
//! tokens spent, see the core's `wait.rs`); a thread can.

use core::time::Duration;

use tollgate::{Clock, Error, Instant, InvalidConfig, Rate, TokenBucket};

use crate::park::sleep_until;
use crate::{StdTimer, block_on};

// The core's limiter module (the async limiter and its futures) beside the blocking one.
pub use tollgate::limiter::*;

/// A blocking token-bucket rate limiter: up to `burst` requests at once, then `rate`.
///
/// A call that must wait **reserves its tokens in the bucket and sleeps** until the
/// reservation's instant: one compare-and-swap, then one [`thread::sleep`](std::thread::sleep)
/// (re-checked on the clock, so a wake-up that comes early sleeps again). No lock, no queue,
/// no helper thread, no executor.
///
/// # Fairness
///
/// Threads are served in the order they arrive, across all threads: each reservation extends
/// the bucket's theoretical arrival time by its own tokens, so every reservation's instant is
/// after those of all earlier ones, whatever their sizes. A large request is never starved by
/// small ones, and [`try_acquire`](Self::try_acquire) refuses while any reservation is
/// outstanding. Arrival is the moment of the reservation's compare-and-swap.
///
/// `Send + Sync`; share it with `Arc` or put it in a `static` (the constructors are `const`).
///
/// ```
/// use std::sync::Arc;
/// use std::thread;
/// use tollgate_std::{Rate, RateLimiter};
///
/// static EMAIL: RateLimiter = RateLimiter::per_second(100);
/// EMAIL.acquire();
///
/// let api = Arc::new(RateLimiter::new(Rate::per_second(1_000), 10));
/// let workers: Vec<_> = (0..4)
///     .map(|_| {
///         let api = Arc::clone(&api);
///         thread::spawn(move || {
///             for _ in 0..5 {
///                 api.acquire();
///             }
///         })
///     })
///     .collect();
/// for w in workers {
///     w.join().unwrap();
/// }
/// assert!(api.try_acquire_n(11).is_err()); // more than the burst: never
/// ```
///
/// # Threads and tasks on one budget
///
/// [`as_async`](Self::as_async) is the async limiter on the same bucket, for programs that
/// mix threads and tasks. Its tasks wait in a line; while any task waits there, a thread that
/// must wait joins the same line (driven by [`block_on`] on the calling thread) instead of
/// reserving past it, so nobody is overtaken in either direction. (A thread that reserves in
/// the instant a task becomes the line's head books after the head; if that head is then
/// cancelled, its tokens can no longer be given back exactly and stay spent: one slot is lost,
/// nothing is ever over-admitted.)
#[derive(Debug)]
pub struct RateLimiter {
    inner: tollgate::AsyncRateLimiter<StdTimer>,
}

impl RateLimiter {
    /// `n` requests per second with a burst of `n` (at least 1), as the Python seed does.
    ///
    /// `const`, so it can initialise a `static`.
    ///
    /// # Panics
    /// If `n` is 0 (at compile time in a `static`); see [`RateLimiter::try_new`] and
    /// [`Rate::try_per_second`] for values read at run time.
    pub const fn per_second(n: u32) -> Self {
        let rate = Rate::per_second(n);
        Self::new(rate, rate.default_burst())
    }

    /// A limiter of `rate` with room for `burst` requests at once.
    ///
    /// `const`, so it can initialise a `static`:
    ///
    /// ```
    /// use tollgate_std::{Rate, RateLimiter};
    ///
    /// static UPLOADS: RateLimiter = RateLimiter::new(Rate::per_minute(30), 5);
    /// assert_eq!(UPLOADS.available(), 5);
    /// ```
    ///
    /// # Panics
    /// If `burst` is 0 or not below 2^61 (at compile time in a `static`); see
    /// [`RateLimiter::try_new`].
    pub const fn new(rate: Rate, burst: u64) -> Self {
        Self { inner: tollgate::AsyncRateLimiter::with_timer(rate, burst, StdTimer::new()) }
    }

    /// A limiter, or an error if `burst` is 0 or not below 2^61.
    ///
    /// ```
    /// use tollgate_std::{Rate, RateLimiter};
    ///
    /// assert!(RateLimiter::try_new(Rate::per_second(5), 0).is_err());
    /// assert!(RateLimiter::try_new(Rate::per_second(5), 5).is_ok());
    /// ```
    pub fn try_new(rate: Rate, burst: u64) -> Result<Self, InvalidConfig> {
        Ok(Self {
            inner: tollgate::AsyncRateLimiter::try_with_timer(rate, burst, StdTimer::new())?,
        })
    }

    /// Blocks until one token is available and takes it.
    ///
    /// If the token could only come after the end of the clock (584 years) or past the
    /// 146-year reservation horizon, it blocks forever rather than go ahead without a token;
    /// use [`acquire_within`](Self::acquire_within) to be told instead.
    pub fn acquire(&self) {
        // One token never exceeds the burst (≥ 1): the only failure is "never".
        if self.acquire_n(1).is_err() {
            sleep_until(Instant::MAX);
        }
    }

    /// Blocks until `n` tokens are available and takes them together.
    ///
    /// ```
    /// use tollgate_std::{Error, Rate, RateLimiter};
    ///
    /// let limiter = RateLimiter::new(Rate::per_second(1_000), 3);
    /// limiter.acquire_n(3)?; // the burst: at once
    /// limiter.acquire_n(2)?; // sleeps about 2 ms
    /// assert!(matches!(limiter.acquire_n(4), Err(Error::InsufficientCapacity { .. })));
    /// # Ok::<_, Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] at once if `n > burst`: waiting would never help;
    /// [`Error::MaxWaitExceeded`] at once if the tokens can never come (after the end of the
    /// clock, or past the 146-year reservation horizon).
    pub fn acquire_n(&self, n: u64) -> Result<(), Error> {
        self.wait(n, Bound::Forever)
    }

    /// Blocks for one token unless that would take longer than `max_wait`; see
    /// [`acquire_n_within`](Self::acquire_n_within).
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`] with the instant the token would be ready.
    pub fn acquire_within(&self, max_wait: Duration) -> Result<(), Error> {
        self.acquire_n_within(1, max_wait)
    }

    /// Blocks for `n` tokens unless that would take longer than `max_wait`, in which case it
    /// fails at once, taking nothing (load shedding: the decision is made up front, not
    /// after sleeping). `max_wait = 0` admits exactly when the tokens are free now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_std::{Error, Rate, RateLimiter};
    ///
    /// let limiter = RateLimiter::new(Rate::per_second(1), 1);
    /// limiter.acquire();
    /// let refused = limiter.acquire_n_within(1, Duration::from_millis(10));
    /// assert!(matches!(refused, Err(Error::MaxWaitExceeded { .. })));
    /// ```
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`] with the instant the tokens would be ready, or
    /// [`Error::InsufficientCapacity`] if `n > burst`.
    pub fn acquire_n_within(&self, n: u64, max_wait: Duration) -> Result<(), Error> {
        self.wait(n, Bound::Within(max_wait))
    }

    /// Blocks for one token unless it is not ready by `deadline`; see
    /// [`acquire_n_before`](Self::acquire_n_before).
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`].
    pub fn acquire_before(&self, deadline: Instant) -> Result<(), Error> {
        self.acquire_n_before(1, deadline)
    }

    /// Blocks for `n` tokens unless they are not ready by `deadline` (an instant of
    /// [`StdClock`](crate::StdClock)), in which case it fails at once, taking nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_std::{Clock, Error, Rate, RateLimiter, StdClock};
    ///
    /// let limiter = RateLimiter::new(Rate::per_second(100), 1);
    /// let deadline = StdClock::new().now() + Duration::from_millis(50);
    /// limiter.acquire_n_before(1, deadline)?; // free now
    /// limiter.acquire_n_before(1, deadline)?; // ready in about 10 ms: sleeps
    /// # Ok::<_, Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`] or [`Error::InsufficientCapacity`].
    pub fn acquire_n_before(&self, n: u64, deadline: Instant) -> Result<(), Error> {
        self.wait(n, Bound::Before(deadline))
    }

    /// Every waiting form: reserve (or refuse up front, taking nothing), then sleep until the
    /// reservation's instant. The bound and the reservation share one clock reading, so a
    /// zero `max_wait` admits exactly when the tokens are free at that reading.
    fn wait(&self, n: u64, bound: Bound) -> Result<(), Error> {
        if self.inner.waiters() > 0 {
            // Tasks of `as_async` are waiting in line: joining the line keeps them and us in
            // arrival order, where a reservation would overtake those not yet at its head.
            return block_on(match bound {
                Bound::Forever => self.inner.acquire_n(n),
                Bound::Within(max_wait) => self.inner.acquire_n_within(n, max_wait),
                Bound::Before(deadline) => self.inner.acquire_n_before(n, deadline),
            });
        }
        let bucket = self.inner.bucket();
        let now = self.inner.timer().now();
        let reservation = match bound {
            Bound::Forever => bucket.reserve_at(n, now),
            Bound::Within(max_wait) => bucket.reserve_within_at(n, now, max_wait),
            Bound::Before(deadline) => bucket.reserve_before_at(n, now, deadline),
        }?;
        // Never cancelled from here on: the tokens are ours once the instant comes.
        sleep_until(reservation.ready_at());
        Ok(())
    }

    /// Takes one token if available now; never blocks.
    ///
    /// # Errors
    /// [`Error::RateLimited`] with the instant the token will be available.
    #[inline]
    pub fn try_acquire(&self) -> Result<(), Error> {
        self.inner.try_acquire()
    }

    /// Takes `n` tokens if all are available now; never blocks.
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] if `n > burst`, [`Error::RateLimited`] otherwise.
    #[inline]
    pub fn try_acquire_n(&self, n: u64) -> Result<(), Error> {
        self.inner.try_acquire_n(n)
    }

    /// Whole tokens available now.
    pub fn available(&self) -> u64 {
        self.inner.available()
    }

    /// The configured rate.
    pub fn rate(&self) -> Rate {
        self.inner.rate()
    }

    /// The burst capacity.
    pub fn burst(&self) -> u64 {
        self.inner.burst()
    }

    /// The underlying bucket, for `*_at` calls with an explicit time.
    pub fn bucket(&self) -> &TokenBucket {
        self.inner.bucket()
    }

    /// The async limiter on this one's bucket: the same budget, for code that mixes threads
    /// and async tasks (see [Threads and tasks on one budget](Self#threads-and-tasks-on-one-budget)).
    /// Awaited outside [`block_on`], its sleeps use [`StdTimer`]'s helper thread.
    pub fn as_async(&self) -> &tollgate::AsyncRateLimiter<StdTimer> {
        &self.inner
    }
}

impl From<tollgate::AsyncRateLimiter<StdTimer>> for RateLimiter {
    fn from(inner: tollgate::AsyncRateLimiter<StdTimer>) -> Self {
        Self { inner }
    }
}

/// How long a blocking wait may take.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Forever,
    Within(Duration),
    Before(Instant),
}
