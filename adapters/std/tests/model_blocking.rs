//! The blocking model limiter on real threads: the parallel cap holds across threads and
//! nothing leaks. Real time, but short (the limits here never make anyone wait long).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tollgate_std::{Error, ModelRateLimiter, RateLimitConfig};

#[test]
fn threads_are_capped_at_max_parallel_requests() {
    let limiter = Arc::new(
        ModelRateLimiter::new(
            [("m", RateLimitConfig { rpm: 1_000, tpm: 1_000_000, max_parallel_requests: 3 })],
            RateLimitConfig::default(),
        )
        .unwrap(),
    );
    let in_flight = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (limiter, in_flight, peak) = (limiter.clone(), in_flight.clone(), peak.clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let permit = limiter.acquire("m", 100).unwrap();
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    permit.settle(50);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 3);
    let s = limiter.stats()["m"];
    assert_eq!(s.requests.used, 40);
    assert_eq!(s.tokens.used, 40 * 50);
    assert_eq!(s.active.used, 0);
}

#[test]
fn oversized_and_impatient_requests_fail_at_once() {
    let limiter = ModelRateLimiter::new(
        [("m", RateLimitConfig { rpm: 1, tpm: 100, max_parallel_requests: 1 })],
        RateLimitConfig::default(),
    )
    .unwrap();
    assert_eq!(
        limiter.acquire("m", 101).unwrap_err(),
        Error::InsufficientCapacity { requested: 101, capacity: 100 }
    );
    limiter.acquire("m", 10).unwrap().settle(10);
    let started = std::time::Instant::now();
    let err = limiter.acquire_within("m", 10, Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, Error::MaxWaitExceeded { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500), "refused up front, not after waiting");
    assert_eq!(limiter.stats()["m"].active.used, 0);
}

/// DESIGN.md "Bounded waiting": `max_wait = 0` admits exactly when the request fits now. On
/// an idle limiter and a real clock, every one of 100 zero-budget acquires is admitted (the
/// deadline used to be fixed from an earlier clock reading than the admission check's).
#[test]
fn a_zero_budget_on_an_idle_limiter_is_always_admitted() {
    let limiter = ModelRateLimiter::new(
        [("m", RateLimitConfig { rpm: 1_000, tpm: 1_000_000, max_parallel_requests: 1 })],
        RateLimitConfig::default(),
    )
    .unwrap();
    let refused = (0..100)
        .filter(|_| match limiter.acquire_within("m", 10, Duration::ZERO) {
            Ok(permit) => {
                permit.settle(10);
                false
            }
            Err(_) => true,
        })
        .count();
    assert_eq!(refused, 0, "{refused}/100 zero-budget acquires refused on an idle limiter");
}
