//! Hostile use under smol: a multi-threaded `smol::Executor` (three threads), `async-io` timers
//! for timeouts (`FutureExt::or`) and rival acquires raced with `FutureExt::race`, the real
//! clock, 50 tasks. The same checks as the tokio hostile tests, from the same support module:
//! invariant 7 over the admission log, invariant 8 (≥ 95 % of rate·d under timeouts; a lone
//! caller after the storm waits at most one emission interval), bounded waits keeping their
//! bounds, and the model limiter's invariants 3 and 4 with `stats()` agreeing with the log.

#[path = "../../tokio/tests/support/mod.rs"]
mod support;

use core::future::Future;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use smol::future::FutureExt;
use smol::stream::StreamExt;
use smol::{Executor, Task, Timer};
use support::{AdmissionLog, Bounded, Limits, Rng, Violations, check_bounded_wait};
use tollgate_async_std::{
    AsyncRateLimiter, ModelRateLimiter, Rate, RateLimitConfig, StreamRateLimitExt,
};

const RATE: u32 = 200;
const TASKS: u64 = 50;
const STORM: Duration = Duration::from_millis(2_500);
const THREADS: usize = 3;

/// Runs `main` on an executor served by `THREADS` threads (the calling one included).
fn on_executor<F, Fut>(main: F) -> Fut::Output
where
    F: FnOnce(&'static Executor<'static>) -> Fut,
    Fut: Future,
{
    let ex: &'static Executor<'static> = Box::leak(Box::new(Executor::new()));
    let (stop, stopped) = smol::channel::unbounded::<()>();
    let threads: Vec<_> = (1..THREADS)
        .map(|_| {
            let stopped = stopped.clone();
            std::thread::spawn(move || smol::block_on(ex.run(stopped.recv())))
        })
        .collect();
    let out = smol::block_on(ex.run(main(ex)));
    drop(stop);
    for t in threads {
        let _ = t.join();
    }
    out
}

/// `fut`, or `None` once `d` has passed (dropping `fut` mid-wait).
async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            Timer::after(d).await;
            None
        })
        .await
}

fn limiter(burst: u64) -> &'static AsyncRateLimiter {
    Box::leak(Box::new(AsyncRateLimiter::new(Rate::per_second(RATE), burst)))
}

fn spawn_storm<F, Fut>(ex: &'static Executor<'static>, seed: u64, body: F) -> Vec<Task<()>>
where
    F: Fn(u64, Rng) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut rng = Rng::new(seed);
    (0..TASKS).map(|i| ex.spawn(body(i, rng.fork(i)))).collect()
}

/// Cancels every task wherever it is waiting.
async fn stop(tasks: Vec<Task<()>>) {
    for t in tasks {
        t.cancel().await;
    }
}

async fn storm_and_check(
    what: &str,
    limiter: &AsyncRateLimiter,
    log: &AdmissionLog,
    tasks: Vec<Task<()>>,
) {
    let limits = Limits::new(RATE, limiter.burst());
    Timer::after(STORM.saturating_sub(log.start().elapsed())).await;
    stop(tasks).await;
    let start = Instant::now();
    let waited = timeout(Duration::from_secs(1), limiter.acquire()).await.map(|()| start.elapsed());
    eprintln!("{what}: {} tokens in {STORM:?}, lone caller {waited:?}", log.tokens_until(STORM));
    support::check_invariant_7(what, &log.entries(), limits);
    support::check_throughput(what, log, STORM, limits);
    support::check_lone_caller(what, waited, limits);
}

#[test]
fn smol_timeout_storm_keeps_the_rate() {
    on_executor(|ex| async move {
        let limiter = limiter(2);
        let log = Arc::new(AdmissionLog::new());
        let tasks = spawn_storm(ex, 31, |_, mut rng| {
            let log = Arc::clone(&log);
            async move {
                loop {
                    if timeout(rng.millis(1, 50), limiter.acquire()).await.is_some() {
                        log.record(1);
                    }
                }
            }
        });
        storm_and_check("smol timeout storm", limiter, &log, tasks).await;
    });
}

/// Rival acquires raced against each other and a timer, `acquire_n` up to the burst, and
/// bounded waits (`acquire_n_within`, 0–50 ms) whose refusals come at once with an instant past
/// the bound.
#[test]
fn smol_races_and_bounded_waits() {
    on_executor(|ex| async move {
        let limiter = limiter(3);
        let log = Arc::new(AdmissionLog::new());
        let bad = Arc::new(Violations::new());
        let tasks = spawn_storm(ex, 32, |_, mut rng| {
            let (log, bad) = (Arc::clone(&log), Arc::clone(&bad));
            async move {
                loop {
                    match rng.range(0, 2) {
                        0 => {
                            let rivals = async { limiter.acquire().await }.race(limiter.acquire());
                            if timeout(rng.millis(1, 50), rivals).await.is_some() {
                                log.record(1);
                            }
                        }
                        1 => {
                            let n = rng.range(1, 3);
                            if let Some(r) = timeout(rng.millis(1, 50), limiter.acquire_n(n)).await
                            {
                                r.unwrap();
                                log.record(n);
                            }
                        }
                        _ => {
                            let n = rng.range(1, 3);
                            let bound = rng.millis(0, 50);
                            let start = Instant::now();
                            let start_lib = limiter.timer().from_std(start);
                            let result = limiter.acquire_n_within(n, bound).await;
                            let took = start.elapsed();
                            let outcome =
                                check_bounded_wait(&log, &bad, (n, bound, took, start_lib), result);
                            if outcome == Bounded::Refused {
                                Timer::after(rng.millis(1, 3)).await;
                            }
                        }
                    }
                }
            }
        });
        storm_and_check("smol races", limiter, &log, tasks).await;
        bad.assert_none("smol races");
    });
}

