//! Burst, then a steady rate, under smol: a burst of 3, then 10 per second.
//!
//! Run with `cargo run -p tollgate-async-std --example smol` (takes about half a second).

use std::sync::Arc;
use std::time::Instant;

use tollgate_async_std::{AsyncRateLimiter, Rate};

fn main() {
    smol::block_on(async {
        let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(10), 3));
        let start = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|request| {
                let limiter = Arc::clone(&limiter);
                smol::spawn(async move {
                    limiter.acquire().await;
                    let ms = start.elapsed().as_secs_f64() * 1000.0;
                    println!("request {request} at {ms:6.1} ms");
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
    });
}
