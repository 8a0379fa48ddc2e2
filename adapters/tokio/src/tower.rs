//! [`RateLimitLayer`]: a tower layer whose service clones share one budget, and whose token is
//! taken when the inner service is called, never before.
//!
//! tower's own `RateLimit` gives every clone of a service its own budget, so a service cloned
//! per connection (as hyper and axum do) is not limited at all in aggregate. Here every clone
//! holds the same `Arc<AsyncRateLimiter>`.
//!
//! # Implementation details
//!
//! *No banking (invariant 9).* A token is taken in `call`, at the moment the request is passed
//! on to the inner service (or, if none is free, by the response future, which passes the
//! request on the moment it gets one). `poll_ready` takes nothing: it only reports the inner
//! service's readiness and, when waiting is the policy, holds callers back while no token is
//! free. So however long a service sits ready, and whatever its inner service does meanwhile,
//! the calls passed on in any interval d are the tokens taken in it: ≤ burst + rate·d.
//!
//! *Waiting.* A call that finds no free token waits in the limiter's one wait machine
//! ([`AsyncRateLimiter::acquire_n_owned`]): FIFO with every other waiter of the limiter, and
//! a response future dropped while waiting gives everything back.

use core::future::Future;
use core::mem;
use core::pin::Pin;
use core::task::{Context, Poll, ready};
use core::time::Duration;
use std::fmt;
use std::sync::Arc;

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tollgate::limiter::AcquireTokensOwned;
use tollgate::{Clock, Error, Instant, InvalidConfig, Rate};
use tower::{BoxError, Layer, Service};

use crate::{AsyncRateLimiter, TokioTimer};

pub(crate) mod keyed; // `http.rs` shares its admit-or-wait decision and waiting state

pub use keyed::{KeyedRateLimit, KeyedRateLimitLayer, KeyedResponseFuture};

/// What a [`RateLimit`] service does with a request that finds no free token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WhenLimited {
    /// Wait in line for a token, as long as it takes (the default). `poll_ready` also holds
    /// callers back while no token is free, so `load_shed` in front sheds instead of queueing.
    /// A token that can never come (past the end of the clock) fails with [`RateLimited`].
    ///
    /// Callers held back in `poll_ready` are not in the limiter's line: each sleeps on its own
    /// timer until a token is free, and whoever calls first takes it. For many concurrent
    /// callers that should be served strictly in arrival order with one wake-up each, use
    /// `WaitAtMost(Duration::MAX)`: no backpressure, every call waits in line.
    #[default]
    Wait,
    /// Wait at most this long, counted from the call; a request that would wait longer fails
    /// at once with [`RateLimited`], taking nothing. `poll_ready` does not wait for tokens.
    WaitAtMost(Duration),
    /// Never wait: a request that finds no free token fails at once with [`RateLimited`].
    /// `poll_ready` does not wait for tokens.
    Refuse,
}

/// A [`Layer`] that limits the rate of the calls its services pass on, all clones together.
///
/// The token is taken when a request is passed on to the inner service, never in
/// `poll_ready`, so a service kept ready (by a `ReadyCache`, a balancer, or a caller that
/// waits before calling) banks nothing: in any interval d, at most burst + rate·d calls reach
/// the inner services. What a request that finds no free token does is the
/// [`WhenLimited`] policy: wait in line (the default), wait at most a bound
/// ([`max_wait`](Self::max_wait)), or fail at once ([`refuse_when_limited`](Self::refuse_when_limited)).
///
/// The services' error type is [`tower::BoxError`]: the inner service's error, or a
/// [`RateLimited`] refusal (with how long to wait) to find with `downcast_ref`; see
/// [`RateLimited`] for why.
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
/// use tollgate_tokio::{Rate, RateLimitLayer, RateLimited};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let echo = service_fn(|n: u32| async move { Ok::<_, Infallible>(n * 2) });
/// let waiting = ServiceBuilder::new()
///     .layer(RateLimitLayer::new(Rate::per_second(10), 1))
///     .service(echo);
/// let (mut a, mut b) = (waiting.clone(), waiting);
/// let start = tokio::time::Instant::now();
/// assert_eq!(a.ready().await.unwrap().call(1).await.unwrap(), 2);
/// assert_eq!(b.ready().await.unwrap().call(2).await.unwrap(), 4); // same budget: waits
/// assert_eq!(start.elapsed(), Duration::from_millis(100));
///
/// // An HTTP server would rather refuse, and tell the client when to come back.
/// let mut refusing = ServiceBuilder::new()
///     .layer(RateLimitLayer::new(Rate::per_second(10), 1).refuse_when_limited())
///     .service(echo);
/// assert_eq!(refusing.ready().await.unwrap().call(3).await.unwrap(), 6);
/// let refused = refusing.ready().await.unwrap().call(4).await.unwrap_err();
/// let limited = refused.downcast_ref::<RateLimited>().expect("a rate-limit refusal");
/// assert!(limited.retry_after() <= Some(Duration::from_millis(100))); // the next token
/// assert_eq!(limited.retry_after_secs(), Some(1)); // for a `Retry-After: 1` header
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: Arc<AsyncRateLimiter>,
    policy: WhenLimited,
}

