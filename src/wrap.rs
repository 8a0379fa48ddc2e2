//! Function wrappers on [`AsyncRateLimiter`]: run a future, or make every call of an async
//! closure, wait for a token first — or for `n` tokens, for calls that cost more than one.
//!
//! The futures here are named types (no boxing, no allocator), so they can be stored in structs
//! and spawned; they are `Send` when the limiter's timer and the wrapped future are.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::wait::{Limit, TokenWait};
use crate::{AsyncRateLimiter, Error, Timer};

pin_project! {
    /// The future returned by [`AsyncRateLimiter::run_n`]: waits for `n` tokens, then runs
    /// the wrapped future; `Err` (and the future never polled) if the tokens can never come.
    #[must_use = "futures do nothing unless polled"]
    pub struct RunN<'a, T: Timer, F> {
        #[pin]
        wait: TokenWait<'a, T>,
        admitted: bool,
        #[pin]
        future: F,
    }
}

impl<T: Timer, F: Future> Future for RunN<'_, T, F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !*this.admitted {
            ready!(this.wait.as_mut().poll_wait(cx))?;
            *this.admitted = true;
        }
        this.future.poll(cx).map(Ok)
    }
}

pin_project! {
    /// A token-waiting future with the refusal policy of `acquire()`: it completes with its
    /// inner future's `Ok` output and, if the tokens can never come (past the end of the
    /// clock), waits forever rather than go ahead without them. [`Run`] and [`Call`] are it
    /// around [`RunN`] and [`CallN`].
    #[must_use = "futures do nothing unless polled"]
    pub struct NeverWithoutToken<F> {
        #[pin]
        inner: F,
        never: bool,
    }
}

impl<F> NeverWithoutToken<F> {
    fn new(inner: F) -> Self {
        Self { inner, never: false }
    }
}

impl<F: Future<Output = Result<O, Error>>, O> Future for NeverWithoutToken<F> {
    type Output = O;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        let this = self.project();
        if *this.never {
            return Poll::Pending;
        }
        match ready!(this.inner.poll(cx)) {
            Ok(output) => Poll::Ready(output),
            Err(_) => {
                *this.never = true;
                Poll::Pending
            }
        }
    }
}

/// The future returned by [`AsyncRateLimiter::run`]: waits for a token, then runs the wrapped
/// future.
pub type Run<'a, T, F> = NeverWithoutToken<RunN<'a, T, F>>;

pin_project! {
    /// The future returned by a closure from [`AsyncRateLimiter::wrap_n`] or
    /// [`AsyncRateLimiter::wrap_by`]: waits for the call's tokens, then calls the wrapped
    /// function and awaits its future; `Err` (and the function never called) if the tokens
    /// can never come.
    #[must_use = "futures do nothing unless polled"]
    pub struct CallN<'a, T: Timer, F, A, Fut> {
        #[pin]
        wait: TokenWait<'a, T>,
        // Taken when the tokens are granted.
        call: Option<(F, A)>,
        #[pin]
        future: Option<Fut>,
    }
}

impl<T, F, A, Fut> Future for CallN<'_, T, F, A, Fut>
where
    T: Timer,
    F: FnOnce(A) -> Fut,
    Fut: Future,
{
    type Output = Result<Fut::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if this.future.is_none() {
            ready!(this.wait.as_mut().poll_wait(cx))?;
            let (f, arg) = this.call.take().expect("`Call` polled after completion");
            this.future.set(Some(f(arg)));
        }
        match this.future.as_pin_mut() {
            Some(future) => future.poll(cx).map(Ok),
            None => unreachable!("set just above"),
        }
    }
}

/// The future returned by a closure from [`AsyncRateLimiter::wrap`]: waits for a token, then
/// calls the wrapped function and awaits its future.
pub type Call<'a, T, F, A, Fut> = NeverWithoutToken<CallN<'a, T, F, A, Fut>>;

