//! [`AsyncRateLimiter`]: requests per second with a burst, waited for asynchronously on any
//! [`Timer`] — tokio, async-io, embassy, or a [`ManualClock`](crate::ManualClock) in tests.
//!
//! Waiting is *queue first, reserve at the head* (see `wait.rs`): a caller that cannot go at
//! once joins a FIFO line; only the first in line holds a reservation and sleeps until its
//! instant. Waiters are served in arrival order, each is woken once, a large request is never
//! starved by small ones, and a waiter dropped anywhere in the line costs nothing.

use core::time::Duration;

#[cfg(feature = "alloc")]
use alloc::sync::Arc;

// The futures the limiter's methods return, named beside it.
pub use crate::acquire::AcquireTokens;
#[cfg(feature = "alloc")]
pub use crate::acquire::AcquireTokensOwned;
use crate::error::{Error, InvalidConfig};
use crate::sync::const_fn;
use crate::wait::{Limit, WaitLine};
pub use crate::wrap::{Call, CallN, NeverWithoutToken, Run, RunN};
use crate::{Clock, Instant, Rate, Refusal, Timer, TokenBucket};

/// An async token-bucket rate limiter: up to `burst` requests at once, then `rate`.
///
/// Needs no allocator and works in a `static`. Share it by reference, `static` or `Arc`.
/// The runtime adapters export it with their timer filled in, so
/// `tollgate_tokio::AsyncRateLimiter::per_second(10)` needs no type parameter.
///
/// ```
/// use core::time::Duration;
/// use tollgate::{AsyncRateLimiter, Clock, Instant, ManualClock, Rate};
///
/// let clock = ManualClock::new();
/// let limiter = AsyncRateLimiter::with_timer(Rate::per_second(2), 2, &clock);
/// futures_executor::block_on(async {
///     limiter.acquire().await; // the burst: no wait
///     limiter.acquire().await;
///     assert!(limiter.try_acquire().is_err()); // empty until 500 ms
///     clock.advance(Duration::from_millis(500));
///     limiter.acquire().await;
/// });
/// assert_eq!(clock.now(), Instant::from_millis(500));
/// ```
///
/// # Fairness and cancellation
///
/// Callers that must wait are served strictly in arrival order, and [`try_acquire`] refuses
/// while anyone waits, so nobody is overtaken. Every acquire future is cancel safe *and free
/// to cancel*: dropped at any await point (a `timeout`, a `select!`, a client that hangs up),
/// it leaves the line and gives back whatever it had reserved, so a storm of timeouts costs
/// the limiter none of its rate.
///
/// [`try_acquire`]: AsyncRateLimiter::try_acquire
#[derive(Debug)]
pub struct AsyncRateLimiter<T> {
    bucket: TokenBucket,
    pub(crate) line: WaitLine,
    timer: T,
}

impl<T> AsyncRateLimiter<T> {
    const_fn! {
        /// A limiter of `rate` with room for `burst` requests at once, waiting on `timer`.
        ///
        /// # Panics
        /// If `burst` is 0 or not below 2^61 (at compile time in const context); see
        /// [`AsyncRateLimiter::try_with_timer`].
        pub fn with_timer(rate: Rate, burst: u64, timer: T) -> Self {
            Self { bucket: TokenBucket::new(rate, burst), line: WaitLine::new(), timer }
        }
    }

    /// A limiter, or an error if `burst` is 0 or not below 2^61.
    pub fn try_with_timer(rate: Rate, burst: u64, timer: T) -> Result<Self, InvalidConfig> {
        Ok(Self { bucket: TokenBucket::try_new(rate, burst)?, line: WaitLine::new(), timer })
    }

    /// A limiter around an existing bucket (the keyed limiter's key that someone waits on).
    #[cfg(feature = "alloc")]
    pub(crate) fn from_bucket(bucket: TokenBucket, timer: T) -> Self {
        Self { bucket, line: WaitLine::new(), timer }
    }

