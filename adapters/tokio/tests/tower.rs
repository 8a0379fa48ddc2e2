//! The tower layer: clones share one budget, and unused reservations come back.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::time::Instant;
use tollgate_tokio::{AsyncRateLimiter, Rate, RateLimitLayer};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

fn echo() -> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone {
    service_fn(|n: u32| async move { Ok::<_, Infallible>(n) })
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_budget() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = {
        let calls = Arc::clone(&calls);
        service_fn(move |n: u32| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, Infallible>(n) }
        })
    };
    let service =
        ServiceBuilder::new().layer(RateLimitLayer::new(Rate::per_second(10), 2)).service(counted);
    let (mut a, mut b) = (service.clone(), service);
    let start = Instant::now();
    assert_eq!(a.ready().await.unwrap().call(1).await, Ok(1));
    assert_eq!(b.ready().await.unwrap().call(2).await, Ok(2));
    assert_eq!(start.elapsed(), Duration::ZERO); // the burst of 2, between both clones
    assert_eq!(a.ready().await.unwrap().call(3).await, Ok(3));
    assert_eq!(start.elapsed(), 100 * MS);
    assert_eq!(b.ready().await.unwrap().call(4).await, Ok(4));
    assert_eq!(start.elapsed(), 200 * MS);
    assert_eq!(calls.load(Ordering::Relaxed), 4);
}

#[tokio::test(start_paused = true)]
async fn many_clones_in_tasks_keep_the_rate() {
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(100), 1));
    let service = RateLimitLayer::from_limiter(Arc::clone(&limiter)).layer(echo());
    let start = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(i).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(start.elapsed(), 190 * MS);
    // The layer's limiter is the one we passed: it is empty now.
    assert!(limiter.try_acquire().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_ready_service_gives_its_token_back() {
    let service = RateLimitLayer::new(Rate::per_second(1), 1).layer(echo());
    let mut ready = service.clone();
    ready.ready().await.unwrap(); // holds the only token
    let mut other = service.clone();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(other.poll_ready(&mut cx).is_pending());
    drop(other); // a waiting service gives its reservation back too
    drop(ready);
    let start = Instant::now();
    let mut next = service.clone();
    next.ready().await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "the token came back");
    assert_eq!(next.call(7).await, Ok(7));
    // Spent now: the next one waits a full period.
    let mut last = service;
    last.ready().await.unwrap();
    assert_eq!(start.elapsed(), 1_000 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_ready_clone_dropped_after_swapping_keeps_the_budget() {
    // The hyper/axum pattern: poll_ready on `self`, swap in a fresh clone, call the ready one.
    let mut service = RateLimitLayer::new(Rate::per_second(10), 1).layer(echo());
    let start = Instant::now();
    for i in 0..3 {
        service.ready().await.unwrap();
        let fresh = service.clone();
        let mut ready = std::mem::replace(&mut service, fresh);
        assert_eq!(ready.call(i).await, Ok(i));
    }
    assert_eq!(start.elapsed(), 200 * MS);
}

#[tokio::test(start_paused = true)]
async fn call_without_poll_ready_charges_a_token_instead_of_panicking() {
    let mut service = RateLimitLayer::new(Rate::per_second(10), 1).layer(echo());
    assert_eq!(service.call(1).await, Ok(1));
    let start = Instant::now();
    service.ready().await.unwrap();
    assert_eq!(start.elapsed(), 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_woken_when_due() {
    let mut service = RateLimitLayer::new(Rate::per_second(10), 1).layer(echo());
    service.ready().await.unwrap();
    service.call(0).await.unwrap();
    let start = Instant::now();
    let ready = pin!(std::future::poll_fn(|cx| service.poll_ready(cx)));
    assert!(matches!(ready.await, Ok(())));
    assert_eq!(start.elapsed(), 100 * MS);
}

#[test]
fn the_service_is_send_and_sync() {
    fn check<T: Send + Sync>(_: &T) {}
    let service = RateLimitLayer::per_second(5).layer(echo());
    check(&service);
    assert!(RateLimitLayer::try_new(Rate::per_second(5), 0).is_err());
}
