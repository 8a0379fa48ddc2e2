//! Hostile use of the model limiter on a real multi-thread tokio runtime with the real clock:
//! many tasks, timeouts and `select!` around acquiring *and* around holding permits, permits
//! settled, dropped unsettled, or dropped mid-work. Checked from the admission log (the
//! permits' own `admitted_at`) and from `stats()`:
//!
//! - invariants 1–3 (RPM, TPM at admission, parallel), 4 (`active` back to 0, nothing leaked);
//! - `stats()` agrees with the log: every admitted request counted once, every token charged
//!   once (estimate, or the settled amount);
//! - no stalls: a patient request is admitted within a bound, and after the storm a request
//!   that fits by the stats is admitted at once.
//!
//! The whole of each test lies inside one 60 s window, so RPM and TPM are budgets for the test.

mod support;

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;

use support::{Rng, Violations};
use tokio::time::{Instant, sleep, timeout};
use tollgate_tokio::{Error, ModelRateLimiter, RateLimitConfig};

const TASKS: u64 = 50;
const STORM: Duration = Duration::from_millis(2_500);

#[derive(Debug, Clone, Copy)]
struct Admission {
    at: Instant,
    estimate: u64,
    /// When the charge became `actual` (read before settling, so the checker never assumes a
    /// refund the limiter had not yet seen). `None`: dropped, the estimate stays charged.
    settled: Option<(Instant, u64)>,
}

/// Stops the storm cooperatively: each task finishes its current (bounded) iteration, so every
/// admission is logged and every permit is settled or dropped by the time it returns.
async fn run_storm<F, Fut>(seed: u64, body: F) -> Vec<Admission>
where
    F: Fn(u64, Rng, Arc<AtomicBool>) -> Fut,
    Fut: core::future::Future<Output = Vec<Admission>> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = Rng::new(seed);
    let tasks: Vec<_> =
        (0..TASKS).map(|i| tokio::spawn(body(i, rng.fork(i), Arc::clone(&stop)))).collect();
    sleep(STORM).await;
    stop.store(true, Ordering::SeqCst);
    let mut log = Vec::new();
    for t in tasks {
        let joined = timeout(Duration::from_secs(2), t).await;
        let mine = joined.expect("a storm task did not finish its iteration within 2 s");
        log.extend(mine.expect("a storm task panicked"));
    }
    log.sort_by_key(|a| a.at);
    log
}

/// Invariants 1 and 2 over the log, as in the std soak test: for each admission, the
/// requests and charges of the 60 s before it.
fn check_windows(log: &[Admission], config: &RateLimitConfig) {
    let minute = Duration::from_secs(60);
    for (k, a) in log.iter().enumerate() {
        let window: Vec<&Admission> = log[..k].iter().filter(|b| a.at - b.at < minute).collect();
        assert!(
            window.len() < config.rpm as usize,
            "invariant 1: admission {k} is request {} in 60 s, rpm {}",
            window.len() + 1,
            config.rpm
        );
        let charged: u64 = window
            .iter()
            .map(|b| match b.settled {
                Some((when, actual)) if when <= a.at => actual,
                _ => b.estimate,
            })
            .sum();
        assert!(
            charged + a.estimate <= config.tpm,
            "invariant 2: admission {k}: {charged} charged + {} estimated > tpm {}",
            a.estimate,
            config.tpm
        );
    }
}

/// The final charge of every logged request: what `stats().tokens.used` must show.
fn charged(log: &[Admission]) -> u64 {
    log.iter().map(|a| a.settled.map_or(a.estimate, |(_, actual)| actual)).sum()
}