impl RateLimitLayer {
    /// A layer with a new limiter of `rate` and room for `burst` requests at once.
    ///
    /// # Panics
    /// If `burst` is 0 or not below 2^61; see [`RateLimitLayer::try_new`].
    pub fn new(rate: Rate, burst: u64) -> Self {
        Self::from_limiter(Arc::new(AsyncRateLimiter::new(rate, burst)))
    }

    /// A layer with a new limiter, or an error for a zero or huge `burst`.
    pub fn try_new(rate: Rate, burst: u64) -> Result<Self, InvalidConfig> {
        Ok(Self::from_limiter(Arc::new(AsyncRateLimiter::try_new(rate, burst)?)))
    }

    /// `n` requests per second with a burst of `n` (at least 1).
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn per_second(n: u32) -> Self {
        Self::from_limiter(Arc::new(AsyncRateLimiter::per_second(n)))
    }

    /// A layer drawing on an existing limiter, so the wrapped services share its budget with
    /// whatever else uses it (FIFO with its other waiters).
    pub fn from_limiter(limiter: Arc<AsyncRateLimiter>) -> Self {
        Self { limiter, policy: WhenLimited::Wait }
    }

    /// Sets what a request that finds no free token does; see [`WhenLimited`].
    #[must_use]
    pub fn when_limited(mut self, policy: WhenLimited) -> Self {
        self.policy = policy;
        self
    }

    /// A request that would wait longer than `max_wait` for its token fails at once with a
    /// [`RateLimited`] error saying how long; shorter waits wait. Same as
    /// `.when_limited(WhenLimited::WaitAtMost(max_wait))`.
    #[must_use]
    pub fn max_wait(self, max_wait: Duration) -> Self {
        self.when_limited(WhenLimited::WaitAtMost(max_wait))
    }

    /// A request that finds no free token fails at once with a [`RateLimited`] error saying
    /// when to retry (say, for an HTTP 429 with `Retry-After`). Same as
    /// `.when_limited(WhenLimited::Refuse)`.
    #[must_use]
    pub fn refuse_when_limited(self) -> Self {
        self.when_limited(WhenLimited::Refuse)
    }

    /// The policy for requests that find no free token.
    pub fn policy(&self) -> WhenLimited {
        self.policy
    }

    /// The shared limiter.
    pub fn limiter(&self) -> &Arc<AsyncRateLimiter> {
        &self.limiter
    }
}

impl From<Arc<AsyncRateLimiter>> for RateLimitLayer {
    fn from(limiter: Arc<AsyncRateLimiter>) -> Self {
        Self::from_limiter(limiter)
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::new(inner, Arc::clone(&self.limiter)).when_limited(self.policy)
    }
}