/// Streams sharing a limiter, each `next()` under a timeout; half the time a timed-out stream
/// is dropped while its item waits.
#[test]
fn smol_streams_under_timeouts() {
    on_executor(|ex| async move {
        let limiter = limiter(2);
        let log = Arc::new(AdmissionLog::new());
        let tasks = spawn_storm(ex, 33, |_, mut rng| {
            let log = Arc::clone(&log);
            async move {
                loop {
                    let mut items = pin!(smol::stream::repeat(1u64).rate_limited(limiter));
                    loop {
                        match timeout(rng.millis(1, 50), items.next()).await {
                            Some(Some(n)) => log.record(n),
                            Some(None) => unreachable!("endless"),
                            None if rng.chance(1, 2) => break,
                            None => {}
                        }
                    }
                }
            }
        });
        storm_and_check("smol streams", limiter, &log, tasks).await;
    });
}

/// The model limiter under smol: acquires and permit holders under timeouts; in-flight never
/// above the parallel limit, nothing leaked, `stats()` equal to the log, and zero-wait probes
/// admitted when everything is free.
#[test]
fn smol_model_limiter_under_timeouts() {
    on_executor(|ex| async move {
        let config = RateLimitConfig {
            rpm: 100_000,
            tpm: 100_000_000,
            max_parallel_requests: 4,
            ..Default::default()
        };
        let limiter =
            Arc::new(ModelRateLimiter::new([("m", config.clone())], config.clone()).unwrap());
        let in_flight = Arc::new(AtomicU32::new(0));
        let admitted = Arc::new(AtomicU64::new(0));
        let charged = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(Violations::new());
        let stop = Arc::new(AtomicBool::new(false));
        let mut rng = Rng::new(34);
        let tasks: Vec<Task<()>> = (0..TASKS)
            .map(|i| {
                let mut rng = rng.fork(i);
                let (limiter, in_flight, admitted, charged, bad, stop) = (
                    limiter.clone(),
                    in_flight.clone(),
                    admitted.clone(),
                    charged.clone(),
                    bad.clone(),
                    stop.clone(),
                );
                ex.spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let estimate = rng.range(1, 500);
                        let permit = match timeout(
                            rng.millis(1, 30),
                            limiter.acquire("m", estimate),
                        )
                        .await
                        {
                            None => continue,
                            Some(Err(e)) => {
                                bad.report(format!("refused: {e}"));
                                continue;
                            }
                            Some(Ok(p)) => p,
                        };
                        admitted.fetch_add(1, Ordering::SeqCst);
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        bad.check(now <= config.max_parallel_requests, || {
                            format!("invariant 3: {now} in flight")
                        });
                        let actual = rng.range(0, estimate);
                        let finished = timeout(rng.millis(1, 10), Timer::after(rng.millis(0, 10)))
                            .await
                            .is_some();
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        if finished {
                            charged.fetch_add(actual, Ordering::SeqCst);
                            permit.settle(actual);
                        } else {
                            charged.fetch_add(estimate, Ordering::SeqCst);
                            drop(permit);
                        }
                    }
                })
            })
            .collect();
        Timer::after(STORM).await;
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            let done = timeout(Duration::from_secs(2), t).await;
            assert!(done.is_some(), "a model task did not finish its iteration within 2 s");
        }
        bad.assert_none("smol model");
        let stats = limiter.stats()["m"].clone();
        eprintln!("smol model: {} admissions, stats {stats:?}", admitted.load(Ordering::SeqCst));
        assert_eq!(stats.active.used, 0, "invariant 4: a slot leaked");
        assert_eq!(stats.requests.used, admitted.load(Ordering::SeqCst), "requests ≠ admitted");
        assert_eq!(stats.tokens.used, charged.load(Ordering::SeqCst), "tokens ≠ charged");
        assert!(admitted.load(Ordering::SeqCst) >= 300, "slots sat idle");
        let mut refused = 0;
        for _ in 0..100 {
            match limiter.acquire_within("m", 1, Duration::ZERO).await {
                Ok(p) => p.settle(1),
                Err(_) => refused += 1,
            }
        }
        assert_eq!(refused, 0, "zero-wait requests refused with every slot free");
    });
}