impl<T: Timer> AsyncRateLimiter<T> {
    /// Waits for one token, then runs `future` to completion and returns its output.
    ///
    /// `future` is not polled before the token is granted, so nothing in an `async` block runs
    /// early. The wait starts when the returned future is first polled.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::{AsyncRateLimiter, ManualClock, Rate};
    ///
    /// let clock = ManualClock::new();
    /// let limiter = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
    /// let answer = futures_executor::block_on(limiter.run(async { 6 * 7 }));
    /// assert_eq!(answer, 42);
    /// assert!(limiter.try_acquire().is_err()); // the run took the token
    /// ```
    ///
    /// As with [`acquire`](AsyncRateLimiter::acquire), a token that could only come after the
    /// end of the clock is never taken and the call never runs.
    ///
    /// # Cancel safety
    /// Dropped while waiting, the token is given back as by [`AsyncRateLimiter::acquire`] and
    /// `future` is dropped unpolled. Dropped later, the token stays spent and `future` is
    /// dropped wherever it was (its own cancel safety applies).
    pub fn run<F: Future>(&self, future: F) -> Run<'_, T, F> {
        NeverWithoutToken::new(self.run_n(1, future))
    }

    /// Waits for `n` tokens (a call that costs `n`: its size, its share of a quota), then
    /// runs `future` to completion and returns its output.
    ///
    /// ```
    /// use tollgate::{AsyncRateLimiter, Error, ManualClock, Rate};
    ///
    /// let clock = ManualClock::new();
    /// let limiter = AsyncRateLimiter::with_timer(Rate::per_second(10), 10, &clock);
    /// futures_executor::block_on(async {
    ///     assert_eq!(limiter.run_n(7, async { "sent" }).await, Ok("sent"));
    ///     assert_eq!(limiter.available(), 3);
    ///     let too_big = limiter.run_n(11, async { "never" }).await;
    ///     assert_eq!(too_big, Err(Error::InsufficientCapacity { requested: 11, capacity: 10 }));
    /// });
    /// ```
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] at once if `n` exceeds the burst (waiting would never
    /// help), [`Error::MaxWaitExceeded`] with `ready_at == Instant::MAX` if the tokens could
    /// only come after the end of the clock. Either way nothing is taken and `future` is
    /// never polled.
    ///
    /// # Cancel safety
    /// As [`AsyncRateLimiter::run`].
    pub fn run_n<F: Future>(&self, n: u64, future: F) -> RunN<'_, T, F> {
        RunN { wait: TokenWait::new(self, n, Limit::Forever), admitted: false, future }
    }

    /// Wraps an async function so that every call first waits for one token.
    ///
    /// The returned closure takes the same single argument `A` as `f`; for several arguments
    /// use a tuple: `limiter.wrap(|(a, b)| async move { .. })`, called as `wrapped((1, 2))`.
    /// `f` is cloned for each call (functions and closures over `Clone` data are `Clone`; wrap
    /// shared state in a reference or `Arc`) and called only once the token is granted, so
    /// even work `f` does before its first `.await` is rate limited.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::{AsyncRateLimiter, Clock, Instant, ManualClock, Rate};
    ///
    /// async fn fetch(id: u32) -> u32 {
    ///     id * 10
    /// }
    ///
    /// let clock = ManualClock::new();
    /// let limiter = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
    /// let fetch = limiter.wrap(fetch);
    /// let send = limiter.wrap(|(to, body): (&str, &str)| async move { to.len() + body.len() });
    /// futures_executor::block_on(async {
    ///     assert_eq!(fetch(1).await, 10);
    ///     clock.advance(Duration::from_secs(1)); // both wrappers share the limiter's budget
    ///     assert_eq!(send(("ops", "hi")).await, 5);
    /// });
    /// assert_eq!(clock.now(), Instant::from_secs(1));
    /// ```
    ///
    /// As with [`acquire`](AsyncRateLimiter::acquire), a token that could only come after the
    /// end of the clock is never taken and the call never runs.
    ///
    /// # Cancel safety
    /// As [`AsyncRateLimiter::run`]: a call dropped while waiting gives its token back and
    /// never calls `f`.
    pub fn wrap<'a, A, F, Fut>(&'a self, f: F) -> impl Fn(A) -> Call<'a, T, F, A, Fut> + Clone
    where
        F: FnOnce(A) -> Fut + Clone,
        Fut: Future,
    {
        move |arg| {
            NeverWithoutToken::new(CallN {
                wait: TokenWait::new(self, 1, Limit::Forever),
                call: Some((f.clone(), arg)),
                future: None,
            })
        }
    }

    /// Wraps an async function so that every call first waits for `n` tokens: a call that
    /// costs `n`. As [`wrap`](Self::wrap) otherwise; the calls' futures yield
    /// `Result<_, Error>`.
    ///
    /// ```
    /// use tollgate::{AsyncRateLimiter, Error, ManualClock, Rate};
    ///
    /// let clock = ManualClock::new();
    /// let limiter = AsyncRateLimiter::with_timer(Rate::per_second(10), 10, &clock);
    /// let batch = limiter.wrap_n(4, |ids: [u32; 4]| async move { ids.iter().sum::<u32>() });
    /// futures_executor::block_on(async {
    ///     assert_eq!(batch([1, 2, 3, 4]).await, Ok(10));
    ///     assert_eq!(limiter.available(), 6);
    /// });
    /// ```
    ///
    /// # Errors
    /// Each call: as [`run_n`](Self::run_n), and then `f` is never called.
    ///
    /// # Cancel safety
    /// As [`wrap`](Self::wrap).
    pub fn wrap_n<'a, A, F, Fut>(
        &'a self,
        n: u64,
        f: F,
    ) -> impl Fn(A) -> CallN<'a, T, F, A, Fut> + Clone
    where
        F: FnOnce(A) -> Fut + Clone,
        Fut: Future,
    {
        self.wrap_by(move |_: &A| n, f)
    }

    /// Wraps an async function so that every call first waits for `weigh(&arg)` tokens (a
    /// request's size, the tokens of a prompt). As [`wrap_n`](Self::wrap_n) otherwise.
    ///
    /// ```
    /// use tollgate::{AsyncRateLimiter, Error, ManualClock, Rate};
    ///
    /// let clock = ManualClock::new();
    /// let bytes = AsyncRateLimiter::with_timer(Rate::per_second(1_000), 1_000, &clock);
    /// let send = bytes.wrap_by(|body: &Vec<u8>| body.len() as u64, |body| async move { body.len() });
    /// futures_executor::block_on(async {
    ///     assert_eq!(send(vec![0; 600]).await, Ok(600));
    ///     assert!(matches!(send(vec![0; 5_000]).await, Err(Error::InsufficientCapacity { .. })));
    ///     assert_eq!(bytes.available(), 400, "nothing taken for the refused call");
    /// });
    /// ```
    ///
    /// # Errors
    /// As [`wrap_n`](Self::wrap_n).
    ///
    /// # Cancel safety
    /// As [`wrap`](Self::wrap).
    pub fn wrap_by<'a, A, W, F, Fut>(
        &'a self,
        weigh: W,
        f: F,
    ) -> impl Fn(A) -> CallN<'a, T, F, A, Fut> + Clone
    where
        W: Fn(&A) -> u64 + Clone,
        F: FnOnce(A) -> Fut + Clone,
        Fut: Future,
    {
        move |arg| CallN {
            wait: TokenWait::new(self, weigh(&arg), Limit::Forever),
            call: Some((f.clone(), arg)),
            future: None,
        }
    }
}