    /// The underlying bucket, for `*_at` calls with an explicit time.
    ///
    /// Tokens taken from it directly bypass the limiter's waiting line (and its fairness).
    pub fn bucket(&self) -> &TokenBucket {
        &self.bucket
    }

    /// The timer this limiter waits on.
    pub fn timer(&self) -> &T {
        &self.timer
    }

    /// The configured rate.
    pub fn rate(&self) -> Rate {
        self.bucket.rate()
    }

    /// The burst capacity.
    pub fn burst(&self) -> u64 {
        self.bucket.burst()
    }
}

impl<T: Default> AsyncRateLimiter<T> {
    /// `n` requests per second with a burst of `n` (at least 1), as the Python seed does.
    ///
    /// # Panics
    /// If `n` is 0; see [`AsyncRateLimiter::try_new`].
    pub fn per_second(n: u32) -> Self {
        let rate = Rate::per_second(n);
        Self::with_timer(rate, rate.default_burst(), T::default())
    }

    /// `rate` with room for `burst` at once. Panics if `burst` is 0; see
    /// [`AsyncRateLimiter::try_new`].
    pub fn new(rate: Rate, burst: u64) -> Self {
        Self::with_timer(rate, burst, T::default())
    }

    /// `rate` with room for `burst` at once, or an error for a zero or huge burst.
    pub fn try_new(rate: Rate, burst: u64) -> Result<Self, InvalidConfig> {
        Self::try_with_timer(rate, burst, T::default())
    }
}

impl<T: Clock> AsyncRateLimiter<T> {
    /// Takes one token if available now; never waits.
    ///
    /// # Errors
    /// [`Error::RateLimited`], whose [`Refusal`] says when the token will be available.
    pub fn try_acquire(&self) -> Result<(), Error> {
        self.try_acquire_n(1)
    }

    /// Takes `n` tokens if all are available now and nobody is waiting; never waits.
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] if `n > burst`; [`Error::RateLimited`] otherwise, whose
    /// [`Refusal`] says when the tokens could be ready (after the callers already waiting).
    pub fn try_acquire_n(&self, n: u64) -> Result<(), Error> {
        let now = self.timer.now();
        if self.line.is_empty() {
            return self.bucket.try_acquire_at(n, now);
        }
        if n > self.bucket.burst() {
            return Err(Error::InsufficientCapacity {
                requested: n,
                capacity: self.bucket.burst(),
            });
        }
        // Free tokens belong to the line: taking them would overtake its waiters.
        Err(Error::RateLimited(Refusal::at(self.line.estimate_ready_at(&self.bucket, n, now))))
    }

    /// Whole tokens available now.
    pub fn available(&self) -> u64 {
        self.bucket.available_at(self.timer.now())
    }

    /// Callers waiting for tokens right now (the one holding a reservation included).
    pub fn waiters(&self) -> usize {
        self.line.waiters()
    }
}

impl<T: Timer> AsyncRateLimiter<T> {
    /// Waits for one token.
    ///
    /// If the token could only come after the end of the clock (584 years) or past the
    /// 146-year reservation horizon, the future never completes: it does not go ahead without
    /// a token. Use [`acquire_within`](Self::acquire_within) to be told instead.
    ///
    /// # Cancel safety
    /// Cancel safe, and free: dropped at any point, the future leaves the waiting line and
    /// gives back any reservation it held, so nobody waits longer and no token is lost.
    pub async fn acquire(&self) {
        // One token never exceeds the burst (≥ 1), so the only failure is "never": then the
        // honest answer is to wait forever rather than proceed without a token.
        if self.acquire_n(1).await.is_err() {
            core::future::pending::<()>().await;
        }
    }

