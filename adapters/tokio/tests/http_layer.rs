//! `HttpRateLimitLayer` on tokio's paused clock: the exact 429 headers, keys and missing
//! keys, bounded waiting, a cancelled waiter costing nothing, and live keys going back to 0.

use core::convert::Infallible;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode};
use tokio::time::Instant;
use tollgate_tokio::Rate;
use tollgate_tokio::http::{Global, HeaderKey, HttpRateLimitLayer, NoKey, PeerIp, key_fn};
use tower::{Layer, Service, ServiceExt, service_fn};

type Echo = tower::util::BoxCloneService<Request<()>, Response<String>, Infallible>;

/// A service counting its calls.
fn counting() -> (Echo, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let svc = service_fn(move |_: Request<()>| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }
    });
    (tower::util::BoxCloneService::new(svc), calls)
}

fn from(peer: &str) -> Request<()> {
    let mut request = Request::new(());
    request.extensions_mut().insert(peer.parse::<SocketAddr>().unwrap());
    request
}

fn with_key(key: &'static str) -> Request<()> {
    Request::builder().header("x-api-key", key).body(()).unwrap()
}

fn header<'a>(response: &'a Response<String>, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("<missing>")
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_a_429_with_retry_after_and_ratelimit_fields() {
    let (inner, calls) = counting();
    // One request every 3 s per client, 2 at once: an empty bucket refills in 6 s.
    let layer =
        HttpRateLimitLayer::new(PeerIp, Rate::new(1, Duration::from_secs(3)), 2).policy_name("ip");
    let app = layer.unwrap().layer(inner);
    for _ in 0..2 {
        let ok = app.clone().oneshot(from("192.0.2.1:1")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers().get("ratelimit").is_none(), "not reported unless asked");
    }
    tokio::time::advance(Duration::from_millis(500)).await;
    let refused = app.clone().oneshot(from("192.0.2.1:2")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body(), "");
    // The next token is 2.5 s away: 3 whole seconds.
    assert_eq!(header(&refused, "retry-after"), "3");
    assert_eq!(header(&refused, "ratelimit-policy"), r#""ip";q=2;w=6"#);
    assert_eq!(header(&refused, "ratelimit"), r#""ip";r=0;t=3"#);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a refused request never reaches the service");

    // Exactly when Retry-After said (rounded up), the client is served again.
    tokio::time::advance(Duration::from_millis(2_500)).await;
    let ok = app.clone().oneshot(from("192.0.2.1:3")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // And 10 ms later, refused with 2.99 s to go (not an exact second: the bucket's
    // nanosecond rounding must not decide the test).
    tokio::time::advance(Duration::from_millis(10)).await;
    let refused = app.clone().oneshot(from("192.0.2.1:3")).await.unwrap();
    assert_eq!(header(&refused, "retry-after"), "3");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_never_zero_for_a_fast_bucket() {
    let (inner, _) = counting();
    let app = HttpRateLimitLayer::new(Global, Rate::per_second(1_000), 1).layer(inner);
    assert_eq!(app.clone().oneshot(Request::new(())).await.unwrap().status(), StatusCode::OK);
    let refused = app.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(header(&refused, "ratelimit"), r#""default";r=0;t=1"#);
    assert_eq!(header(&refused, "ratelimit-policy"), r#""default";q=1;w=1"#);
}

#[tokio::test(start_paused = true)]
async fn every_key_has_its_own_bucket() {
    let (inner, calls) = counting();
    let app =
        HttpRateLimitLayer::new(HeaderKey::new("x-api-key"), Rate::per_second(1), 1).layer(inner);
    for key in ["a", "b", "c"] {
        assert_eq!(app.clone().oneshot(with_key(key)).await.unwrap().status(), StatusCode::OK);
    }
    for key in ["a", "b", "c"] {
        let refused = app.clone().oneshot(with_key(key)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_without_a_key_is_rejected_shared_or_allowed_as_configured() {
    let (inner, calls) = counting();
    let by_key = || HttpRateLimitLayer::new(HeaderKey::new("x-api-key"), Rate::per_second(1), 1);

    let reject = by_key().layer(inner.clone());
    let response = reject.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let shared = by_key().when_no_key(NoKey::Share(HeaderValue::from_static("anon")));
    let shared = shared.layer(inner.clone());
    assert_eq!(shared.clone().oneshot(Request::new(())).await.unwrap().status(), StatusCode::OK);
    let second = shared.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS, "keyless requests share a bucket");
    // ... the bucket of the key named, so a client sending that key shares it too.
    let anon = shared.clone().oneshot(with_key("anon")).await.unwrap();
    assert_eq!(anon.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let allow = by_key().when_no_key(NoKey::Allow).layer(inner);
    for _ in 0..5 {
        assert_eq!(allow.clone().oneshot(Request::new(())).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn a_closure_picks_the_key() {
    let (inner, _) = counting();
    let by_path = key_fn(|head| Some(head.uri().path().to_owned()));
    let app = HttpRateLimitLayer::new(by_path, Rate::per_second(1), 1).layer(inner);
    let get = |path: &str| Request::builder().uri(path).body(()).unwrap();
    assert_eq!(app.clone().oneshot(get("/a")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.clone().oneshot(get("/b")).await.unwrap().status(), StatusCode::OK);
    let again = app.clone().oneshot(get("/a")).await.unwrap();
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn waiting_serves_within_max_wait_and_refuses_beyond() {
    let (inner, calls) = counting();
    // A token every 400 ms, 1 at once; wait at most 1 s.
    let layer = HttpRateLimitLayer::new(Global, Rate::new(1, Duration::from_millis(400)), 1)
        .max_wait(Duration::from_secs(1));
    let app = layer.layer(inner);
    let start = Instant::now();
    // Three at once: served at 0, 400 ms and 800 ms (in arrival order).
    let mut waits = Vec::new();
    for _ in 0..3 {
        let mut svc = app.clone();
        waits.push(tokio::spawn(async move {
            let response = svc.ready().await.unwrap().call(Request::new(())).await.unwrap();
            (response.status(), start.elapsed())
        }));
        tokio::task::yield_now().await;
    }
    // A fourth would be served at 1.2 s: past the bound, refused at once.
    let refused = app.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(start.elapsed(), Duration::ZERO, "refused without waiting");
    assert_eq!(header(&refused, "retry-after"), "2"); // 1.2 s, rounded up
    assert_eq!(header(&refused, "ratelimit"), r#""default";r=0;t=2"#);
    let mut served = Vec::new();
    for wait in waits {
        served.push(wait.await.unwrap());
    }
    let ms = Duration::from_millis;
    assert_eq!(
        served,
        [(StatusCode::OK, ms(0)), (StatusCode::OK, ms(400)), (StatusCode::OK, ms(800))]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_while_waiting_costs_nothing() {
    let (inner, calls) = counting();
    let layer = HttpRateLimitLayer::new(Global, Rate::new(1, Duration::from_millis(100)), 1)
        .max_wait(Duration::from_secs(10));
    let app = layer.layer(inner);
    let start = Instant::now();
    assert_eq!(app.clone().oneshot(Request::new(())).await.unwrap().status(), StatusCode::OK);
    // Ten clients queue (their tokens would come at 100 ms .. 1 s) and all disconnect at 50 ms.
    let mut gone = Vec::new();
    for _ in 0..10 {
        gone.push(tokio::spawn(app.clone().oneshot(Request::new(()))));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for task in &gone {
        task.abort();
    }
    // A new client is served at 100 ms, when the first of them would have been.
    let late = app.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(late.status(), StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no departed client reached the service");
}

#[tokio::test(start_paused = true)]
async fn admitted_responses_report_what_is_left_when_asked() {
    let (inner, _) = counting();
    let layer = HttpRateLimitLayer::new(PeerIp, Rate::per_second(1), 3).report_on_success(true);
    let app = layer.layer(inner);
    // `t`: the seconds until the bucket is full again (the draft's reset), one per token
    // taken at 1 per second.
    for (left, reset) in [(2, 1), (1, 2), (0, 3)] {
        let ok = app.clone().oneshot(from("192.0.2.9:1")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(header(&ok, "ratelimit"), format!(r#""default";r={left};t={reset}"#));
        assert_eq!(header(&ok, "ratelimit-policy"), r#""default";q=3;w=3"#);
    }
    tokio::time::advance(Duration::from_millis(2_500)).await;
    let ok = app.clone().oneshot(from("192.0.2.9:1")).await.unwrap();
    assert_eq!(header(&ok, "ratelimit"), r#""default";r=1;t=2"#, "1.5 s, rounded up");
    tokio::time::advance(Duration::from_secs(5)).await;
    let other = HttpRateLimitLayer::new(PeerIp, Rate::per_second(1), 3).report_on_success(true);
    let ok = other.layer(counting().0).oneshot(from("192.0.2.9:1")).await.unwrap();
    assert_eq!(header(&ok, "ratelimit"), r#""default";r=2;t=1"#);
}

/// Found in review: in waiting mode, a new client refused by the key cap (its shard full) got
/// a 429 at once even when room came within `max_wait`. It waits for room like for a token.
#[tokio::test(start_paused = true)]
async fn a_waiting_layer_waits_for_room_under_a_key_cap() {
    let (inner, calls) = counting();
    let limiter = tollgate::keyed::KeyedBuilder::new(Rate::per_second(1), 1)
        .shards(1)
        .max_keys(1)
        .build()
        .unwrap();
    let layer = HttpRateLimitLayer::from_limiter(PeerIp, Arc::new(limiter))
        .max_wait(Duration::from_millis(1_500));
    let app = layer.layer(inner);
    let start = Instant::now();
    assert_eq!(app.clone().oneshot(from("192.0.2.1:1")).await.unwrap().status(), StatusCode::OK);
    // 192.0.2.1 holds the one place until it refills, 1 s from now: within the bound.
    let newcomer = app.clone().oneshot(from("192.0.2.2:1")).await.unwrap();
    assert_eq!(newcomer.status(), StatusCode::OK);
    let waited = start.elapsed();
    assert!(waited.abs_diff(Duration::from_secs(1)) < Duration::from_millis(1), "{waited:?}");
    // Now 192.0.2.2 holds it until 2 s; a bound of 1.5 s from 1 s covers that too, but a
    // client arriving with less time left is refused at once.
    let short = layer_with_wait(&app, Duration::from_millis(500));
    let refused = short.oneshot(from("192.0.2.3:1")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Another layer on the same limiter as `app`, waiting at most `max_wait`.
fn layer_with_wait(
    app: &tollgate_tokio::http::HttpRateLimit<Echo, PeerIp>,
    max_wait: Duration,
) -> tollgate_tokio::http::HttpRateLimit<Echo, PeerIp> {
    let layer =
        HttpRateLimitLayer::from_limiter(PeerIp, Arc::clone(app.limiter())).max_wait(max_wait);
    layer.layer(counting().0)
}

#[tokio::test(start_paused = true)]
async fn live_keys_go_back_to_zero_once_every_client_refilled() {
    let (inner, _) = counting();
    let layer = HttpRateLimitLayer::new(PeerIp, Rate::per_second(10), 5);
    let limiter = Arc::clone(layer.limiter());
    let app = layer.layer(inner);
    for i in 0..200u32 {
        let peer = format!("10.0.{}.{}:80", i / 250, i % 250);
        let _ = app.clone().oneshot(from(&peer)).await.unwrap();
    }
    assert_eq!(limiter.len(), 200);
    tokio::time::advance(Duration::from_millis(500)).await; // a full refill
    limiter.retain_recent();
    assert_eq!(limiter.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_missing_peer_address_is_a_400_not_a_panic() {
    let (inner, calls) = counting();
    let app = HttpRateLimitLayer::new(PeerIp, Rate::per_second(1), 1).layer(inner);
    let response = app.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// An inner service whose response comes later (its future is pending first): an admitted
/// response passes through whole, the inner service's own headers kept, and the reported
/// fields survive the wait for it, also after a wait for the token.
#[tokio::test(start_paused = true)]
async fn a_slow_inner_service_keeps_its_response_and_the_report() {
    let slow = || {
        tower::util::BoxCloneService::new(service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut response = Response::new(String::from("slow"));
            response.headers_mut().insert("x-inner", HeaderValue::from_static("kept"));
            Ok::<_, Infallible>(response)
        }))
    };
    for report in [false, true] {
        let layer = HttpRateLimitLayer::new(PeerIp, Rate::per_second(1), 1)
            .max_wait(Duration::from_secs(2))
            .report_on_success(report);
        let app = layer.layer(slow());
        let start = Instant::now();
        // Served at once; then one that waits 0.9 s for its token.
        for (at, limit) in [(100, r#""default";r=0;t=1"#), (1_100, r#""default";r=0;t=1"#)] {
            let ok = app.clone().oneshot(from("192.0.2.5:1")).await.unwrap();
            assert_eq!(start.elapsed(), Duration::from_millis(at));
            assert_eq!(ok.status(), StatusCode::OK);
            assert_eq!(ok.body(), "slow");
            assert_eq!(header(&ok, "x-inner"), "kept");
            if report {
                assert_eq!(header(&ok, "ratelimit"), limit);
                assert_eq!(header(&ok, "ratelimit-policy"), r#""default";q=1;w=1"#);
            } else {
                assert!(ok.headers().get("ratelimit").is_none());
                assert!(ok.headers().get("ratelimit-policy").is_none());
            }
        }
    }
}