/// A service limited by a shared [`AsyncRateLimiter`]; made by [`RateLimitLayer`].
///
/// `S: Clone` is required because a request that must wait for its token takes the inner
/// service with it: the response future owns the service that was polled ready (the tower
/// contract: the ready one is the one to call) and calls it when the token comes, leaving a
/// fresh clone here for the next `poll_ready`. Nothing waits inside `call`, and the service
/// stays usable while its earlier requests wait.
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<AsyncRateLimiter>,
    policy: WhenLimited,
    /// `poll_ready`'s backpressure sleep, kept so a busy service allocates its timer once.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> RateLimit<S> {
    /// Wraps `inner`, drawing tokens from `limiter`, waiting when limited.
    pub fn new(inner: S, limiter: Arc<AsyncRateLimiter>) -> Self {
        Self { inner, limiter, policy: WhenLimited::Wait, sleep: None }
    }

    /// Sets what a request that finds no free token does; see [`WhenLimited`].
    #[must_use]
    pub fn when_limited(mut self, policy: WhenLimited) -> Self {
        self.policy = policy;
        self
    }

    /// The policy for requests that find no free token.
    pub fn policy(&self) -> WhenLimited {
        self.policy
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The shared limiter.
    pub fn limiter(&self) -> &Arc<AsyncRateLimiter> {
        &self.limiter
    }

    /// When a caller arriving now could take a token without waiting: `None` if it can now
    /// (or never can: then `call` reports it), else the instant to look again. Takes nothing.
    fn busy_until(&self, now: Instant) -> Option<Instant> {
        let free_at = match self.limiter.bucket().peek_at(1, now) {
            Ok(()) => now,
            Err(refused) => refused.ready_at().unwrap_or(Instant::MAX),
        };
        if free_at == Instant::MAX {
            return None;
        }
        let waiters = self.limiter.waiters();
        if waiters == 0 {
            return (free_at > now).then_some(free_at);
        }
        // Free tokens belong to the line: look again once its waiters have had theirs
        // (about one emission interval each), and never sooner than a nanosecond from now.
        let rate = self.limiter.rate();
        let behind =
            rate.period().as_nanos().saturating_mul(waiters as u128) / u128::from(rate.count());
        let behind = Duration::from_nanos(u64::try_from(behind).unwrap_or(u64::MAX));
        Some(free_at.saturating_add(behind).max(now.saturating_add(Duration::from_nanos(1))))
    }

    /// Pending while a caller could not take a token now (waiting policy only).
    fn poll_token_free(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let timer = *self.limiter.timer();
        loop {
            let Some(at) = self.busy_until(timer.now()) else {
                return Poll::Ready(());
            };
            let deadline = timer.to_tokio(at);
            let sleep = match &mut self.sleep {
                Some(sleep) => {
                    // A fired sleep is re-armed even for the same deadline, so a timer that
                    // fired early by our clock cannot spin here.
                    if sleep.is_elapsed() || sleep.deadline() != deadline {
                        sleep.as_mut().reset(deadline);
                    }
                    sleep
                }
                None => self.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            // Fired: look again (a token may have gone to someone else meanwhile).
            ready!(sleep.as_mut().poll(cx));
        }
    }
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), Arc::clone(&self.limiter)).when_limited(self.policy)
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S, Request> Service<Request> for RateLimit<S>
where
    S: Service<Request> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request>;

    /// Ready when the inner service is ready and — with the [`WhenLimited::Wait`] policy — a
    /// token is free now. Takes no token: `call` does.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.policy == WhenLimited::Wait {
            ready!(self.poll_token_free(cx));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// Takes a token and passes the request on at once if one is free. Otherwise, by the
    /// policy: the response future waits for the token in line and then passes the request
    /// on, or it fails with [`RateLimited`] without calling the inner service.
    fn call(&mut self, request: Request) -> Self::Future {
        let refused = match self.limiter.try_acquire() {
            Ok(()) => return ResponseFuture::calling(self.inner.call(request)),
            Err(refused) => refused,
        };
        let limiter = Arc::clone(&self.limiter);
        let wait = match self.policy {
            WhenLimited::Refuse => return ResponseFuture::refused(refused, &limiter),
            WhenLimited::WaitAtMost(max_wait) => {
                let now = limiter.timer().now();
                match refused.ready_at() {
                    // Refused up front without a queue place or a clone; the wait machine
                    // makes the same check (with the line's estimate) at its first poll.
                    Some(ready_at) if ready_at > now.saturating_add(max_wait) => {
                        let error = Error::MaxWaitExceeded { ready_at };
                        return ResponseFuture::refused(error, &limiter);
                    }
                    // The bound counts from the call, not from the response future's first
                    // poll (which may come later): fix the deadline now.
                    _ => limiter.acquire_n_before_owned(1, now.saturating_add(max_wait)),
                }
            }
            WhenLimited::Wait => limiter.acquire_n_owned(1),
        };
        // The ready service goes with the request; a fresh clone stays for `poll_ready`.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        ResponseFuture::waiting(wait, inner, request)
    }
}