impl<T: Timer, F> core::fmt::Debug for RunN<'_, T, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RunN").field("admitted", &self.admitted).finish_non_exhaustive()
    }
}

impl<F: core::fmt::Debug> core::fmt::Debug for NeverWithoutToken<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NeverWithoutToken")
            .field("inner", &self.inner)
            .field("never", &self.never)
            .finish()
    }
}

impl<T: Timer, F, A, Fut> core::fmt::Debug for CallN<'_, T, F, A, Fut> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CallN").field("admitted", &self.future.is_some()).finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "alloc", not(tollgate_loom)))]
mod tests {
    use core::cell::Cell;
    use core::pin::pin;
    use core::time::Duration;

    use futures_util::task::noop_waker;

    use super::*;
    use crate::{Error, Instant, ManualClock, Rate, Refusal};

    /// Found in review: when the reservation is refused (the token would come only after the
    /// end of the clock), `run` and `wrap` must not go ahead without it; like `acquire`, they
    /// wait forever.
    #[test]
    fn a_refused_reservation_never_lets_the_call_through() {
        let clock = ManualClock::starting_at(Instant::MAX);
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        limiter.try_acquire().unwrap();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut run = pin!(limiter.run(async { 1 }));
        assert!(run.as_mut().poll(&mut cx).is_pending());
        assert!(run.as_mut().poll(&mut cx).is_pending());
        let calls = Cell::new(0);
        let wrapped = limiter.wrap(|()| async { calls.set(calls.get() + 1) });
        let mut call = pin!(wrapped(()));
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(calls.get(), 0);
    }

