//! [`HttpRateLimitLayer`]: a tower layer for HTTP servers (axum, hyper) with one bucket per
//! client, answering `429 Too Many Requests` at once or after a bounded wait.
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use tower::{Layer, ServiceExt, service_fn};
//! use tollgate_tokio::Rate;
//! use tollgate_tokio::http::{HttpRateLimitLayer, PeerIp};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // 2 requests per second per client address, 2 at once.
//! let layer = HttpRateLimitLayer::new(PeerIp, Rate::per_second(2), 2);
//! let app = layer.layer(service_fn(|_: Request<()>| async {
//!     Ok::<_, Infallible>(Response::new(String::from("hello")))
//! }));
//! let from = |peer: &str| {
//!     let mut request = Request::new(());
//!     request.extensions_mut().insert(peer.parse::<SocketAddr>().unwrap());
//!     request
//! };
//! for _ in 0..2 {
//!     let ok = app.clone().oneshot(from("192.0.2.1:4000")).await.unwrap();
//!     assert_eq!(ok.status(), StatusCode::OK);
//! }
//! let refused = app.clone().oneshot(from("192.0.2.1:4001")).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["retry-after"], "1"); // 500 ms, rounded up
//! assert_eq!(refused.headers()["ratelimit-policy"], r#""default";q=2;w=1"#);
//! assert_eq!(refused.headers()["ratelimit"], r#""default";r=0;t=1"#);
//! // Another client has its own bucket.
//! let other = app.clone().oneshot(from("192.0.2.2:4000")).await.unwrap();
//! assert_eq!(other.status(), StatusCode::OK);
//! # }
//! ```
//!
//! # Keys
//!
//! A [`KeyExtractor`] picks the bucket: [`PeerIp`] (axum's `ConnectInfo<SocketAddr>` with the
//! `axum` feature, or a `SocketAddr` extension), [`HeaderKey`] (an API key), [`key_fn`] (a
//! closure over the request's head), [`Global`] (one bucket for all), [`ForwardedIp`] (the
//! client address reported by trusted proxies). A request for which the extractor finds no key
//! is answered `400 Bad Request` by default; [`NoKey`] can put such requests in one shared
//! bucket, or let them through unlimited ([`HttpRateLimitLayer::when_no_key`]).
//!
//! **Behind a proxy**, the peer address is the proxy's: with [`PeerIp`], every client shares
//! the proxy's bucket. [`ForwardedIp`] reads the one header your proxies write
//! (`X-Forwarded-For`, or `Forwarded` with [`ForwardedIp::rfc7239`]), and only as many hops as
//! you say proxies stand in front of the server: those headers are written by the client, and
//! trusting them further lets a client choose its own key.
//!
//! The buckets are a [`KeyedRateLimiter`]: a key whose bucket has refilled is forgotten (it
//! would decide nothing differently), so memory follows the clients seen within one refill
//! time (`burst / rate`), not every address ever seen. With a slow rate that is still every
//! address of the last refill time; cap it with a limiter built with `max_keys` and
//! [`HttpRateLimitLayer::from_limiter`].
//!
//! # Answers
//!
//! A refused request never reaches the inner service. Its response is `429 Too Many Requests`
//! with an empty body (the response body type's `Default`) and:
//!
//! - `Retry-After`: the seconds until this client's next token, rounded up, at least 1;
//! - `RateLimit-Policy: "<name>";q=<burst>;w=<seconds>`: the bucket as a quota, `w` being the
//!   time an empty bucket takes to refill (rounded up): a client sending at most `q` requests
//!   in any `w` seconds is never refused;
//! - `RateLimit: "<name>";r=0;t=<seconds>`: nothing available for `t` seconds (the same value
//!   as `Retry-After`).
//!
//! The field syntax is that of draft-ietf-httpapi-ratelimit-headers-11 (May 2026), an
//! Internet-Draft: work in progress, which may still change. With
//! [`report_on_success`](HttpRateLimitLayer::report_on_success), admitted responses carry
//! `RateLimit-Policy` and `RateLimit: "<name>";r=<whole tokens left>;t=<seconds>` too, `t`
//! being the seconds until the client's bucket is full again (the draft's reset: by then
//! its whole quota `q` is back).
//!
//! # Waiting
//!
//! [`max_wait`](HttpRateLimitLayer::max_wait) makes the layer wait for the client's token
//! instead, up to a bound counted from the call, and answer 429 as above when the token would
//! come later. Waits go through the keyed limiter's one wait machine: FIFO per key, and a
//! client that disconnects (the server drops the response future) gives back its place and
//! any reservation, so it costs the others nothing.
//!
//! # Coming from tower_governor
//!
//! | tower_governor | here |
//! | --- | --- |
//! | `GovernorConfigBuilder::default().per_second(s).burst_size(b)` (one token every `s` seconds) | `HttpRateLimitLayer::new(extractor, Rate::new(1, Duration::from_secs(s)), b)` |
//! | `.key_extractor(PeerIpKeyExtractor)` | [`PeerIp`] |
//! | `SmartIpKeyExtractor` (trusts forwarding headers from anyone) | [`ForwardedIp::new(n)`](ForwardedIp::new), with the number of proxies you run |
//! | `GlobalKeyExtractor` | [`Global`] |
//! | a custom `KeyExtractor` | [`key_fn`] or an `impl` of [`KeyExtractor`] |
//! | `.use_headers()` (`x-ratelimit-*`) | the draft's `RateLimit` / `RateLimit-Policy`, always on 429, [`report_on_success`](HttpRateLimitLayer::report_on_success) for the rest |
//! | a background task calling `retain_recent` | nothing: refilled keys are forgotten as the limiter goes |
//! | `GovernorLayer { config }` | `HttpRateLimitLayer` (a `Layer` for `Router::layer`) |
//! | governor's default clock (quanta's time-stamp counter) | tokio's clock, which paused tests drive; with the `quanta` feature, [`HttpRateLimitLayer::try_with_timer`] and `TokioTimer::tsc` for the counter (about 15–30 ns less per request here, by the paired bench) |
//!
//! Differences: the error type of the wrapped service is kept (a refusal is a response, not an
//! error), a missing key is a `400` (tower_governor answers `500`), and waiting with a bound
//! is built in.

