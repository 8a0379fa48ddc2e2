//! `#[limit_rate]` as re-exported by this crate.

use core::time::Duration;

use tokio::time::Instant;
use tollgate_tokio::{AsyncRateLimiter, Rate, TokioTimer, limit_rate};

#[limit_rate(requests_per_second = 10, burst = 2)]
async fn fetch(id: u32) -> u32 {
    id
}

static SHARED: AsyncRateLimiter =
    AsyncRateLimiter::with_timer(Rate::per_second(2), 1, TokioTimer::new());

#[limit_rate(limiter = SHARED)]
async fn fetch_user(id: u32) -> u32 {
    id
}

#[limit_rate(limiter = SHARED)]
async fn fetch_order(id: u32) -> u32 {
    id
}

#[tokio::test(start_paused = true)]
async fn own_and_shared_limiters() {
    let start = Instant::now();
    for id in 0..3 {
        assert_eq!(fetch(id).await, id);
    }
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let start = Instant::now();
    assert_eq!(fetch_user(1).await + fetch_order(2).await, 3);
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}
