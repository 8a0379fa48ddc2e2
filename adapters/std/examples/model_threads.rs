//! The blocking model limiter shared by worker threads: at most `max_parallel_requests` calls
//! run at once, RPM and TPM hold across all threads, and each thread simply blocks its turn.
//!
//! Run: `cargo run -p tollgate-std --example model_threads` (about one second).

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use tollgate_std::{ModelRateLimiter, RateLimitConfig};

fn main() {
    let limiter = Arc::new(
        ModelRateLimiter::new(
            [(
                "gpt-4o-mini",
                RateLimitConfig {
                    rpm: 600,
                    tpm: 100_000,
                    max_parallel_requests: 3,
                    ..Default::default()
                },
            )],
            RateLimitConfig::default(),
        )
        .expect("valid limits"),
    );
    let in_flight = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..6)
        .map(|worker| {
            let (limiter, in_flight) = (limiter.clone(), in_flight.clone());
            std::thread::spawn(move || {
                for job in 0..4 {
                    let permit = limiter.acquire("gpt-4o-mini", 500).expect("fits");
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    println!(
                        "[{:>7.1?}] worker {worker} job {job} running ({now} in flight)",
                        start.elapsed()
                    );
                    std::thread::sleep(Duration::from_millis(100)); // the "API call"
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    permit.settle(320);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let stats = &limiter.stats()["gpt-4o-mini"];
    println!("done: requests {}, tokens {}, active {}", stats.requests, stats.tokens, stats.active);
}