mod headers;
mod key;

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};
use core::time::Duration;
use std::sync::Arc;

use http::header::RETRY_AFTER;
use http::{HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::keyed::KeyStatus;
use crate::tower::keyed::{Admission, Waiting, admit};
use crate::{Clock, Error, InvalidConfig, KeyedRateLimiter, Rate};
use headers::{Quota, RATELIMIT, RATELIMIT_POLICY, retry_after_secs};

pub use headers::InvalidPolicyName;
pub use key::{ForwardedIp, Global, HeaderKey, KeyExtractor, KeyFn, PeerIp, RequestHead, key_fn};

/// What the layer does with a request its [`KeyExtractor`] finds no key for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NoKey<K> {
    /// Answer `400 Bad Request` without calling the inner service (the default).
    #[default]
    Reject,
    /// Count every such request against this one key (an "anonymous" bucket).
    Share(K),
    /// Pass it on unlimited.
    Allow,
}

/// The configuration every service of a layer shares.
struct Shared<X: KeyExtractor> {
    limiter: Arc<KeyedRateLimiter<X::Key>>,
    extractor: X,
    max_wait: Option<Duration>,
    no_key: NoKey<X::Key>,
    quota: Quota,
    report_on_success: bool,
}

impl<X: KeyExtractor + core::fmt::Debug> core::fmt::Debug for Shared<X> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HttpRateLimit")
            .field("limiter", &self.limiter)
            .field("extractor", &self.extractor)
            .field("max_wait", &self.max_wait)
            .field("policy", self.quota.policy())
            .field("report_on_success", &self.report_on_success)
            .finish_non_exhaustive()
    }
}

impl<X: KeyExtractor + Clone> Clone for Shared<X> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            extractor: self.extractor.clone(),
            max_wait: self.max_wait,
            no_key: self.no_key.clone(),
            quota: self.quota.clone(),
            report_on_success: self.report_on_success,
        }
    }
}

/// A [`Layer`] for HTTP services: one bucket per key, `429` with `Retry-After` and the
/// `RateLimit` fields for a request over its client's limit (see the [module docs](self)).
///
/// Refuses at once by default; [`max_wait`](Self::max_wait) makes it wait up to a bound.
/// All services made by one layer (and its clones) share one [`KeyedRateLimiter`].
///
/// ```
/// use std::time::Duration;
/// use tollgate_tokio::Rate;
/// use tollgate_tokio::http::{HeaderKey, HttpRateLimitLayer, NoKey};
///
/// // Per API key: 5 per second, 10 at once; wait up to 200 ms for a token, then 429.
/// // Requests without a key share the bucket of the empty key.
/// let layer = HttpRateLimitLayer::new(HeaderKey::new("x-api-key"), Rate::per_second(5), 10)
///     .max_wait(Duration::from_millis(200))
///     .when_no_key(NoKey::Share(http::HeaderValue::from_static("")))
///     .policy_name("per-key")
///     .unwrap();
/// assert_eq!(layer.limiter().burst(), 10);
/// ```
#[derive(Debug)]
pub struct HttpRateLimitLayer<X: KeyExtractor> {
    // Shared, not copied, by `layer`: axum applies a router's layers to each request's route.
    shared: Arc<Shared<X>>,
}

