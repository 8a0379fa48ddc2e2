//! Adversarial: the bucket's odd arguments and the local share's bound. Zero, huge and past
//! bounds, zero and oversized token counts, each raced by a crowd so they go through shared
//! calls too: a typed answer, in time, no panic. And `Degraded::Local` in a blackhole admits no
//! more than its share of burst + rate·d (`cargo test -p tollgate-redis --all-features --test
//! adversarial_edges -- --nocapture`).

mod proxy;
mod support;

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use proxy::fault::{FaultProxy, Mode};
use tollgate::{Clock, Rate};
use tollgate_redis::{Degraded, Error, RateLimiter, RedisStore, Share, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn odd_arguments_get_typed_answers_in_time_also_in_shared_calls() {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let b = RateLimiter::new(store, "adv-edge", "b", Rate::new(50, Duration::from_secs(1)), 5)
        .expect("bucket");
    // A crowd keeps the line busy, so most odd calls below wait in it and go in shared calls.
    let stop = Arc::new(core::sync::atomic::AtomicBool::new(false));
    let mut crowd = Vec::new();
    for _ in 0..8 {
        let (b, stop) = (b.clone(), stop.clone());
        crowd.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                drop(b.try_acquire().await);
            }
        }));
    }
    let past = b.timer().now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for round in 0..50 {
        let t = Instant::now();
        let answers = [
            ("acquire_within(0)", b.acquire_within(Duration::ZERO).await),
            ("acquire_within(MAX)", {
                tokio::time::timeout(Duration::from_secs(2), b.acquire_within(Duration::MAX))
                    .await
                    .expect("an acquire of one token at 50/s waited 2 s")
            }),
            ("acquire_before(past)", b.acquire_before(past).await),
            ("try_acquire_n(0)", b.try_acquire_n(0).await),
            ("acquire_n_within(0, 1 ms)", b.acquire_n_within(0, Duration::from_millis(1)).await),
            ("try_acquire_n(6)", b.try_acquire_n(6).await),
            ("acquire_n(u64::MAX)", b.acquire_n(u64::MAX).await),
            ("acquire_n_within(6, MAX)", b.acquire_n_within(6, Duration::MAX).await),
        ];
        let took = t.elapsed();
        for (what, r) in &answers {
            let fine = match *what {
                "try_acquire_n(0)" | "acquire_n_within(0, 1 ms)" => r.is_ok(),
                "acquire_within(MAX)" => r.is_ok(),
                w if w.contains('6') || w.contains("MAX)") && w.starts_with("acquire_n(") => {
                    matches!(r, Err(Error::Limit(tollgate::Error::InsufficientCapacity { .. })))
                }
                _ => matches!(
                    r,
                    Ok(())
                        | Err(Error::Limit(
                            tollgate::Error::RateLimited(_)
                                | tollgate::Error::MaxWaitExceeded { .. }
                        ))
                        | Err(Error::Store(StoreError::Timeout { .. }))
                ),
            };
            assert!(fine, "round {round}: {what} got {r:?}");
        }
        if round == 0 {
            println!("odd arguments beside a crowd of 8 tries: {answers:?} in {took:?}");
        }
        assert!(took < Duration::from_secs(3), "round {round} took {took:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for t in crowd {
        t.await.expect("crowd");
    }
}

