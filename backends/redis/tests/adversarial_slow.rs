//! Adversarial: a server that is only slow must never let the degraded policy admit (issue 10,
//! "Store unreachable"), also for callers whose own bound is *longer* than the response
//! timeout but who wait in the line behind another call. Such a caller is cut short by its own
//! bound (the line's timer) with `after` = its budget, which is not below the response timeout,
//! so nothing may read it as "the caller's bound only" unless the code says so. Real server,
//! real clock, multi-thread runtime, bounded (`cargo test -p tollgate-redis --all-features
//! --test adversarial_slow -- --nocapture`).

mod proxy;
mod support;

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use proxy::fault::{FaultProxy, Mode};
use support::RedisServer;
use tollgate::Rate;
use tollgate_redis::{Degraded, Error, ModelRateLimiter, RateLimiter, Share};

/// Every store's response timeout.
const RESPONSE: Duration = Duration::from_millis(300);
/// Each way through the proxy: a round trip takes about 200 ms, under [`RESPONSE`].
const ONE_WAY: Duration = Duration::from_millis(100);
/// The callers' bound: longer than the response timeout, shorter than two round trips (one
/// call out before theirs, then their own).
const BOUND: Duration = Duration::from_millis(350);

/// What one acquire of a wave got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    /// Admitted through Redis.
    Admitted,
    /// Admitted by the degraded policy.
    Degraded,
    /// Refused, or a store error.
    Refused,
}

/// 4 waves of 16 `acquire`s at once (each must answer within its [`BOUND`] and two response
/// timeouts): how many got each answer, and how long the waves took.
async fn waves<F, Fut>(acquire: F) -> ([u64; 3], Duration)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: core::future::Future<Output = Result<Got, Error>> + Send,
{
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let started = Instant::now();
    for _wave in 0..4 {
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (acquire, counts) = (acquire.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let r = acquire().await;
                assert!(t.elapsed() < BOUND + RESPONSE * 2, "ran {:?}", t.elapsed());
                let got = match r {
                    Ok(got) => got,
                    Err(Error::Limit(_) | Error::Store(_)) => Got::Refused,
                    Err(e) => panic!("{e:?}"),
                };
                counts[got as usize].fetch_add(1, Ordering::Relaxed);
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    }
    (counts.each_ref().map(|c| c.load(Ordering::Relaxed)), started.elapsed())
}

/// Waves of `tasks` bounded acquires at once against a bucket of one token a minute whose
/// token is taken; the server is slow (never unreachable): nothing may be admitted.
fn slow_bucket_long_bounds(policy: Degraded) {
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(Duration::from_secs(30), async {
        let rate = Rate::new(1, Duration::from_secs(60));
        let direct = RateLimiter::new(
            support::store_timing_out_after(RESPONSE, &server.url()).await,
            "adv-slow",
            "bucket",
            rate,
            1,
        )
        .expect("bucket");
        direct.try_acquire().await.expect("the burst's one token");
        let b = RateLimiter::new(
            support::store_timing_out_after(RESPONSE, &proxy.url()).await,
            "adv-slow",
            "bucket",
            rate,
            1,
        )
        .expect("bucket")
        .on_store_error(policy);
        proxy.set_mode(Mode::Delay(ONE_WAY));
        let ([admitted, _, errors], took) = waves(move || {
            let b = b.clone();
            async move { b.acquire_within(BOUND).await.map(|()| Got::Admitted) }
        })
        .await;
        println!(
            "{policy:?}, server {:?} away each way (response timeout {RESPONSE:?}), bucket \
             empty: 4 waves of 16 acquires bounded at {BOUND:?} in {took:?}: {admitted} \
             admitted, {errors} refused or store errors",
            ONE_WAY,
        );
        assert!(took < Duration::from_secs(60), "the run outlasted the refill");
        assert_eq!(admitted, 0, "admitted through a slow (reachable) server: the policy answered");
    });
}

#[test]
fn slow_server_long_bound_in_line_bucket_fail_open() {
    slow_bucket_long_bounds(Degraded::FailOpen);
}

#[test]
fn slow_server_long_bound_in_line_bucket_local() {
    slow_bucket_long_bounds(Degraded::Local { share: Share::percent(100) });
}

/// A model whose binding limit is one request a minute.
fn model(store: tollgate_redis::RedisStore, policy: Degraded) -> ModelRateLimiter {
    let config = support::one_request_a_minute();
    ModelRateLimiter::builder(store, "adv-slow")
        .model("m", config)
        .on_store_error(policy)
        .build()
        .expect("limiter")
}

/// As [`slow_bucket_long_bounds`], for the model: its one request a minute taken.
fn slow_model_long_bounds(policy: Degraded) {
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(Duration::from_secs(30), async {
        let direct = model(support::store_timing_out_after(RESPONSE, &server.url()).await, policy);
        let p = direct.try_acquire("m", 1).await.expect("the window's one request");
        p.settle(1).await.expect("settle");
        let l = model(support::store_timing_out_after(RESPONSE, &proxy.url()).await, policy);
        proxy.set_mode(Mode::Delay(ONE_WAY));
        let ([admitted, degraded, errors], took) = waves(move || {
            let l = l.clone();
            async move {
                let p = l.acquire_within("m", 1, BOUND).await?;
                Ok(if p.is_degraded() { Got::Degraded } else { Got::Admitted })
            }
        })
        .await;
        println!(
            "model, {policy:?}, server {ONE_WAY:?} away each way (response timeout {RESPONSE:?}), \
             window full: 4 waves of 16 acquires bounded at {BOUND:?} in {took:?}: {admitted} \
             admitted through Redis, {degraded} by the policy, {errors} refused or store errors"
        );
        assert_eq!(degraded, 0, "the policy answered for a slow (reachable) server");
        assert_eq!(admitted, 0, "admitted past the full window");
    });
}

#[test]
fn slow_server_long_bound_in_line_model_fail_open() {
    slow_model_long_bounds(Degraded::FailOpen);
}
