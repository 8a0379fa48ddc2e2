//! [`KeyedRateLimitLayer`]: per-key limits for any tower service (not only HTTP), refusing
//! with the typed [`RateLimited`] error at once or after a bounded wait. Also the decision and
//! the waiting state that this layer and the HTTP layer (`http.rs`) share: [`admit`] and
//! [`Waiting`].

use core::future::Future;
use core::hash::Hash;
use core::mem;
use core::pin::Pin;
use core::task::{Context, Poll, ready};
use core::time::Duration;
use std::fmt;
use std::sync::Arc;

use pin_project_lite::pin_project;
use tollgate::{Clock, Error, Instant, InvalidConfig, Rate};
use tower::{BoxError, Layer, Service};

use super::RateLimited;
use crate::{KeyedAcquireOwned, KeyedRateLimiter, TokioTimer};

/// What a keyed layer does with a request, decided in `call`.
pub(crate) enum Admission<K: 'static> {
    /// Admitted at once; the key's status after the decision, if asked for (the HTTP layer's
    /// report).
    Now(Option<tollgate::keyed::KeyStatus>),
    /// Refused, with the clock reading the refusal is stated against.
    Refused(Error, Instant),
    /// The token comes within the bound: wait for it.
    Wait(Pin<Box<KeyedAcquireOwned<K>>>),
}

/// The decision both keyed layers make in `call`: the token now if it is there; else, without
/// `max_wait`, a refusal; with it, a refusal up front (no queue place taken) if the token
/// would come after the bound, counted from this clock reading, or a wait until the bound.
/// The wait makes the same check at its first poll, with the key's line. With `status`, an
/// admission carries the key's status, read in the same lookup.
pub(crate) fn admit<K>(
    limiter: &Arc<KeyedRateLimiter<K>>,
    key: K,
    max_wait: Option<Duration>,
    status: bool,
) -> Admission<K>
where
    K: Hash + Eq + Clone + 'static,
{
    let decided = if status {
        limiter.try_acquire_status(&key).map(Some)
    } else {
        limiter.try_acquire(&key).map(|()| None)
    };
    let refused = match decided {
        Ok(status) => return Admission::Now(status),
        Err(refused) => refused,
    };
    let now = limiter.timer().now();
    let Some(max_wait) = max_wait else {
        return Admission::Refused(refused, now);
    };
    let deadline = now.saturating_add(max_wait);
    match refused.ready_at() {
        Some(ready_at) if ready_at > deadline => {
            Admission::Refused(Error::MaxWaitExceeded { ready_at }, now)
        }
        _ => Admission::Wait(Box::pin(Arc::clone(limiter).acquire_before_owned(key, deadline))),
    }
}

/// A request waiting for its key's token, and the service it will be given: the waiting
/// state of both keyed layers' response futures.
pub(crate) struct Waiting<S, Request, K: 'static> {
    wait: Pin<Box<KeyedAcquireOwned<K>>>,
    call: Option<(S, Request)>,
}

impl<S: Service<Request> + Clone, Request, K> Waiting<S, Request, K> {
    /// Takes the service that was polled ready along with the request, leaving a fresh clone
    /// in `inner` for the next `poll_ready`: nothing waits inside `call`.
    pub(crate) fn new(
        wait: Pin<Box<KeyedAcquireOwned<K>>>,
        inner: &mut S,
        request: Request,
    ) -> Self {
        let clone = inner.clone();
        let ready = mem::replace(inner, clone);
        Self { wait, call: Some((ready, request)) }
    }
}

impl<S: Service<Request>, Request, K: Hash + Eq + Clone + 'static> Waiting<S, Request, K> {
    /// Waits for the token, then calls the service: its future, or the refusal.
    pub(crate) fn poll_call(&mut self, cx: &mut Context<'_>) -> Poll<Result<S::Future, Error>> {
        ready!(self.wait.as_mut().poll(cx))?;
        match self.call.take() {
            Some((mut inner, request)) => Poll::Ready(Ok(inner.call(request))),
            None => panic!("tollgate_tokio: a keyed wait was polled after it completed"),
        }
    }

    /// A reading of the clock of the limiter waited on: what a refusal is stated against.
    pub(crate) fn now(&self) -> Instant {
        self.wait.limiter().timer().now()
    }

    /// The key waited for (the HTTP layer's report names it).
    #[cfg(feature = "http")]
    pub(crate) fn key(&self) -> &K {
        self.wait.key()
    }
}