    /// Waits for `n` tokens, taken together.
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] at once if `n > burst`: waiting would never help;
    /// [`Error::MaxWaitExceeded`] with `ready_at == Instant::MAX` if the tokens can never come.
    ///
    /// # Cancel safety
    /// As [`AsyncRateLimiter::acquire`].
    pub fn acquire_n(&self, n: u64) -> AcquireTokens<'_, T> {
        AcquireTokens::new(self, n, Limit::Forever)
    }

    /// Waits for one token unless that takes longer than `max_wait`; see
    /// [`acquire_n_within`](Self::acquire_n_within).
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`] with the instant the token would be ready.
    ///
    /// # Cancel safety
    /// As [`AsyncRateLimiter::acquire`].
    pub fn acquire_within(&self, max_wait: Duration) -> AcquireTokens<'_, T> {
        self.acquire_n_within(1, max_wait)
    }

    /// Waits for `n` tokens unless that takes longer than `max_wait`, in which case it fails
    /// at once, taking nothing (load shedding).
    ///
    /// `max_wait` counts from the first poll, and the up-front check uses that same clock
    /// reading: `max_wait = 0` admits exactly when the tokens are free now and nobody waits.
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`] with the instant the tokens would be ready, or
    /// [`Error::InsufficientCapacity`].
    ///
    /// # Cancel safety
    /// As [`AsyncRateLimiter::acquire`].
    pub fn acquire_n_within(&self, n: u64, max_wait: Duration) -> AcquireTokens<'_, T> {
        AcquireTokens::new(self, n, Limit::Within(max_wait))
    }

    /// Waits for one token unless it is not ready by `deadline`; see
    /// [`acquire_n_before`](Self::acquire_n_before).
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`].
    ///
    /// # Cancel safety
    /// As [`AsyncRateLimiter::acquire`].
    pub fn acquire_before(&self, deadline: Instant) -> AcquireTokens<'_, T> {
        self.acquire_n_before(1, deadline)
    }

    /// Waits for `n` tokens unless they are not ready by `deadline` (an instant of this
    /// limiter's clock), in which case it fails at once, taking nothing.
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`] or [`Error::InsufficientCapacity`].
    ///
    /// # Cancel safety
    /// As [`AsyncRateLimiter::acquire`].
    pub fn acquire_n_before(&self, n: u64, deadline: Instant) -> AcquireTokens<'_, T> {
        AcquireTokens::new(self, n, Limit::Before(deadline))
    }
}

/// `'static` forms for spawned tasks and services that own their limiter.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
impl<T: Timer + 'static> AsyncRateLimiter<T> {
    /// [`acquire`](Self::acquire) on an `Arc`ed limiter: the future owns the `Arc`.
    ///
    /// # Cancel safety
    /// As [`AsyncRateLimiter::acquire`].
    pub async fn acquire_owned(self: Arc<Self>) {
        if self.acquire_n_owned(1).await.is_err() {
            core::future::pending::<()>().await;
        }
    }

    /// [`acquire_n`](Self::acquire_n) on an `Arc`ed limiter.
    ///
    /// # Errors
    /// As [`acquire_n`](Self::acquire_n).
    pub fn acquire_n_owned(self: Arc<Self>, n: u64) -> AcquireTokensOwned<T> {
        AcquireTokensOwned::new(self, n, Limit::Forever)
    }

    /// [`acquire_within`](Self::acquire_within) on an `Arc`ed limiter.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use core::time::Duration;
    /// use tollgate::{AsyncRateLimiter, Error, ManualClock, Rate};
    ///
    /// let limiter = Arc::new(AsyncRateLimiter::with_timer(Rate::per_second(1), 1, ManualClock::new()));
    /// futures_executor::block_on(async {
    ///     limiter.clone().acquire_within_owned(Duration::ZERO).await.unwrap();
    ///     let late = limiter.clone().acquire_within_owned(Duration::from_millis(10)).await;
    ///     assert!(matches!(late, Err(Error::MaxWaitExceeded { .. })));
    /// });
    /// ```
    ///
    /// # Errors
    /// As [`acquire_within`](Self::acquire_within).
    pub fn acquire_within_owned(self: Arc<Self>, max_wait: Duration) -> AcquireTokensOwned<T> {
        self.acquire_n_within_owned(1, max_wait)
    }

    /// [`acquire_before`](Self::acquire_before) on an `Arc`ed limiter.
    ///
    /// # Errors
    /// As [`acquire_before`](Self::acquire_before).
    pub fn acquire_before_owned(self: Arc<Self>, deadline: Instant) -> AcquireTokensOwned<T> {
        self.acquire_n_before_owned(1, deadline)
    }

    /// [`acquire_n_within`](Self::acquire_n_within) on an `Arc`ed limiter.
    ///
    /// # Errors
    /// As [`acquire_n_within`](Self::acquire_n_within).
    pub fn acquire_n_within_owned(
        self: Arc<Self>,
        n: u64,
        max_wait: Duration,
    ) -> AcquireTokensOwned<T> {
        AcquireTokensOwned::new(self, n, Limit::Within(max_wait))
    }

    /// [`acquire_n_before`](Self::acquire_n_before) on an `Arc`ed limiter.
    ///
    /// # Errors
    /// As [`acquire_n_before`](Self::acquire_n_before).
    pub fn acquire_n_before_owned(
        self: Arc<Self>,
        n: u64,
        deadline: Instant,
    ) -> AcquireTokensOwned<T> {
        AcquireTokensOwned::new(self, n, Limit::Before(deadline))
    }
}

