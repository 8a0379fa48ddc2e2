//! The blocking model limiter on real threads: the parallel cap holds across threads and
//! nothing leaks. Real time, but short (the limits here never make anyone wait long).

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::sync::Arc;

use tollgate_std::{Error, ModelRateLimiter, RateLimitConfig};

#[test]
fn threads_are_capped_at_max_parallel_requests() {
    let limiter = Arc::new(
        ModelRateLimiter::new(
            [(
                "m",
                RateLimitConfig {
                    rpm: 1_000,
                    tpm: 1_000_000,
                    max_parallel_requests: 3,
                    ..Default::default()
                },
            )],
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
    let s = limiter.stats()["m"].clone();
    assert_eq!(s.requests.used, 40);
    assert_eq!(s.tokens.used, 40 * 50);
    assert_eq!(s.active.used, 0);
}

/// A limiter whose model `m` has `rpm`, `tpm` and one parallel slot (other models: defaults).
fn one_model(rpm: u32, tpm: u64) -> ModelRateLimiter {
    let config = RateLimitConfig { rpm, tpm, max_parallel_requests: 1, ..Default::default() };
    ModelRateLimiter::new([("m", config)], RateLimitConfig::default()).unwrap()
}

#[test]
fn oversized_and_impatient_requests_fail_at_once() {
    let limiter = one_model(1, 100);
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
    // The same with the estimate's input and output apart.
    let estimate = tollgate_std::model::Estimate { input: 8, output: 2 };
    let err = limiter.acquire_within_with("m", estimate, Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, Error::MaxWaitExceeded { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500), "refused up front, not after waiting");
}

/// ARCHITECTURE.md "Bounded waiting": `max_wait = 0` admits exactly when the request fits now. On
/// an idle limiter and a real clock, every one of 100 zero-budget acquires is admitted (the
/// deadline used to be fixed from an earlier clock reading than the admission check's).
#[test]
fn a_zero_budget_on_an_idle_limiter_is_always_admitted() {
    let limiter = one_model(1_000, 1_000_000);
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

/// Issue 9: `try_acquire` never blocks; `acquire_before` blocks until a `StdClock` instant at
/// most, refusing at once when the windows show room only later.
#[test]
fn try_acquire_and_acquire_before_on_threads() {
    use tollgate_std::{Clock, StdTimer};

    let limiter = one_model(1, 100);
    assert_eq!(
        limiter.try_acquire("m", 101).unwrap_err(),
        Error::InsufficientCapacity { requested: 101, capacity: 100 }
    );
    let permit = limiter.try_acquire("m", 10).unwrap();
    let err = limiter.try_acquire("m", 10).unwrap_err();
    assert!(matches!(err, Error::RateLimited(_)), "{err}");
    permit.settle(10);
    let started = std::time::Instant::now();
    let deadline = StdTimer.now() + Duration::from_secs(5);
    let err = limiter.acquire_before("m", 10, deadline).unwrap_err();
    assert!(matches!(err, Error::MaxWaitExceeded { ready_at } if ready_at > deadline), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500), "refused up front, not after waiting");
    let s = limiter.stats()["m"].clone();
    assert_eq!((s.requests.used, s.active.used), (1, 0));

    let idle = ModelRateLimiter::new(
        [(
            "m",
            RateLimitConfig { rpm: 10, tpm: 100, max_parallel_requests: 1, ..Default::default() },
        )],
        RateLimitConfig::default(),
    )
    .unwrap();
    let soon = StdTimer.now() + Duration::from_secs(1);
    idle.acquire_before("m", 10, soon).unwrap().settle(10);
}

/// Issue 9: a strict limiter refuses a model name it was not configured with, from every
/// form, and lists only the configured models.
#[test]
fn strict_mode_refuses_unknown_models_on_threads() {
    let limiter = ModelRateLimiter::strict([(
        "gpt-4",
        RateLimitConfig { rpm: 100, tpm: 1_000, max_parallel_requests: 2, ..Default::default() },
    )])
    .unwrap();
    assert!(limiter.is_strict());
    assert_eq!(limiter.acquire("gpt4", 1).unwrap_err(), Error::UnknownModel);
    assert_eq!(limiter.try_acquire("gpt4", 1).unwrap_err(), Error::UnknownModel);
    assert_eq!(
        limiter.acquire_within("gpt4", 1, Duration::from_secs(1)).unwrap_err(),
        Error::UnknownModel
    );
    assert_eq!(
        limiter.acquire_before("gpt4", 1, tollgate_std::Instant::MAX).unwrap_err(),
        Error::UnknownModel
    );
    limiter.acquire("gpt-4", 10).unwrap().settle(10);
    assert_eq!(limiter.stats().keys().collect::<Vec<_>>(), ["gpt-4"]);
    assert!(limiter.is_configured("gpt-4") && !limiter.is_configured("gpt4"));
}