/// A [`Layer`] giving every key its own bucket, for services of any request type: the key is
/// what a closure returns for the request (a tenant id, a peer, `()` for one bucket).
///
/// A request over its key's limit fails with a [`RateLimited`] error inside a
/// [`tower::BoxError`] (as [`RateLimitLayer`](crate::RateLimitLayer)'s refusals): at once by
/// default, or once its token would come later than [`max_wait`](Self::max_wait). For HTTP
/// servers, `http::HttpRateLimitLayer` (feature `http`) answers 429 instead.
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt, service_fn};
/// use tollgate_tokio::{KeyedRateLimitLayer, Rate, RateLimited};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // Jobs are `(tenant, payload)`; each tenant gets 1 per second.
/// let layer = KeyedRateLimitLayer::new(|job: &(u32, String)| job.0, Rate::per_second(1), 1);
/// let svc = layer.layer(service_fn(|job: (u32, String)| async move {
///     Ok::<_, Infallible>(job.1.len())
/// }));
/// assert_eq!(svc.clone().oneshot((7, "abc".into())).await.unwrap(), 3);
/// assert_eq!(svc.clone().oneshot((8, "de".into())).await.unwrap(), 2); // another tenant
/// let refused = svc.clone().oneshot((7, "again".into())).await.unwrap_err();
/// let limited = refused.downcast_ref::<RateLimited>().unwrap();
/// // About a second: the paused clock still moves by the nanoseconds the calls take.
/// let wait = limited.retry_after().unwrap();
/// assert!(wait > Duration::from_millis(999) && wait <= Duration::from_secs(1), "{wait:?}");
/// # }
/// ```
pub struct KeyedRateLimitLayer<F, K> {
    limiter: Arc<KeyedRateLimiter<K>>,
    key: F,
    max_wait: Option<Duration>,
}

impl<F, K: Hash + Eq> KeyedRateLimitLayer<F, K> {
    /// A refusing layer giving each key `rate` with room for `burst` at once.
    ///
    /// # Panics
    /// If `burst` is 0 or not below 2^61; see [`KeyedRateLimitLayer::try_new`].
    pub fn new(key: F, rate: Rate, burst: u64) -> Self {
        match Self::try_new(key, rate, burst) {
            Ok(layer) => layer,
            Err(e) => panic!("tollgate_tokio::KeyedRateLimitLayer: {e}"),
        }
    }

    /// A refusing layer, or an error for a zero or huge `burst`.
    pub fn try_new(key: F, rate: Rate, burst: u64) -> Result<Self, InvalidConfig> {
        let limiter = KeyedRateLimiter::try_with_timer(rate, burst, TokioTimer::new())?;
        Ok(Self::from_limiter(key, Arc::new(limiter)))
    }
}

impl<F, K> KeyedRateLimitLayer<F, K> {
    /// A refusing layer drawing on an existing keyed limiter.
    pub fn from_limiter(key: F, limiter: Arc<KeyedRateLimiter<K>>) -> Self {
        Self { limiter, key, max_wait: None }
    }

    /// Waits up to `max_wait` (from the call) for the key's token, failing with
    /// [`RateLimited`] only when it would come later.
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// The shared keyed limiter.
    pub fn limiter(&self) -> &Arc<KeyedRateLimiter<K>> {
        &self.limiter
    }
}

impl<F: Clone, K> Clone for KeyedRateLimitLayer<F, K> {
    fn clone(&self) -> Self {
        Self { limiter: Arc::clone(&self.limiter), key: self.key.clone(), max_wait: self.max_wait }
    }
}

impl<F, K> fmt::Debug for KeyedRateLimitLayer<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimitLayer")
            .field("limiter", &self.limiter)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl<S, F: Clone, K> Layer<S> for KeyedRateLimitLayer<F, K> {
    type Service = KeyedRateLimit<S, F, K>;

    fn layer(&self, inner: S) -> KeyedRateLimit<S, F, K> {
        KeyedRateLimit {
            inner,
            limiter: Arc::clone(&self.limiter),
            key: self.key.clone(),
            max_wait: self.max_wait,
        }
    }
}

/// A service limited per key; made by [`KeyedRateLimitLayer`].
///
/// `S: Clone` as for [`RateLimit`](crate::RateLimit): a request that waits takes the ready
/// service with it.
pub struct KeyedRateLimit<S, F, K> {
    inner: S,
    limiter: Arc<KeyedRateLimiter<K>>,
    key: F,
    max_wait: Option<Duration>,
}

impl<S: Clone, F: Clone, K> Clone for KeyedRateLimit<S, F, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: Arc::clone(&self.limiter),
            key: self.key.clone(),
            max_wait: self.max_wait,
        }
    }
}

impl<S: fmt::Debug, F, K> fmt::Debug for KeyedRateLimit<S, F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl<S, F, K> KeyedRateLimit<S, F, K> {
    /// The shared keyed limiter.
    pub fn limiter(&self) -> &Arc<KeyedRateLimiter<K>> {
        &self.limiter
    }
}