/// RPM and TPM bind within the storm; tasks time out acquiring (random 1–50 ms, half of them
/// as `acquire_within` with a random bound), and hold their permit inside a `select!` against a
/// random timeout: finished work settles (random actual ≤ estimate, sometimes 0), abandoned
/// work drops the permit unsettled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_bound_model_under_timeouts() {
    let config =
        RateLimitConfig { rpm: 400, tpm: 24_000, max_parallel_requests: 6, ..Default::default() };
    let limiter = Arc::new(ModelRateLimiter::new([("m", config.clone())], config.clone()).unwrap());
    let in_flight = Arc::new(AtomicU32::new(0));
    let bad = Arc::new(Violations::new());
    let log = run_storm(11, |_, mut rng, stop| {
        let (limiter, in_flight, bad) = (limiter.clone(), in_flight.clone(), bad.clone());
        async move {
            let mut mine = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let estimate = rng.range(1, 200);
                let give_up = rng.millis(1, 50);
                let acquired = if rng.chance(1, 2) {
                    timeout(give_up, limiter.acquire("m", estimate)).await
                } else {
                    let bound = rng.millis(0, 50);
                    timeout(give_up, limiter.acquire_within("m", estimate, bound)).await
                };
                let permit = match acquired {
                    Err(_) => continue,
                    Ok(Err(Error::MaxWaitExceeded { .. })) => {
                        // Refused at once: back off, or the loop never yields.
                        sleep(rng.millis(1, 3)).await;
                        continue;
                    }
                    Ok(Err(e)) => {
                        bad.report(format!("estimate {estimate} ≤ tpm refused: {e}"));
                        continue;
                    }
                    Ok(Ok(p)) => p,
                };
                let at = limiter.timer().to_tokio(permit.admitted_at());
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                bad.check(now <= config.max_parallel_requests, || {
                    format!("invariant 3: {now} in flight")
                });
                let work = rng.millis(0, 20);
                let patience = rng.millis(1, 20);
                let actual = if rng.chance(1, 4) { 0 } else { rng.range(0, estimate) };
                let settled = tokio::select! {
                    () = sleep(work) => {
                        let when = Instant::now();
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        permit.settle(actual);
                        Some((when, actual))
                    }
                    () = sleep(patience) => {
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                        None
                    }
                };
                mine.push(Admission { at, estimate, settled });
            }
            mine
        }
    })
    .await;
    bad.assert_none("window model");
    assert!(log.len() > 10, "only {} admissions", log.len());
    check_windows(&log, &config);
    let stats = limiter.stats()["m"].clone();
    eprintln!("window model: {} admissions, stats {stats:?}", log.len());
    assert_eq!(stats.active.used, 0, "invariant 4: a slot leaked");
    assert_eq!(stats.requests.used, log.len() as u64, "requests counted ≠ admitted");
    assert_eq!(stats.tokens.used, charged(&log), "tokens charged ≠ the log's charges");
    // No stall: whatever still fits by the stats is admitted at once.
    let room = config.tpm - stats.tokens.used;
    if stats.requests.used < u64::from(config.rpm) && room > 0 {
        let probe = limiter.acquire_within("m", room.min(100), Duration::ZERO).await;
        assert!(
            probe.is_ok(),
            "{} tokens fit by the stats but were refused: {probe:?}",
            room.min(100)
        );
    }
}

