//! [`RateLimitLayer`]: a tower layer whose service clones share one budget.
//!
//! tower's own `RateLimit` gives every clone of a service its own budget, so a service cloned
//! per connection (as hyper and axum do) is not limited at all in aggregate. Here every clone
//! holds the same `Arc<AsyncRateLimiter>`.

use std::fmt;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;
use tollgate::{Clock, Instant, InvalidConfig, Rate, Reservation};
use tower::{Layer, Service};

use crate::AsyncRateLimiter;

/// A [`Layer`] that limits the request rate of the services it wraps, all clones together.
///
/// `poll_ready` reserves a token (joining the limiter's FIFO queue) and sleeps until it is
/// due; `call` spends it. A service dropped while it holds a reserved but unused token gives
/// the token back (when nobody reserved after it; see [`tollgate::TokenBucket::cancel`]).
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
/// use tollgate_tokio::{Rate, RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let service = ServiceBuilder::new()
///     .layer(RateLimitLayer::new(Rate::per_second(10), 1))
///     .service(service_fn(|n: u32| async move { Ok::<_, Infallible>(n * 2) }));
/// let (mut a, mut b) = (service.clone(), service);
/// let start = tokio::time::Instant::now();
/// assert_eq!(a.ready().await.unwrap().call(1).await, Ok(2));
/// assert_eq!(b.ready().await.unwrap().call(2).await, Ok(4)); // same budget: waits
/// assert_eq!(start.elapsed(), Duration::from_millis(100));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: Arc<AsyncRateLimiter>,
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
    /// whatever else uses it.
    pub fn from_limiter(limiter: Arc<AsyncRateLimiter>) -> Self {
        Self { limiter }
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
        RateLimit::new(inner, Arc::clone(&self.limiter))
    }
}

/// A service limited by a shared [`AsyncRateLimiter`]; made by [`RateLimitLayer`].
///
/// Clones share the limiter and start out not ready (each clone reserves its own token in
/// `poll_ready`).
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<AsyncRateLimiter>,
    state: State,
    /// Kept across waits so a busy service allocates its timer once.
    sleep: Option<Pin<Box<Sleep>>>,
}

enum State {
    /// Nothing reserved.
    Idle,
    /// Sleeping until `ready_at`. `reservation` is `None` only when the limiter refused to
    /// queue us at all (its 146-year horizon); then we retry after the sleep.
    Waiting { reservation: Option<Reservation>, ready_at: Instant },
    /// A due token, spent by the next `call`.
    Ready(Reservation),
}

impl<S> RateLimit<S> {
    /// Wraps `inner`, drawing tokens from `limiter`.
    pub fn new(inner: S, limiter: Arc<AsyncRateLimiter>) -> Self {
        Self { inner, limiter, state: State::Idle, sleep: None }
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

    fn arm(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.limiter.timer().to_tokio(at);
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        sleep.as_mut().poll(cx)
    }

    fn give_back(&mut self) {
        match mem::replace(&mut self.state, State::Idle) {
            State::Ready(reservation) | State::Waiting { reservation: Some(reservation), .. } => {
                self.limiter.bucket().cancel(reservation);
            }
            State::Idle | State::Waiting { reservation: None, .. } => {}
        }
    }
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), Arc::clone(&self.limiter))
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Idle => "idle",
            State::Waiting { .. } => "waiting",
            State::Ready(_) => "ready",
        };
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("state", &state)
            .finish()
    }
}

impl<S> Drop for RateLimit<S> {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl<S, Request> Service<Request> for RateLimit<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    /// Reserves a token and waits until it is due, then waits for the inner service.
    ///
    /// The token is held (not spent) while the inner service is not ready; dropping the
    /// service gives it back.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        loop {
            match &self.state {
                State::Ready(_) => return self.inner.poll_ready(cx),
                State::Idle => {
                    let now = self.limiter.timer().now();
                    match self.limiter.bucket().reserve_at(1, now) {
                        Ok(reservation) if reservation.ready_at() <= now => {
                            self.state = State::Ready(reservation);
                        }
                        Ok(reservation) => {
                            let ready_at = reservation.ready_at();
                            self.state =
                                State::Waiting { reservation: Some(reservation), ready_at };
                            if self.arm(ready_at, cx).is_pending() {
                                return Poll::Pending;
                            }
                        }
                        Err(refused) => {
                            // Only past the limiter's 146-year horizon. Never panic: wait
                            // for the instant it names (or a second), then try again.
                            let fallback = now.saturating_add(Duration::from_secs(1));
                            let ready_at = refused.ready_at().unwrap_or(fallback).max(fallback);
                            self.state = State::Waiting { reservation: None, ready_at };
                            if self.arm(ready_at, cx).is_pending() {
                                return Poll::Pending;
                            }
                        }
                    }
                }
                State::Waiting { ready_at, .. } => {
                    let ready_at = *ready_at;
                    // The sleep has fired or was never polled; re-check the clock, since a
                    // timer may fire a little early by our reading.
                    if self.limiter.timer().now() < ready_at {
                        if let Some(sleep) = &mut self.sleep {
                            if sleep.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                        }
                        if self.limiter.timer().now() < ready_at
                            && self.arm(ready_at, cx).is_pending()
                        {
                            return Poll::Pending;
                        }
                    }
                    self.state = match mem::replace(&mut self.state, State::Idle) {
                        State::Waiting { reservation: Some(reservation), .. } => {
                            State::Ready(reservation)
                        }
                        _ => State::Idle,
                    };
                }
            }
        }
    }

    /// Spends the token `poll_ready` made ready and calls the inner service.
    ///
    /// Calling without a successful `poll_ready` breaks the [`Service`] contract; rather than
    /// panic, this charges a token without waiting (the request is counted, later callers wait
    /// for it, but this one goes early).
    fn call(&mut self, request: Request) -> S::Future {
        match mem::replace(&mut self.state, State::Idle) {
            // Spent: dropping a reservation keeps its tokens taken.
            State::Ready(reservation) | State::Waiting { reservation: Some(reservation), .. } => {
                drop(reservation)
            }
            State::Idle | State::Waiting { reservation: None, .. } => {
                let now = self.limiter.timer().now();
                drop(self.limiter.bucket().reserve_at(1, now));
            }
        }
        self.inner.call(request)
    }
}