impl<S, F, K, Request> Service<Request> for KeyedRateLimit<S, F, K>
where
    S: Service<Request> + Clone,
    S::Error: Into<BoxError>,
    F: Fn(&Request) -> K,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = KeyedResponseFuture<S, Request, K>;

    /// The inner service's readiness; no token is taken here.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let key = (self.key)(&request);
        let state = match admit(&self.limiter, key, self.max_wait, false) {
            Admission::Now(_) => KeyedState::Calling { future: self.inner.call(request) },
            Admission::Refused(error, now) => {
                KeyedState::Refused { error: Some(RateLimited::read_at(error, now)) }
            }
            Admission::Wait(wait) => {
                KeyedState::Waiting { waiting: Waiting::new(wait, &mut self.inner, request) }
            }
        };
        KeyedResponseFuture { state }
    }
}

pin_project! {
    /// Response future of [`KeyedRateLimit`].
    ///
    /// # Cancel safety
    /// Dropped while waiting, it leaves the key's line and gives back any reservation.
    #[must_use = "futures do nothing unless polled"]
    pub struct KeyedResponseFuture<S, Request, K>
    where
        S: Service<Request>,
        K: 'static,
    {
        #[pin]
        state: KeyedState<S, Request, K>,
    }
}

pin_project! {
    #[project = KeyedStateProj]
    enum KeyedState<S, Request, K>
    where
        S: Service<Request>,
        K: 'static,
    {
        Calling { #[pin] future: S::Future },
        Waiting { waiting: Waiting<S, Request, K> },
        Refused { error: Option<RateLimited> },
    }
}

impl<S, Request, K> Future for KeyedResponseFuture<S, Request, K>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + 'static,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                KeyedStateProj::Calling { future } => return future.poll(cx).map_err(Into::into),
                KeyedStateProj::Waiting { waiting } => match ready!(waiting.poll_call(cx)) {
                    Ok(future) => state.set(KeyedState::Calling { future }),
                    Err(refused) => {
                        let limited = RateLimited::read_at(refused, waiting.now());
                        state.set(KeyedState::Refused { error: None });
                        return Poll::Ready(Err(limited.into()));
                    }
                },
                KeyedStateProj::Refused { error } => match error.take() {
                    Some(limited) => return Poll::Ready(Err(limited.into())),
                    None => panic!("KeyedResponseFuture polled after completion"),
                },
            }
        }
    }
}

impl<S: Service<Request>, Request, K> fmt::Debug for KeyedResponseFuture<S, Request, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            KeyedState::Calling { .. } => "calling",
            KeyedState::Waiting { .. } => "waiting",
            KeyedState::Refused { .. } => "refused",
        };
        f.debug_struct("KeyedResponseFuture").field("state", &state).finish()
    }
}

#[cfg(test)]
mod tests {
    use core::convert::Infallible;

    use tokio::time::Instant;
    use tower::{ServiceExt, service_fn};

    use super::*;

    fn echo() -> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone {
        service_fn(|n: u32| async move { Ok::<_, Infallible>(n) })
    }

    #[tokio::test(start_paused = true)]
    async fn each_key_is_refused_with_a_typed_error_saying_when() {
        // Key: the parity of the request.
        let layer =
            KeyedRateLimitLayer::new(|n: &u32| n % 2, Rate::new(1, Duration::from_secs(2)), 1);
        let svc = layer.layer(echo());
        assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
        assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2);
        tokio::time::advance(Duration::from_millis(500)).await;
        let refused = svc.clone().oneshot(3).await.unwrap_err();
        let limited = refused.downcast_ref::<RateLimited>().expect("a rate-limit refusal");
        // 1.5 s, to within the paused clock's rounding against the limiter's origin.
        let after = limited.retry_after().expect("a token comes");
        assert!(
            after.abs_diff(Duration::from_millis(1_500)) < Duration::from_millis(1),
            "{after:?}"
        );
        assert_eq!(limited.retry_after_secs(), Some(2));
        assert!(matches!(limited.error(), tollgate::Error::RateLimited(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_wait_serves_in_time_and_refuses_beyond() {
        let layer =
            KeyedRateLimitLayer::new(|_: &u32| (), Rate::new(1, Duration::from_millis(300)), 1)
                .max_wait(Duration::from_millis(500));
        let svc = layer.layer(echo());
        let start = Instant::now();
        assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
        assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2); // waits 300 ms
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        // Queue one (served at 600 ms); the next would be at 900 ms, past 300 + 500.
        let queued = tokio::spawn(svc.clone().oneshot(3));
        tokio::task::yield_now().await;
        let refused = svc.clone().oneshot(4).await.unwrap_err();
        let limited = refused.downcast_ref::<RateLimited>().expect("a rate-limit refusal");
        assert!(matches!(limited.error(), tollgate::Error::MaxWaitExceeded { .. }));
        assert_eq!(start.elapsed(), Duration::from_millis(300), "refused at once");
        assert_eq!(queued.await.unwrap().unwrap(), 3);
        assert_eq!(start.elapsed(), Duration::from_millis(600));
    }
}
