//! Several threads sharing one blocking `RateLimiter`: a burst of 5, then 10 per second.
//!
//! Run with `cargo run -p tollgate-std --example threads` (takes about one second).

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use tollgate_std::{Rate, RateLimiter};

fn main() {
    let limiter = Arc::new(RateLimiter::new(Rate::per_second(10), 5));
    let start = Instant::now();
    let workers: Vec<_> = (0..3)
        .map(|worker| {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || {
                for job in 0..5 {
                    limiter.acquire();
                    let t = start.elapsed().as_secs_f64() * 1000.0;
                    println!("{t:7.1} ms  worker {worker} job {job}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked");
    }
    // 15 jobs: 5 at once, then 10 more at 100 ms intervals.
    println!("done in {:.0} ms", start.elapsed().as_secs_f64() * 1000.0);
}