    #[test]
    fn run_waits_for_the_token_before_polling_the_future() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(2), 1, &clock);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let polled = Cell::new(0);

        assert_eq!(
            pin!(limiter.run(async { polled.set(polled.get() + 1) })).poll(&mut cx),
            Poll::Ready(())
        );
        let mut second = pin!(limiter.run(async { polled.set(polled.get() + 1) }));
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polled.get(), 1, "the future must not run before its token");
        assert_eq!(clock.next_deadline(), Some(Instant::from_millis(500)));
        clock.advance(Duration::from_millis(499));
        assert!(second.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_millis(1));
        assert_eq!(second.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(polled.get(), 2);
    }

    #[test]
    fn wrap_calls_the_function_only_after_the_token() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        let calls = Cell::new(0);
        let calls = &calls;
        // Work before the first `.await` counts as the call.
        let double = limiter.wrap(move |x: u32| {
            calls.set(calls.get() + 1);
            async move { x * 2 }
        });
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);

        assert_eq!(pin!(double(1)).poll(&mut cx), Poll::Ready(2));
        let mut next = pin!(double(2));
        assert!(next.as_mut().poll(&mut cx).is_pending());
        assert_eq!(calls.get(), 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(4));
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn wrap_takes_tuples_for_several_arguments() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(10), 10, &clock);
        let add = limiter.wrap(|(a, b): (u32, u32)| async move { a + b });
        let add2 = add.clone();
        let sum = futures_executor::block_on(async { add((1, 2)).await + add2((3, 4)).await });
        assert_eq!(sum, 10);
        assert_eq!(limiter.available(), 8);
    }

    #[test]
    fn a_dropped_call_gives_its_token_back_and_never_calls() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        limiter.try_acquire().unwrap();
        let called = Cell::new(false);
        let f = limiter.wrap(|()| {
            called.set(true);
            async {}
        });
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        {
            let mut call = pin!(f(()));
            assert!(call.as_mut().poll(&mut cx).is_pending());
            let mut run = pin!(limiter.run(async {}));
            assert!(run.as_mut().poll(&mut cx).is_pending());
            // Both wait; only the first in line holds a reservation and sleeps on the clock.
            assert_eq!(limiter.waiters(), 2);
            assert_eq!(clock.sleepers(), 1);
        }
        assert_eq!(clock.sleepers(), 0);
        assert_eq!(limiter.waiters(), 0);
        assert!(!called.get());
        // Nothing was lost: the next token is still due at 1 s.
        assert_eq!(
            limiter.try_acquire(),
            Err(Error::RateLimited(Refusal::at(Instant::from_secs(1))))
        );
    }

    #[test]
    fn a_weighted_call_takes_n_and_waits_for_all_of_them() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(10), 10, &clock);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let calls = Cell::new(0);
        let heavy = limiter.wrap_n(6, |x: u32| {
            calls.set(calls.get() + 1);
            async move { x + 1 }
        });
        assert_eq!(pin!(heavy(1)).poll(&mut cx), Poll::Ready(Ok(2)));
        assert_eq!(limiter.available(), 4);
        let mut second = pin!(heavy(2));
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert_eq!(calls.get(), 1, "called before its tokens");
        // Six tokens at ten per second from 4 available: 200 ms.
        assert_eq!(clock.next_deadline(), Some(Instant::from_millis(200)));
        clock.advance(Duration::from_millis(200));
        assert_eq!(second.as_mut().poll(&mut cx), Poll::Ready(Ok(3)));
        assert_eq!(limiter.available(), 0);
        let mut run = pin!(limiter.run_n(10, async { "all" }));
        assert!(run.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_millis(999));
        assert!(run.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_millis(1));
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Ready(Ok("all")));
    }

    #[test]
    fn a_call_heavier_than_the_burst_is_refused_at_once_and_takes_nothing() {
        let clock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(10), 10, &clock);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let called = Cell::new(false);
        let too_heavy = limiter.wrap_by(
            |n: &u64| *n,
            |_| {
                called.set(true);
                async {}
            },
        );
        let refused = Err(Error::InsufficientCapacity { requested: 11, capacity: 10 });
        assert_eq!(pin!(too_heavy(11)).poll(&mut cx), Poll::Ready(refused));
        assert!(!called.get());
        assert_eq!(pin!(limiter.run_n(11, async {})).poll(&mut cx), Poll::Ready(refused));
        assert_eq!(limiter.available(), 10, "nothing taken");
        assert_eq!(pin!(too_heavy(10)).poll(&mut cx), Poll::Ready(Ok(())));
        assert!(called.get());
        // Tokens that can only come after the end of the clock: an error, not a pass.
        let end = ManualClock::starting_at(Instant::MAX);
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(1), 2, &end);
        limiter.try_acquire_n(2).unwrap();
        assert_eq!(
            pin!(limiter.run_n(2, async {})).poll(&mut cx),
            Poll::Ready(Err(Error::MaxWaitExceeded { ready_at: Instant::MAX }))
        );
    }

    #[test]
    fn wrapped_futures_are_send_when_their_parts_are() {
        fn assert_send<X: Send>(_: &X) {}
        static CLOCK: ManualClock = ManualClock::new();
        let limiter = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &CLOCK);
        let f = limiter.wrap(|x: u8| async move { x });
        assert_send(&f(1));
        assert_send(&limiter.run(async {}));
        assert_send(&limiter.run_n(2, async {}));
        assert_send(&limiter.wrap_n(2, |x: u8| async move { x })(1));
    }
}