impl<X: KeyExtractor> Clone for HttpRateLimitLayer<X> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<X: KeyExtractor + Clone> HttpRateLimitLayer<X> {
    /// A refusing layer giving each key `rate` with room for `burst` at once.
    ///
    /// # Panics
    /// If `burst` is 0 or not below 2^61; see [`HttpRateLimitLayer::try_new`].
    pub fn new(extractor: X, rate: Rate, burst: u64) -> Self {
        match Self::try_new(extractor, rate, burst) {
            Ok(layer) => layer,
            Err(e) => panic!("tollgate_tokio::http::HttpRateLimitLayer: {e}"),
        }
    }

    /// A refusing layer, or an error for a zero or huge `burst`.
    pub fn try_new(extractor: X, rate: Rate, burst: u64) -> Result<Self, InvalidConfig> {
        Self::try_with_timer(extractor, rate, burst, crate::TokioTimer::new())
    }

    /// A refusing layer whose limiter reads `timer`: with the `quanta` feature,
    /// `TokioTimer::tsc` takes the time-stamp counter instead of
    /// tokio's clock, the one cost per request where this layer was behind tower_governor
    /// (which reads the counter too); see BENCHMARKS.md. Keep [`try_new`](Self::try_new) for
    /// tests on a paused tokio clock, which the counter does not follow.
    ///
    /// ```
    /// use tollgate_tokio::{Rate, TokioTimer};
    /// use tollgate_tokio::http::{HttpRateLimitLayer, PeerIp};
    ///
    /// # #[cfg(feature = "quanta")]
    /// let layer = HttpRateLimitLayer::try_with_timer(PeerIp, Rate::per_second(50), 100, TokioTimer::tsc())?;
    /// # #[cfg(not(feature = "quanta"))]
    /// # let layer = HttpRateLimitLayer::try_with_timer(PeerIp, Rate::per_second(50), 100, TokioTimer::new())?;
    /// assert_eq!(layer.limiter().burst(), 100);
    /// # Ok::<(), tollgate_tokio::InvalidConfig>(())
    /// ```
    pub fn try_with_timer(
        extractor: X,
        rate: Rate,
        burst: u64,
        timer: crate::TokioTimer,
    ) -> Result<Self, InvalidConfig> {
        let limiter = KeyedRateLimiter::try_with_timer(rate, burst, timer)?;
        Ok(Self::from_limiter(extractor, Arc::new(limiter)))
    }

    /// A refusing layer drawing on an existing limiter (built with
    /// [`KeyedRateLimiter::builder`](crate::KeyedRateLimiter::builder) for a key cap or more
    /// shards, or kept to watch [`len`](crate::KeyedRateLimiter::len)).
    pub fn from_limiter(extractor: X, limiter: Arc<KeyedRateLimiter<X::Key>>) -> Self {
        let quota = match Quota::new("default", limiter.rate(), limiter.burst()) {
            Ok(quota) => quota,
            Err(_) => unreachable!("\"default\" is a valid policy name"),
        };
        Self {
            shared: Arc::new(Shared {
                limiter,
                extractor,
                max_wait: None,
                no_key: NoKey::Reject,
                quota,
                report_on_success: false,
            }),
        }
    }