/// Only the parallel limit binds: half the tasks wait patiently, half give up after random
/// timeouts; holders are cancelled mid-work. A released slot goes to the oldest waiter, so a
/// patient acquire is admitted within (tasks ahead / slots) × the longest hold, and no
/// cancelled head loses a wake-up (which would show up as a stall).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_bound_model_never_stalls() {
    let config = RateLimitConfig {
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: 3,
        ..Default::default()
    };
    let limiter = Arc::new(ModelRateLimiter::new([("p", config.clone())], config.clone()).unwrap());
    let in_flight = Arc::new(AtomicU32::new(0));
    let slowest = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(Violations::new());
    // Every task ahead holds at most 10 ms; 3 slots; + scheduling slack.
    let bound = Duration::from_millis(10) * (TASKS as u32).div_ceil(3) + Duration::from_millis(100);
    let log = run_storm(12, |i, mut rng, stop| {
        let (limiter, in_flight, slowest, bad) =
            (limiter.clone(), in_flight.clone(), slowest.clone(), bad.clone());
        async move {
            let mut mine = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let estimate = rng.range(1, 1_000);
                let start = Instant::now();
                let permit = if i % 2 == 0 {
                    match timeout(
                        Duration::from_secs(2),
                        limiter.clone().acquire_owned("p", estimate),
                    )
                    .await
                    {
                        Ok(Ok(p)) => p,
                        Ok(Err(e)) => {
                            bad.report(format!("patient acquire refused: {e}"));
                            continue;
                        }
                        Err(_) => {
                            bad.report("a patient acquire waited over 2 s".to_string());
                            continue;
                        }
                    }
                } else {
                    match timeout(rng.millis(1, 30), limiter.clone().acquire_owned("p", estimate))
                        .await
                    {
                        Ok(Ok(p)) => p,
                        Ok(Err(e)) => {
                            bad.report(format!("acquire refused: {e}"));
                            continue;
                        }
                        Err(_) => continue,
                    }
                };
                if i % 2 == 0 {
                    let waited = start.elapsed();
                    slowest.fetch_max(waited.as_micros() as u64, Ordering::Relaxed);
                    bad.check(waited <= bound, || {
                        format!("a patient acquire waited {waited:?}; bound {bound:?}")
                    });
                }
                let at = limiter.timer().to_tokio(permit.admitted_at());
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                bad.check(now <= config.max_parallel_requests, || {
                    format!("invariant 3: {now} in flight")
                });
                let settled = tokio::select! {
                    () = sleep(rng.millis(1, 10)) => {
                        let when = Instant::now();
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        permit.settle(estimate);
                        Some((when, estimate))
                    }
                    () = sleep(rng.millis(1, 10)) => {
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                        None
                    }
                };
                mine.push(Admission { at, estimate, settled });
            }
            mine
        }
    })
    .await;
    eprintln!(
        "parallel model: {} admissions, slowest patient wait {:?}",
        log.len(),
        Duration::from_micros(slowest.load(Ordering::Relaxed))
    );
    bad.assert_none("parallel model");
    let stats = limiter.stats()["p"].clone();
    assert_eq!(stats.active.used, 0, "invariant 4: a slot leaked");
    assert_eq!(stats.requests.used, log.len() as u64, "requests counted ≠ admitted");
    assert_eq!(stats.tokens.used, charged(&log), "tokens charged ≠ the log's charges");
    // Three slots busy for most of 2.5 s at ≤ 10 ms a hold: far more than this.
    assert!(log.len() >= 300, "only {} admissions: slots sat idle", log.len());
    let probe = limiter.acquire_within("p", 1, Duration::ZERO).await;
    assert!(probe.is_ok(), "all slots free but refused: {probe:?}");
}

/// `acquire_within(model, est, 0)` is a try (ARCHITECTURE.md "Bounded waiting": `max_wait` is
/// measured from the first poll with the same clock reading as the up-front check): on a real
/// clock, which ticks between any two readings, a request that fits now must be admitted, and a
/// refusal must name an instant after its deadline, never one already past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_max_wait_admits_what_fits_now() {
    let config = RateLimitConfig {
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: 3,
        ..Default::default()
    };
    let limiter = ModelRateLimiter::new([("p", config.clone())], config.clone()).unwrap();
    let mut refused = Vec::new();
    for _ in 0..1_000 {
        let called = limiter.timer().from_tokio(Instant::now());
        let probe = limiter.acquire_within("p", 1, Duration::ZERO);
        // A future created a moment before it is first polled, as any executor does.
        tokio::task::yield_now().await;
        match probe.await {
            Ok(permit) => permit.settle(1),
            Err(e) => refused.push((called, e)),
        }
    }
    assert!(
        refused.is_empty(),
        "{} of 1000 zero-wait requests refused with every slot and all the budget free; first: {:?}",
        refused.len(),
        refused[0]
    );
}