/// A request refused by a [`RateLimit`] service: no token now ([`WhenLimited::Refuse`]), not
/// within the maximum wait ([`WhenLimited::WaitAtMost`]), or never (past the end of the
/// clock, whatever the policy). The inner service was not called.
///
/// The services return it inside a [`tower::BoxError`], as tower's own layers return
/// `Overloaded` and `Elapsed`: a stack that mixes `load_shed`, `timeout`, `buffer` and this
/// layer then has one error type (a typed `RateLimitError<E>` would not convert into
/// `BoxError` when `E` is itself a `BoxError`, which is what those layers produce), and
/// axum's `HandleErrorLayer` and hyper take it as it is. Find it with
/// `error.downcast_ref::<RateLimited>()` and answer 429 with
/// `Retry-After: `[`retry_after`](Self::retry_after) (rounded up to whole seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    error: Error,
    retry_after: Option<Duration>,
}

impl RateLimited {
    fn new(error: Error, limiter: &AsyncRateLimiter) -> Self {
        Self::read_at(error, limiter.timer().now())
    }

    /// The refusal `error`, its wait counted from `now` (on the limiter's clock).
    pub(crate) fn read_at(error: Error, now: Instant) -> Self {
        let retry_after = match error.ready_at() {
            Some(ready_at) if ready_at != Instant::MAX => {
                Some(ready_at.saturating_duration_since(now))
            }
            _ => None,
        };
        Self { error, retry_after }
    }

    /// How long from the refusal until the same request would be admitted, if nothing else
    /// arrives meanwhile (after the requests already waiting). `None`: never — the token
    /// would come only past the end of the clock.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// [`retry_after`](Self::retry_after) rounded up to whole seconds, as HTTP's
    /// `Retry-After` header wants it (a client retrying then finds the token). `None`: never.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
    }

    /// The limiter's refusal: [`Error::RateLimited`] (refusing policy),
    /// [`Error::MaxWaitExceeded`] (bounded wait, or never), with the instant on the limiter's
    /// clock ([`TokioTimer::to_tokio`] converts it).
    pub fn error(&self) -> Error {
        self.error
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(after) => write!(f, "rate limited; retry after {after:?}"),
            None => f.write_str("rate limited; no token can ever come"),
        }
    }
}

impl core::error::Error for RateLimited {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

pin_project! {
    /// Response future of [`RateLimit`]: the inner service's response, after waiting for the
    /// token if it had to.
    ///
    /// # Cancel safety
    /// Dropped while waiting for its token, it leaves the limiter's line and gives back any
    /// reservation: the next caller is not delayed by it. The inner service is called only
    /// once the token is taken.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, Request>
    where
        S: Service<Request>,
    {
        #[pin]
        state: Respond<S, Request>,
    }
}

pin_project! {
    #[project = RespondProj]
    enum Respond<S, Request>
    where
        S: Service<Request>,
    {
        // Token taken, request passed on.
        Calling { #[pin] future: S::Future },
        // Waiting for the token, with the ready service and the request it will be given.
        Waiting { wait: Pin<Box<AcquireTokensOwned<TokioTimer>>>, call: Option<(S, Request)> },
        // Refused without calling; `None` once reported.
        Refused { error: Option<RateLimited> },
    }
}

impl<S: Service<Request>, Request> ResponseFuture<S, Request> {
    fn calling(future: S::Future) -> Self {
        Self { state: Respond::Calling { future } }
    }

    fn waiting(wait: AcquireTokensOwned<TokioTimer>, inner: S, request: Request) -> Self {
        Self { state: Respond::Waiting { wait: Box::pin(wait), call: Some((inner, request)) } }
    }

    fn refused(error: Error, limiter: &AsyncRateLimiter) -> Self {
        Self { state: Respond::Refused { error: Some(RateLimited::new(error, limiter)) } }
    }
}

impl<S, Request> Future for ResponseFuture<S, Request>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                RespondProj::Calling { future } => return future.poll(cx).map_err(Into::into),
                RespondProj::Waiting { wait, call } => match ready!(wait.as_mut().poll(cx)) {
                    Ok(()) => {
                        let (mut inner, request) = call.take().expect("waits once");
                        let future = inner.call(request);
                        state.set(Respond::Calling { future });
                    }
                    Err(refused) => {
                        let limited = RateLimited::new(refused, wait.limiter());
                        state.set(Respond::Refused { error: None });
                        return Poll::Ready(Err(limited.into()));
                    }
                },
                RespondProj::Refused { error } => {
                    let limited = error.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Err(limited.into()));
                }
            }
        }
    }
}

impl<S: Service<Request>, Request> fmt::Debug for ResponseFuture<S, Request> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            Respond::Calling { .. } => "calling",
            Respond::Waiting { .. } => "waiting",
            Respond::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
