//! [`RateLimiter`]: the blocking token-bucket limiter for threads.

use std::time::Duration;

use tollgate::{Error, Instant, InvalidConfig, Rate, TokenBucket};

use crate::{StdTimer, block_on};

/// A blocking token-bucket rate limiter: up to `burst` requests at once, then `rate`.
///
/// It is [`tollgate::AsyncRateLimiter`] on the [`StdTimer`], with each waiting call driven to
/// completion on the calling thread by [`block_on`]: the same reservation logic, served in
/// arrival order across all threads, with the thread parked (not spinning) until its turn.
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
    pub fn acquire(&self) {
        // A token may already be there: skip the driver entirely on that path.
        if self.inner.try_acquire().is_ok() {
            return;
        }
        block_on(self.inner.acquire());
    }

    /// Blocks until `n` tokens are available and takes them together.
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] at once if `n > burst`: waiting would never help.
    pub fn acquire_n(&self, n: u64) -> Result<(), Error> {
        match self.inner.try_acquire_n(n) {
            Err(Error::RateLimited(_)) => block_on(self.inner.acquire_n(n)),
            other => other,
        }
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
        // `block_on` polls at once: the budget and the up-front check share that reading.
        block_on(self.inner.acquire_n_within(n, max_wait))
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
    /// # Errors
    /// [`Error::MaxWaitExceeded`] or [`Error::InsufficientCapacity`].
    pub fn acquire_n_before(&self, n: u64, deadline: Instant) -> Result<(), Error> {
        block_on(self.inner.acquire_n_before(n, deadline))
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

    /// The async limiter this one drives: the same budget, for code that mixes threads and
    /// async tasks. Awaited outside [`block_on`], its sleeps use [`StdTimer`]'s helper thread.
    pub fn as_async(&self) -> &tollgate::AsyncRateLimiter<StdTimer> {
        &self.inner
    }
}

impl From<tollgate::AsyncRateLimiter<StdTimer>> for RateLimiter {
    fn from(inner: tollgate::AsyncRateLimiter<StdTimer>) -> Self {
        Self { inner }
    }
}