/// `Local { 50 % }` of 100/s with bursts of 10 in a 1.5 s blackhole, 16 callers mixing tries
/// and bounded acquires: at most 5 + 50·d admitted over the run (the server admits nothing).
#[test]
fn the_local_share_bounds_admissions_in_a_blackhole() {
    let Some(server) = support::RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(Duration::from_secs(20), async {
        let store = support::store_timing_out_after(Duration::from_millis(200), &proxy.url()).await;
        let b =
            RateLimiter::new(store, "adv-edge", "l", Rate::new(100, Duration::from_secs(1)), 10)
                .expect("bucket")
                .on_store_error(Degraded::Local { share: Share::percent(50) });
        proxy.set_mode(Mode::Blackhole);
        let run = Duration::from_millis(1_500);
        let start = Instant::now();
        let admitted = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for t in 0..16_u64 {
            let (b, admitted) = (b.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0_u64;
                while start.elapsed() < run {
                    i += 1;
                    let r = if (t + i).is_multiple_of(3) {
                        b.try_acquire().await
                    } else {
                        b.acquire_within(Duration::from_millis(5 + (t * 7 + i) % 60)).await
                    };
                    match r {
                        Ok(()) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Limit(_) | Error::Store(_)) => {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let took = start.elapsed();
        let admitted = admitted.load(Ordering::Relaxed);
        let allowed = 5 + 50 * u64::try_from(took.as_millis()).expect("ms") / 1_000 + 1;
        println!(
            "Local 50 % of 100/s burst 10, blackhole {took:?}, 16 callers: {admitted} admitted \
             (allowed {allowed})"
        );
        assert!(admitted <= allowed, "{admitted} admitted by the local share, allowed {allowed}");
        assert!(admitted >= allowed / 2, "the local share hardly engaged: {admitted}");
        proxy.set_mode(Mode::Forward);
    });
}

/// A bounded acquire refused is `MaxWaitExceeded` (its docs, and the in-process bucket's
/// `reserve_before_at` with a deadline of now), also when its bound is zero or already past,
/// through Redis and through the local share: not a try's `RateLimited`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bounded_acquire_says_max_wait_exceeded_whatever_its_bound() {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let b = RateLimiter::new(store, "adv-edge", "z", Rate::new(1, Duration::from_secs(60)), 1)
        .expect("bucket");
    b.try_acquire().await.expect("the one token");
    let core = tollgate::TokenBucket::new(Rate::new(1, Duration::from_secs(60)), 1);
    let now = tollgate::Instant::ZERO;
    core.try_acquire_at(1, now).expect("the one token");
    let in_process = core.reserve_within_at(1, now, Duration::ZERO).map(|_| ());
    let past = b.timer().now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let answers = [
        ("acquire_within(0)", b.acquire_within(Duration::ZERO).await),
        ("acquire_within(1 ms)", b.acquire_within(Duration::from_millis(1)).await),
        ("acquire_before(past)", b.acquire_before(past).await),
    ];
    println!("in process, reserve_within_at(0): {in_process:?}; Redis: {answers:?}");
    assert!(matches!(in_process, Err(tollgate::Error::MaxWaitExceeded { .. })));
    for (what, r) in answers {
        assert!(
            matches!(r, Err(Error::Limit(tollgate::Error::MaxWaitExceeded { .. }))),
            "{what}: {r:?}"
        );
    }
}

/// As [`a_refused_bounded_acquire_says_max_wait_exceeded_whatever_its_bound`], for the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bounded_model_acquire_says_max_wait_exceeded_whatever_its_bound() {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let config = support::one_request_a_minute();
    let l = tollgate_redis::ModelRateLimiter::builder(store, "adv-edge")
        .model("m", config)
        .build()
        .expect("limiter");
    l.try_acquire("m", 1).await.expect("the one request").settle(1).await.expect("settle");
    let past = l.timer().now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let answers = [
        ("acquire_within(0)", l.acquire_within("m", 1, Duration::ZERO).await.map(drop)),
        (
            "acquire_within(1 ms)",
            l.acquire_within("m", 1, Duration::from_millis(1)).await.map(drop),
        ),
        ("acquire_before(past)", l.acquire_before("m", 1, past).await.map(drop)),
    ];
    println!("model: {answers:?}");
    for (what, r) in answers {
        assert!(
            matches!(r, Err(Error::Limit(tollgate::Error::MaxWaitExceeded { .. }))),
            "{what}: {r:?}"
        );
    }
}
