//! The model limiter's two locks are always taken in one order: threads learning limits from
//! a provider while others are refused by the rate limits must never deadlock. With the
//! `tracing` feature a refusal used to lock the config inside the books (to name the limit in
//! its event) while `learn` locks the books inside the config: two threads, and in a few
//! thousand rounds both hung for good (found by CI's provider mock test).
//!
//! Real threads on the real clock, bounded in time: a hang fails after 20 s instead of
//! hanging the suite.

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::sync::Arc;

use tollgate::model::Counts;
use tollgate::{ModelRateLimiter, RateLimitConfig};

#[derive(Debug, Clone, Copy)]
struct StdTimer;

impl tollgate::Clock for StdTimer {
    fn now(&self) -> tollgate::Instant {
        use std::sync::OnceLock;
        static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(std::time::Instant::now);
        tollgate::Instant::from_nanos(origin.elapsed().as_nanos() as u64)
    }
}

#[test]
#[cfg_attr(miri, ignore = "real threads on the real clock for 1.5 s")]
fn learning_limits_while_requests_are_refused_never_deadlocks() {
    // Two requests a minute: after two admissions every try is refused by the rate limits.
    let config = RateLimitConfig {
        rpm: 2,
        tpm: 1_000_000,
        max_parallel_requests: 100,
        ..Default::default()
    };
    let limiter =
        Arc::new(ModelRateLimiter::with_timer([("m", config.clone())], config, StdTimer).unwrap());
    let _ = (limiter.try_acquire("m", 1), limiter.try_acquire("m", 1));
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (limiter, stop, done) = (limiter.clone(), stop.clone(), done_tx.clone());
            std::thread::spawn(move || {
                let minute = Some(Duration::from_secs(60));
                let mut rounds = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    if t % 2 == 0 {
                        let _ = limiter.try_acquire("m", 1);
                    } else {
                        // Alternating, so every call changes the books.
                        let max = if rounds % 2 == 0 { 1 } else { 2 };
                        limiter.learn_limit("m", Counts::Requests, minute, max).unwrap();
                    }
                    rounds += 1;
                }
                let _ = done.send(rounds);
            })
        })
        .collect();
    drop(done_tx);
    std::thread::sleep(Duration::from_millis(1_500));
    stop.store(true, Ordering::Relaxed);
    let mut rounds = 0;
    for _ in 0..threads.len() {
        rounds += done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a thread hung: the model limiter's locks deadlocked");
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(rounds > 1_000, "only {rounds} rounds in 1.5 s");
}
