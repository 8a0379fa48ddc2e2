//! Burst, then a steady rate: the seed's "Example 3", on tokio's paused clock so it runs
//! instantly and prints exact timings.
//!
//! Run with `cargo run -p tollgate-tokio --example burst`.

use std::sync::Arc;

use tokio::time::Instant;
use tollgate_tokio::{AsyncRateLimiter, Rate};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    // 5 per second with room for a burst of 5: five requests go at once, then one every 200 ms.
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(5), 5));
    let start = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|request| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                limiter.acquire().await;
                println!("request {request} at {:>4} ms", start.elapsed().as_millis());
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task panicked");
    }
}