    /// Waits up to `max_wait` (from the call) for the client's token, answering 429 only when
    /// it would come later. `Duration::ZERO` is the same as refusing at once.
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        Arc::make_mut(&mut self.shared).max_wait = Some(max_wait);
        self
    }

    /// Refuses at once when the client has no token (the default).
    #[must_use]
    pub fn refuse_when_limited(mut self) -> Self {
        Arc::make_mut(&mut self.shared).max_wait = None;
        self
    }

    /// What to do with a request that has no key; see [`NoKey`].
    #[must_use]
    pub fn when_no_key(mut self, no_key: NoKey<X::Key>) -> Self {
        Arc::make_mut(&mut self.shared).no_key = no_key;
        self
    }

    /// The policy's name in `RateLimit-Policy` and `RateLimit` (`"default"` unless set).
    ///
    /// # Errors
    /// [`InvalidPolicyName`] unless `name` is printable ASCII.
    pub fn policy_name(mut self, name: &str) -> Result<Self, InvalidPolicyName> {
        let limiter = &self.shared.limiter;
        let quota = Quota::new(name, limiter.rate(), limiter.burst())?;
        Arc::make_mut(&mut self.shared).quota = quota;
        Ok(self)
    }

    /// Also put `RateLimit-Policy` and `RateLimit: "<name>";r=<left>;t=<reset>` on admitted
    /// responses: `<left>` the whole tokens the client has left, `<reset>` the seconds until
    /// its bucket is full again, rounded up (0 if it is full). Both are read with the decision
    /// (one lookup, one clock reading); writing them costs two allocations and two header
    /// insertions per response.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::net::SocketAddr;
    /// use http::{Request, Response};
    /// use tower::{Layer, ServiceExt, service_fn};
    /// use tollgate_tokio::Rate;
    /// use tollgate_tokio::http::{HttpRateLimitLayer, PeerIp};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let layer = HttpRateLimitLayer::new(PeerIp, Rate::per_second(1), 10).report_on_success(true);
    /// let app = layer.layer(service_fn(|_: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(String::new()))
    /// }));
    /// let mut request = Request::new(());
    /// request.extensions_mut().insert("192.0.2.1:4000".parse::<SocketAddr>().unwrap());
    /// let ok = app.oneshot(request).await.unwrap();
    /// // 9 left; the token taken is back in a second.
    /// assert_eq!(ok.headers()["ratelimit"], r#""default";r=9;t=1"#);
    /// # }
    /// ```
    #[must_use]
    pub fn report_on_success(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.shared).report_on_success = on;
        self
    }
}

impl<X: KeyExtractor> HttpRateLimitLayer<X> {
    /// The shared keyed limiter.
    pub fn limiter(&self) -> &Arc<KeyedRateLimiter<X::Key>> {
        &self.shared.limiter
    }
}

impl<S, X: KeyExtractor> Layer<S> for HttpRateLimitLayer<X> {
    type Service = HttpRateLimit<S, X>;

    fn layer(&self, inner: S) -> HttpRateLimit<S, X> {
        HttpRateLimit { inner, shared: Arc::clone(&self.shared) }
    }
}

/// A service limited per key; made by [`HttpRateLimitLayer`].
///
/// `S: Clone` is required for the waiting mode: a request that waits takes the service that
/// was polled ready with it and leaves a clone here, so nothing waits inside `call`.
#[derive(Debug)]
pub struct HttpRateLimit<S, X: KeyExtractor> {
    inner: S,
    shared: Arc<Shared<X>>,
}

impl<S: Clone, X: KeyExtractor> Clone for HttpRateLimit<S, X> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: Arc::clone(&self.shared) }
    }
}

impl<S, X: KeyExtractor> HttpRateLimit<S, X> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The shared keyed limiter.
    pub fn limiter(&self) -> &Arc<KeyedRateLimiter<X::Key>> {
        &self.shared.limiter
    }
}

impl<S, X, ReqBody, ResBody> Service<Request<ReqBody>> for HttpRateLimit<S, X>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    X: KeyExtractor,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, X, ReqBody>;

    /// The inner service's readiness: a refusing layer applies no backpressure (it answers),
    /// and a waiting one waits in the response future.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let key = match shared.extractor.extract(&request) {
            Some(key) => key,
            None => match &shared.no_key {
                NoKey::Share(key) => key.clone(),
                NoKey::Allow => {
                    return ResponseFuture {
                        state: State::Passing { future: self.inner.call(request) },
                    };
                }
                NoKey::Reject => return ResponseFuture::answer(status(StatusCode::BAD_REQUEST)),
            },
        };
        match admit(&shared.limiter, key, shared.max_wait, shared.report_on_success) {
            // Each state built where it is returned: a state built by a helper and then
            // moved into place cost one more copy of the inner future per request (callgrind,
            // `benches/http_layer.rs`'s profile mode).
            Admission::Now(None) => {
                ResponseFuture { state: State::Passing { future: self.inner.call(request) } }
            }
            Admission::Now(Some(status)) => {
                let report = Some(Box::new(shared.report(status)));
                ResponseFuture {
                    state: State::Reporting { future: self.inner.call(request), report },
                }
            }
            Admission::Refused(refused, now) => {
                ResponseFuture::answer(shared.too_many(&refused, now))
            }
            Admission::Wait(wait) => {
                let waiting = Waiting::new(wait, &mut self.inner, request);
                let state =
                    State::Waiting { waiting: Box::new(waiting), shared: Arc::clone(shared) };
                ResponseFuture { state }
            }
        }
    }
}

