//! The model limiter on a real multi-threaded tokio runtime and the real clock (issue 8,
//! items 4 and 5). Bounded: each test takes well under a few seconds when the limiter is
//! right, and a stall is cut off by a timeout and counted rather than waited out.

use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use tollgate_tokio::{ModelRateLimiter, RateLimitConfig};

/// Every request reserves 600 of 1000 tokens and settles at 0 a moment later (a jittered spin,
/// to sweep the race window), so each admission after the first needs the refund of the
/// previous one, settled on another worker thread while the waiter decides to sleep. A refund
/// that landed between the waiter's admission check and its sleep used to go unseen: the
/// waiter (and the queue behind it) slept until the 600 left the window, ~61 s, with TPM usage
/// at 0. Here a wait above 500 ms is a stall (a normal one takes microseconds); the run stops
/// after `ACQUISITIONS` or 4 s of wall time, whichever comes first.
#[test]
fn refunds_racing_the_admission_check_never_stall_the_queue() {
    const TASKS: usize = 8;
    const ACQUISITIONS: usize = 20_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let limiter = Arc::new(
        ModelRateLimiter::new(
            [(
                "m",
                RateLimitConfig {
                    rpm: 1_000_000,
                    tpm: 1_000,
                    max_parallel_requests: 8,
                    ..Default::default()
                },
            )],
            RateLimitConfig::default(),
        )
        .unwrap(),
    );
    let stalls = Arc::new(AtomicUsize::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let budget = Duration::from_secs(4);
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (limiter, stalls, admitted) =
                    (limiter.clone(), stalls.clone(), admitted.clone());
                tokio::spawn(async move {
                    for i in 0..ACQUISITIONS / TASKS {
                        if started.elapsed() > budget {
                            break;
                        }
                        let acquire = limiter.clone().acquire_owned("m", 600);
                        match tokio::time::timeout(Duration::from_millis(500), acquire).await {
                            Ok(permit) => {
                                admitted.fetch_add(1, Ordering::Relaxed);
                                for _ in 0..(i * 37 + task * 101) % 500 {
                                    core::hint::spin_loop();
                                }
                                permit.unwrap().settle(0);
                            }
                            Err(_) => {
                                stalls.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let (stalls, admitted) = (stalls.load(Ordering::Relaxed), admitted.load(Ordering::Relaxed));
    let attempts = stalls + admitted;
    eprintln!(
        "{admitted} admitted, {stalls} stalls > 500 ms in {attempts} acquisitions, {:?}",
        started.elapsed()
    );
    assert_eq!(
        stalls, 0,
        "{stalls} of {attempts} acquisitions stalled > 500 ms with tokens refunded"
    );
    assert!(attempts >= 1_000, "only {attempts} acquisitions ran in {budget:?}");
    assert_eq!(limiter.stats()["m"].active.used, 0);
}

/// Model `m` with room for far more than a test asks: 1 000 RPM, 10^6 TPM, one slot.
fn idle_limiter() -> ModelRateLimiter {
    let config = RateLimitConfig {
        rpm: 1_000,
        tpm: 1_000_000,
        max_parallel_requests: 1,
        ..Default::default()
    };
    ModelRateLimiter::new([("m", config)], RateLimitConfig::default()).unwrap()
}

/// `max_wait = 0` on an idle limiter on tokio's real clock: admitted every time.
#[test]
fn a_zero_budget_on_an_idle_limiter_is_always_admitted() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_time().build().unwrap();
    let limiter = idle_limiter();
    let refused = runtime.block_on(async {
        let mut refused = 0;
        for _ in 0..100 {
            match limiter.acquire_within("m", 10, Duration::ZERO).await {
                Ok(permit) => permit.settle(10),
                Err(_) => refused += 1,
            }
        }
        refused
    });
    assert_eq!(refused, 0, "{refused}/100 zero-budget acquires refused on an idle limiter");
}

/// A 5 ms budget counts from the first poll: a future made, then first polled 20 ms later, is
/// admitted on an idle limiter.
#[test]
fn the_budget_starts_at_the_first_poll_on_a_real_clock() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let limiter = idle_limiter();
    runtime.block_on(async {
        let acquire = limiter.acquire_within("m", 10, Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
        acquire.await.expect("fits now, within 5 ms of the first poll").settle(10);
    });
}
