//! Issue 12 item 3 on a real runtime: a throttled stream holding the limiter's `Arc` moves into
//! `tokio::spawn` (with `rate_limited(&arc)` that is E0597: the borrow does not live long
//! enough) and is paced there; a weighted call takes `n` tokens, and `n > burst` is refused.
#![cfg(not(miri))]

use core::time::Duration;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream;
use tollgate::{Error, Rate, StreamRateLimitExt};
use tollgate_tokio::AsyncRateLimiter;

#[tokio::test(start_paused = true)]
async fn a_spawned_static_throttled_stream_is_paced() {
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(10), 2));
    let start = tokio::time::Instant::now();
    let items = stream::iter(0..6).rate_limited_owned(Arc::clone(&limiter));
    let task = tokio::spawn(async move {
        let mut items = core::pin::pin!(items);
        let mut at = Vec::new();
        while let Some(i) = items.next().await {
            at.push((i, start.elapsed().as_millis()));
        }
        at
    });
    let at = task.await.unwrap();
    // The burst of 2 at once, then one every 100 ms.
    assert_eq!(at, [(0, 0), (1, 0), (2, 100), (3, 200), (4, 300), (5, 400)]);
    assert_eq!(Arc::strong_count(&limiter), 1, "the finished task let go of the limiter");

    let weighed = stream::iter([3u64, 1]).rate_limited_by_owned(Arc::clone(&limiter), |w| *w);
    let got: Vec<_> = tokio::spawn(weighed.collect::<Vec<_>>()).await.unwrap();
    assert!(matches!(got[0], Err(ref r) if r.item == 3));
    assert_eq!(got[1].as_ref().ok(), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_weighted_call_takes_n_and_n_above_the_burst_is_refused() {
    let limiter = AsyncRateLimiter::new(Rate::per_second(10), 10);
    let start = tokio::time::Instant::now();
    let upload = limiter.wrap_n(5, |name: &'static str| async move { name.len() });
    assert_eq!(upload("a.txt").await, Ok(5));
    assert_eq!(upload("b.txt").await, Ok(5));
    assert_eq!(start.elapsed(), Duration::ZERO, "two calls of 5 fit the burst of 10");
    assert_eq!(upload("c.txt").await, Ok(5));
    assert_eq!(start.elapsed(), Duration::from_millis(500), "the third waited for 5 tokens");
    assert_eq!(
        limiter.run_n(11, async {}).await,
        Err(Error::InsufficientCapacity { requested: 11, capacity: 10 })
    );
    assert_eq!(start.elapsed(), Duration::from_millis(500), "refused at once");
}