impl<X: KeyExtractor> Shared<X> {
    /// The `RateLimit-Policy` and `RateLimit` values of an admitted request whose key is in
    /// `status` (read with the decision, or just after a wait).
    fn report(&self, status: KeyStatus) -> Report {
        // 0 for a full bucket; else rounded up, as `Retry-After` is. From the reading `r` was
        // read at, so `t` is 0 exactly when `r` is the whole burst.
        let reset = match status.full_at.checked_duration_since(status.at) {
            Some(wait) if !wait.is_zero() => retry_after_secs(wait),
            _ => 0,
        };
        (self.quota.policy().clone(), self.quota.limit(status.available, Some(reset)))
    }

    /// The 429 for `refused`, read at `now`.
    fn too_many<B: Default>(&self, refused: &Error, now: crate::Instant) -> Response<B> {
        // Every refusal here carries an instant (n = 1 never exceeds the burst); a second
        // is the floor anyway.
        let wait = refused.retry_after(now).unwrap_or(Duration::ZERO);
        let secs = retry_after_secs(wait);
        let mut response = status(StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        headers.insert(RATELIMIT_POLICY, self.quota.policy().clone());
        headers.insert(RATELIMIT, self.quota.limit(0, Some(secs)));
        response
    }
}

/// `RateLimit-Policy` and `RateLimit` for an admitted response.
type Report = (HeaderValue, HeaderValue);

/// An empty response with `code`.
fn status<B: Default>(code: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = code;
    response
}

pin_project! {
    /// Response future of [`HttpRateLimit`]: the inner service's response, or the layer's
    /// own `429` / `400`.
    ///
    /// # Cancel safety
    /// Dropped while waiting for its token (a client that went away), it leaves the key's
    /// line and gives back any reservation; the inner service is called only once the token
    /// is taken.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, X, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        X: KeyExtractor,
    {
        #[pin]
        state: State<S, X, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, X, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        X: KeyExtractor,
    {
        // Admitted, request passed on, nothing to add: polled straight through, so the
        // response is not moved through this future on its way out (the common case; see
        // `benches/http_layer.rs`).
        Passing { #[pin] future: S::Future },
        // Admitted, request passed on; the fields to add (boxed, as the waiting state: the
        // future stays small, and it is moved on every call). `None` once added.
        Reporting { #[pin] future: S::Future, report: Option<Box<Report>> },
        // Waiting for the token (boxed: the ready service and the request are in it).
        Waiting { waiting: Box<Waiting<S, Request<ReqBody>, X::Key>>, shared: Arc<Shared<X>> },
        // The layer's own answer; `None` once given.
        Answer { response: Option<S::Response> },
    }
}

impl<S: Service<Request<ReqBody>>, X: KeyExtractor, ReqBody> ResponseFuture<S, X, ReqBody> {
    fn answer(response: S::Response) -> Self {
        Self { state: State::Answer { response: Some(response) } }
    }
}

impl<S: Service<Request<ReqBody>>, X: KeyExtractor, ReqBody> State<S, X, ReqBody> {
    /// The state of an admitted request: passing through, or reporting.
    fn calling(future: S::Future, report: Option<Box<Report>>) -> Self {
        match report {
            None => State::Passing { future },
            report => State::Reporting { future, report },
        }
    }
}

impl<S, X, ReqBody, ResBody> Future for ResponseFuture<S, X, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    X: KeyExtractor,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Passing { future } => return future.poll(cx),
                StateProj::Reporting { future, report } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some((policy, limit)) = report.take().map(|r| *r) {
                        let headers = response.headers_mut();
                        headers.insert(RATELIMIT_POLICY, policy);
                        headers.insert(RATELIMIT, limit);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Waiting { waiting, shared } => {
                    let outcome = ready!(waiting.poll_call(cx));
                    let shared = Arc::clone(shared);
                    match outcome {
                        Ok(future) => {
                            let report = shared.report_on_success.then(|| {
                                Box::new(shared.report(shared.limiter.status(waiting.key())))
                            });
                            state.set(State::calling(future, report));
                        }
                        Err(refused) => {
                            let now = shared.limiter.timer().now();
                            let response = shared.too_many(&refused, now);
                            state.set(State::Answer { response: None });
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Answer { response } => match response.take() {
                    Some(response) => return Poll::Ready(Ok(response)),
                    None => panic!("ResponseFuture polled after completion"),
                },
            }
        }
    }
}

impl<S, X, ReqBody> core::fmt::Debug for ResponseFuture<S, X, ReqBody>
where
    S: Service<Request<ReqBody>>,
    X: KeyExtractor,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let state = match &self.state {
            State::Passing { .. } | State::Reporting { .. } => "calling",
            State::Waiting { .. } => "waiting",
            State::Answer { .. } => "answer",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
