//! The Redis-backed GCRA bucket against a real server: bursts and refusals with their wait,
//! pacing, bounded waits refused up front, cancellation giving the reservation back,
//! capacity and config errors.

mod support;

use core::time::Duration;
use std::time::Instant;

use tollgate::{Clock, Rate};
use tollgate_redis::{Error, RateLimiter, RedisStore};

async fn bucket(server: &support::RedisServer, name: &str, rate: Rate, burst: u64) -> RateLimiter {
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    RateLimiter::new(store, "tb", name, rate, burst).expect("bucket")
}

#[tokio::test]
async fn a_burst_then_a_refusal_that_says_when() {
    let Some(server) = support::RedisServer::start() else { return };
    // 10 per minute: no token refills while the burst is spent, however slow the machine.
    let b = bucket(&server, "burst", Rate::per_minute(10), 10).await;
    for _ in 0..10 {
        b.try_acquire().await.expect("within the burst");
    }
    let now = b.timer().now();
    let err = b.try_acquire().await.unwrap_err();
    let Some(tollgate::Error::RateLimited(r)) = err.limit() else { panic!("{err:?}") };
    let wait = r.retry_after(now);
    assert!(wait > Duration::from_secs(5) && wait <= Duration::from_secs(6), "{wait:?}");
    let err = b.try_acquire_n(11).await.unwrap_err();
    assert!(matches!(
        err.limit(),
        Some(tollgate::Error::InsufficientCapacity { requested: 11, capacity: 10 })
    ));
    let err = b.acquire_n(11).await.unwrap_err();
    assert!(err.limit().is_some());
}

#[tokio::test]
async fn waits_pace_at_the_rate() {
    let Some(server) = support::RedisServer::start() else { return };
    let b = bucket(&server, "pace", Rate::per_second(50), 1).await;
    let start = Instant::now();
    for _ in 0..26 {
        b.acquire().await.unwrap();
    }
    // The first at once, then one per 20 ms: 25 intervals.
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(495) && took < Duration::from_millis(1_500), "{took:?}");
}

#[tokio::test]
async fn a_bounded_wait_that_cannot_make_it_takes_nothing() {
    let Some(server) = support::RedisServer::start() else { return };
    let b = bucket(&server, "bounded", Rate::per_second(1), 1).await;
    b.try_acquire().await.unwrap();
    let start = Instant::now();
    let err = b.acquire_within(Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err.limit(), Some(tollgate::Error::MaxWaitExceeded { .. })), "{err:?}");
    assert!(start.elapsed() < Duration::from_millis(300), "refused up front");
    // Nothing was taken: the next token is still due at 1 s.
    b.acquire_within(Duration::from_millis(1_500)).await.expect("due within 1 s");
    assert!(start.elapsed() < Duration::from_millis(1_300));
}

#[tokio::test]
async fn a_cancelled_wait_gives_its_reservation_back() {
    let Some(server) = support::RedisServer::start() else { return };
    let b = bucket(&server, "cancel", Rate::per_second(2), 1).await;
    b.try_acquire().await.unwrap();
    let start = Instant::now();
    // Reserves the token due at 500 ms, then is cancelled.
    for _ in 0..3 {
        assert!(tokio::time::timeout(Duration::from_millis(30), b.acquire()).await.is_err());
    }
    // No pause: the next call undoes the last cancelled reservation in its own script, so it
    // does not depend on the janitor's copy landing first.
    // The token due at 500 ms is still there: without the give-backs it would be at 2 s.
    b.acquire().await.unwrap();
    let at = start.elapsed();
    assert!(at < Duration::from_millis(900), "admitted at {at:?}");
}

#[tokio::test]
async fn another_config_under_the_same_name_is_refused() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = bucket(&server, "shared", Rate::per_second(10), 10).await;
    let b = bucket(&server, "shared", Rate::per_second(20), 10).await;
    a.try_acquire().await.unwrap();
    assert!(matches!(b.try_acquire().await.unwrap_err(), Error::ConfigMismatch { .. }));
    assert!(RateLimiter::per_second(a_store(&server).await, "tb", "zero", 0).is_err());
}

async fn a_store(server: &support::RedisServer) -> RedisStore {
    RedisStore::connect(&server.url()).await.unwrap()
}

#[tokio::test]
async fn store_down_fails_closed_unless_a_local_share_is_chosen() {
    let Some(mut server) = support::RedisServer::start() else { return };
    let options = tollgate_redis::StoreOptions {
        response_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let store = RedisStore::connect_with(&server.url(), options).await.unwrap();
    let closed = RateLimiter::new(store.clone(), "tb", "down", Rate::per_second(100), 100).unwrap();
    let local =
        RateLimiter::new(store, "tb", "down-local", Rate::new(100, Duration::from_secs(60)), 100)
            .unwrap()
            .on_store_error(tollgate_redis::Degraded::Local {
                share: tollgate_redis::Share::new(1, 10),
            });
    closed.try_acquire().await.unwrap();
    server.kill();
    let start = Instant::now();
    let err = closed.acquire().await.unwrap_err();
    assert!(err.is_store(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    // A tenth: bursts of 10, then one per 6 s.
    let mut ok = 0;
    for _ in 0..15 {
        if local.try_acquire().await.is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 10);
    let err = local.acquire_within(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err.limit(), Some(tollgate::Error::MaxWaitExceeded { .. })), "{err:?}");
}

#[tokio::test]
async fn calls_dropped_in_flight_give_their_reservations_back() {
    let Some(server) = support::RedisServer::start() else { return };
    let b = bucket(&server, "inflight", Rate::per_second(1), 1).await;
    // Each is dropped within 0-2 ms, often while its script call is in flight: a reservation
    // it made must not be lost, or the next token moves a second further each time.
    for i in 0..40u64 {
        let d = Duration::from_micros((i * 7_919) % 2_000);
        let _ = tokio::time::timeout(d, b.acquire()).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    b.acquire_within(Duration::from_millis(1_500)).await.expect("the token is due within 1 s");
    assert!(start.elapsed() < Duration::from_millis(1_100), "{:?}", start.elapsed());
}
