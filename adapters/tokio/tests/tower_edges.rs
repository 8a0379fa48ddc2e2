//! Edge cases of the tower layer found in review: where a bounded wait's budget starts, and a
//! response future dropped while it waits. Needs the `tower` feature (the README's test
//! command enables every feature).

use core::convert::Infallible;
use core::future::Future;
use core::task::Context;
use core::time::Duration;
use std::sync::Arc;

use futures_util::task::noop_waker;
use tokio::time::Instant;
use tollgate_tokio::{Rate, RateLimitLayer, RateLimited};
use tower::{Layer, Service, ServiceExt, service_fn};

fn echo() -> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone {
    service_fn(|n: u32| async move { Ok::<_, Infallible>(n) })
}

/// Found in review: `WhenLimited::WaitAtMost` counted its bound from the response future's
/// first poll, so a future polled a second after `call` could return later than `max_wait`
/// after the call. The bound counts from the call, as documented.
#[tokio::test(start_paused = true)]
async fn wait_at_most_counts_from_the_call() {
    let mut svc = RateLimitLayer::new(Rate::per_second(1), 1)
        .max_wait(Duration::from_millis(1_500))
        .layer(echo());
    let start = Instant::now();
    svc.ready().await.unwrap();
    assert_eq!(svc.call(1).await.unwrap(), 1); // the burst
    svc.ready().await.unwrap();
    let f2 = svc.call(2); // due at 1 s
    svc.ready().await.unwrap();
    let f3 = svc.call(3); // at the call: the line is empty (f2 unpolled), "ready at 1 s": accepted
    let f2 = tokio::spawn(f2);
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_secs(1)).await; // f3 first polled 1 s after its call
    assert_eq!(f2.await.unwrap().unwrap(), 2);
    let r3 = f3.await;
    let waited = start.elapsed();
    assert!(
        waited <= Duration::from_millis(1_500),
        "call 3 made at 0 with max_wait 1.5 s returned {:?} after {waited:?}",
        r3.map_err(|e| e.downcast_ref::<RateLimited>().copied())
    );
}

/// Dropping a response future while it waits gives the token back (the next caller is not
/// delayed), and never calls the inner service.
#[tokio::test(start_paused = true)]
async fn a_response_future_dropped_while_waiting_costs_nothing() {
    let calls = Arc::new(core::sync::atomic::AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let inner = service_fn(move |n: u32| {
        c.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        async move { Ok::<_, Infallible>(n) }
    });
    let mut svc = RateLimitLayer::new(Rate::per_second(1), 1).layer(inner);
    let start = Instant::now();
    svc.ready().await.unwrap();
    svc.call(1).await.unwrap();
    // Bypass poll_ready's backpressure: call on the (still ready) service directly.
    let mut waiting = Box::pin(svc.call(2));
    let waker = noop_waker();
    assert!(waiting.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(waiting);
    svc.ready().await.unwrap();
    svc.call(3).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(calls.load(core::sync::atomic::Ordering::SeqCst), 2);
}