#[cfg(all(test, feature = "alloc", not(tollgate_loom)))]
mod tests {
    use super::*;
    use crate::ManualClock;
    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll};
    use futures_util::task::noop_waker;

    #[test]
    fn per_second_has_the_seed_burst() {
        let l: AsyncRateLimiter<ManualClock> = AsyncRateLimiter::per_second(10);
        assert_eq!(l.burst(), 10);
        assert_eq!(l.available(), 10);
        let l: AsyncRateLimiter<ManualClock> = AsyncRateLimiter::new(Rate::per_minute(30), 1);
        assert_eq!(l.burst(), 1);
        assert!(AsyncRateLimiter::<ManualClock>::try_new(Rate::per_second(1), 0).is_err());
    }

    #[test]
    fn n_above_burst_fails_without_waiting() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(3), 3, &clock);
        let r = futures_executor::block_on(l.acquire_n(4));
        assert_eq!(r, Err(Error::InsufficientCapacity { requested: 4, capacity: 3 }));
    }

    #[test]
    fn a_cancelled_waiter_gives_its_token_back() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        l.try_acquire().unwrap();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        {
            let mut waiting = pin!(l.acquire());
            assert!(waiting.as_mut().poll(&mut cx).is_pending());
            assert_eq!(clock.sleepers(), 1);
        }
        assert_eq!(clock.sleepers(), 0);
        // Back as if it never came: the next token is ready at 1 s, not 2 s.
        let mut next = pin!(l.acquire());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.next_deadline(), Some(Instant::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn max_wait_sheds_load_up_front() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        l.try_acquire().unwrap();
        let r = futures_executor::block_on(l.acquire_n_within(1, Duration::from_millis(10)));
        assert_eq!(r, Err(Error::MaxWaitExceeded { ready_at: Instant::from_secs(1) }));
        assert_eq!(clock.sleepers(), 0);
    }

    /// A timer that claims to be done before the deadline must not let a waiter through.
    #[test]
    fn an_early_timer_does_not_admit_early() {
        struct EarlyTimer<'a>(&'a ManualClock);
        impl Clock for EarlyTimer<'_> {
            fn now(&self) -> Instant {
                self.0.now()
            }
        }
        impl Timer for EarlyTimer<'_> {
            type Sleep<'b>
                = <ManualClock as Timer>::Sleep<'b>
            where
                Self: 'b;
            fn sleep_until(&self, deadline: Instant) -> Self::Sleep<'_> {
                // Fires half way.
                let half =
                    Instant::from_nanos(deadline.as_nanos() / 2 + self.0.now().as_nanos() / 2);
                self.0.sleep_until(half)
            }
        }
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, EarlyTimer(&clock));
        l.try_acquire().unwrap();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut waiting = pin!(l.acquire());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_millis(500));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_millis(499));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_millis(1));
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(()));
    }
}
