//! `#[limit_rate]` as re-exported by this crate: blocking, on the real clock (loose bounds).

use core::time::Duration;
use std::time::Instant;

use tollgate_std::{Rate, RateLimiter, limit_rate};

#[limit_rate(requests_per_second = 50, burst = 1)]
fn send_email(to: &str) -> usize {
    to.len()
}

static SHARED: RateLimiter = RateLimiter::new(Rate::per_second(50), 1);

#[limit_rate(limiter = SHARED)]
fn read() {}

#[limit_rate(limiter = SHARED)]
fn write() {}

#[test]
fn own_and_shared_limiters_block() {
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(send_email("ops@example.com"), 15);
    }
    read();
    write();
    read();
    let elapsed = start.elapsed();
    // 2 waits of 20 ms each on both limiters.
    assert!(elapsed >= Duration::from_millis(75), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}
