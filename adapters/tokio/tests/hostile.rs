//! Hostile use of the RPS limiter on a real multi-thread tokio runtime with the real clock: many
//! tasks, random timeouts and `select!` around every await, every acquire form. Each test logs
//! the instant of every admission and checks ARCHITECTURE.md's invariants on the log:
//!
//! - 7: in any interval of length d, admitted ≤ burst + rate·d (+ the recording-lag slack of
//!   `support::RECORDING_LAG`);
//! - 8: with demand above the rate and every waiter under a timeout, admitted ≥ 95 % of rate·d,
//!   and right after the storm a lone caller waits at most one emission interval (+ slack).
//!
//! Rates are 200/s (5 ms emission interval: five tokio timer ticks) for 2.5 s storms, so 95 % is
//! 475 tokens and a test takes under 3 s of real time.

mod support;

use core::future::Future;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::pin::pin;
use std::sync::Arc;

use futures_util::{StreamExt, stream};
use support::{
    AdmissionLog, BOUNDED_WAIT_SLACK, Bounded, Limits, Rng, Violations, check_bounded_wait,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tollgate_tokio::{AsyncRateLimiter, Rate, StreamRateLimitExt};

const RATE: u32 = 200;
const TASKS: u64 = 50;
const STORM: Duration = Duration::from_millis(2_500);
/// How long a lone caller is given after a storm before the test calls it stuck.
const LONE_LIMIT: Duration = Duration::from_secs(1);

/// A limiter that lives for the whole test binary: the stream and wrapper futures borrow it,
/// and spawned tasks need `'static`.
fn limiter(burst: u64) -> &'static AsyncRateLimiter {
    Box::leak(Box::new(AsyncRateLimiter::new(Rate::per_second(RATE), burst)))
}

/// Spawns `TASKS` copies of `body(task index, its own RNG)`; each body loops forever.
fn spawn_storm<F, Fut>(seed: u64, body: F) -> Vec<JoinHandle<()>>
where
    F: Fn(u64, Rng) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut rng = Rng::new(seed);
    (0..TASKS).map(|i| tokio::spawn(body(i, rng.fork(i)))).collect()
}

/// Cancels every task at whatever await it is in (dropping its futures) and waits until each
/// is gone.
async fn stop(tasks: Vec<JoinHandle<()>>) {
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        if let Err(e) = t.await {
            assert!(e.is_cancelled(), "a storm task panicked: {e}");
        }
    }
}

/// Right after a storm: how long one `acquire()` takes, or `None` if longer than `LONE_LIMIT`.
async fn lone_caller(limiter: &AsyncRateLimiter) -> Option<Duration> {
    let start = Instant::now();
    timeout(LONE_LIMIT, limiter.acquire()).await.ok().map(|()| start.elapsed())
}

/// Runs the storm for `STORM`, stops it, measures the lone caller, and checks invariants 7 and
/// 8 on the log.
async fn storm_and_check(
    what: &str,
    limiter: &AsyncRateLimiter,
    log: &AdmissionLog,
    tasks: Vec<JoinHandle<()>>,
) {
    let limits = Limits::new(RATE, limiter.burst());
    sleep(STORM.saturating_sub(log.start().elapsed())).await;
    stop(tasks).await;
    let waited = lone_caller(limiter).await;
    let entries = log.entries();
    eprintln!(
        "{what}: {} tokens in {STORM:?} ({:.1} % of rate·d), lone caller {waited:?}",
        log.tokens_until(STORM),
        100.0 * log.tokens_until(STORM) as f64 / (f64::from(RATE) * STORM.as_secs_f64())
    );
    support::check_invariant_7(what, &entries, limits);
    support::check_throughput(what, log, STORM, limits);
    support::check_lone_caller(what, waited, limits);
}

/// The measured workload of the bug report: every waiter is `timeout(random 1–50 ms, acquire())`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_storm_keeps_the_rate() {
    let limiter = limiter(2);
    let log = Arc::new(AdmissionLog::new());
    let tasks = spawn_storm(1, |_, mut rng| {
        let log = Arc::clone(&log);
        async move {
            loop {
                if timeout(rng.millis(1, 50), limiter.acquire()).await.is_ok() {
                    log.record(1);
                }
            }
        }
    });
    storm_and_check("timeout storm", limiter, &log, tasks).await;
}

/// `select!` around every await: against a random sleep, against a second acquire of the same
/// task (one wins, the loser is dropped mid-wait), and `acquire_n` of up to the burst against a
/// sleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_storm_against_sleeps_and_rival_acquires() {
    let limiter = limiter(4);
    let log = Arc::new(AdmissionLog::new());
    let tasks = spawn_storm(2, |_, mut rng| {
        let log = Arc::clone(&log);
        async move {
            loop {
                match rng.range(0, 2) {
                    0 => tokio::select! {
                        () = limiter.acquire() => log.record(1),
                        () = sleep(rng.millis(1, 50)) => {}
                    },
                    1 => tokio::select! {
                        () = limiter.acquire() => log.record(1),
                        () = limiter.acquire() => log.record(1),
                        () = sleep(rng.millis(1, 50)) => {}
                    },
                    _ => {
                        let n = rng.range(1, 4);
                        tokio::select! {
                            r = limiter.acquire_n(n) => {
                                r.unwrap();
                                log.record(n);
                            }
                            () = sleep(rng.millis(1, 50)) => {}
                        }
                    }
                }
            }
        }
    });
    storm_and_check("select storm", limiter, &log, tasks).await;
}

/// Bounded waits among cancelled ones: `acquire_n_within` and `acquire_n_before` with random
/// bounds of 0–50 ms (0 is a try), a third of them also under a shorter outer timeout. An
/// admitted bounded wait never overruns its bound by more than the timer slack; a refused one
/// is refused at once (up front), carries the instant it would have succeeded, and that instant
/// is past its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_waits_keep_their_bounds_and_the_rate() {
    let limiter = limiter(3);
    let log = Arc::new(AdmissionLog::new());
    let refused = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(Violations::new());
    let tasks = spawn_storm(3, |_, mut rng| {
        let (log, refused, bad) = (Arc::clone(&log), Arc::clone(&refused), Arc::clone(&bad));
        async move {
            loop {
                let n = rng.range(1, 3);
                let bound = rng.millis(0, 50);
                let within = rng.chance(1, 2);
                let outer = if rng.chance(1, 3) { rng.millis(1, 50) } else { Duration::MAX };
                let start = Instant::now();
                let start_lib = limiter.timer().from_tokio(start);
                let wait = async {
                    if within {
                        limiter.acquire_n_within(n, bound).await
                    } else {
                        let deadline = limiter.timer().from_tokio(start + bound);
                        limiter.acquire_n_before(n, deadline).await
                    }
                };
                let Ok(result) = timeout(outer, wait).await else { continue };
                let took = start.elapsed();
                let outcome = check_bounded_wait(&log, &bad, (n, bound, took, start_lib), result);
                if outcome == Bounded::Refused {
                    refused.fetch_add(1, Ordering::Relaxed);
                    sleep(rng.millis(1, 3)).await;
                }
            }
        }
    });
    storm_and_check("bounded waits", limiter, &log, tasks).await;
    bad.assert_none("bounded waits");
    assert!(refused.load(Ordering::Relaxed) > 0, "demand never exceeded a bound");
}

/// `run` and `wrap` under timeouts: the wrapped work runs only once its token is granted (so
/// its own log is the admission log), and a call dropped while waiting never runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_wrap_under_timeouts() {
    let limiter = limiter(2);
    let log = Arc::new(AdmissionLog::new());
    let ran = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let tasks = spawn_storm(4, |i, mut rng| {
        let (log, ran, completed) = (Arc::clone(&log), Arc::clone(&ran), Arc::clone(&completed));
        async move {
            let work = {
                let (log, ran) = (Arc::clone(&log), Arc::clone(&ran));
                move |id: u64| {
                    let (log, ran) = (Arc::clone(&log), Arc::clone(&ran));
                    async move {
                        log.record(1);
                        ran.fetch_add(1, Ordering::Relaxed);
                        id
                    }
                }
            };
            let wrapped = limiter.wrap(work.clone());
            loop {
                let d = rng.millis(1, 50);
                let done = if i % 2 == 0 {
                    timeout(d, limiter.run(work(i))).await.is_ok()
                } else {
                    tokio::select! {
                        id = wrapped(i) => { assert_eq!(id, i); true }
                        () = sleep(d) => false,
                    }
                };
                if done {
                    completed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    storm_and_check("run/wrap", limiter, &log, tasks).await;
    // The wrapped work completes in the poll that starts it, so every run is a completion
    // (allowing for tasks aborted between the two counters).
    let (ran, completed) = (ran.load(Ordering::Relaxed), completed.load(Ordering::Relaxed));
    assert!(ran >= completed && ran <= completed + TASKS, "ran {ran}, completed {completed}");
}

/// Many streams share one limiter, each polled under timeouts; half the time a timed-out
/// stream is dropped while its item waits. Half the streams are `rate_limited`, half
/// `rate_limited_by` with weights up to the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_under_timeouts_share_the_rate() {
    let limiter = limiter(4);
    let log = Arc::new(AdmissionLog::new());
    let tasks = spawn_storm(5, |i, mut rng| {
        let log = Arc::clone(&log);
        async move {
            loop {
                if i % 2 == 0 {
                    let mut items = pin!(stream::repeat(1u64).rate_limited(limiter));
                    loop {
                        match timeout(rng.millis(1, 50), items.next()).await {
                            Ok(Some(n)) => log.record(n),
                            Ok(None) => unreachable!("endless"),
                            Err(_) if rng.chance(1, 2) => break, // drop it mid-wait
                            Err(_) => {}
                        }
                    }
                } else {
                    let weights: Vec<u64> = (0..64).map(|_| rng.range(1, 4)).collect();
                    let mut items = pin!(stream::iter(weights).rate_limited_by(limiter, |w| *w));
                    loop {
                        match timeout(rng.millis(1, 50), items.next()).await {
                            Ok(Some(Ok(n))) => log.record(n),
                            Ok(Some(Err(rejected))) => panic!("weight ≤ burst refused: {rejected}"),
                            Ok(None) => break,
                            Err(_) if rng.chance(1, 2) => break,
                            Err(_) => {}
                        }
                    }
                }
            }
        }
    });
    storm_and_check("streams", limiter, &log, tasks).await;
}

/// A patient caller among the storm: `acquire_n(burst)` with no timeout is served within its
/// place in the queue (at most every task ahead of it, one token each, then its own n), never
/// starved by small requests, and never pushed back by the tokens others gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_large_request_is_not_starved_by_the_storm() {
    const BURST: u64 = 4;
    let limiter = limiter(BURST);
    let log = Arc::new(AdmissionLog::new());
    let tasks = spawn_storm(6, |_, mut rng| {
        let log = Arc::clone(&log);
        async move {
            loop {
                if timeout(rng.millis(1, 50), limiter.acquire()).await.is_ok() {
                    log.record(1);
                }
            }
        }
    });
    let limits = Limits::new(RATE, BURST);
    let bound = limits.interval() * (TASKS + BURST) as u32 + BOUNDED_WAIT_SLACK;
    for k in 0..4 {
        sleep(Duration::from_millis(400)).await;
        let start = Instant::now();
        let served = timeout(Duration::from_secs(2), limiter.acquire_n(BURST)).await;
        let took = start.elapsed();
        assert!(
            matches!(served, Ok(Ok(()))),
            "patient acquire_n({BURST}) #{k} not served within 2 s: {served:?}"
        );
        log.record(BURST);
        assert!(took <= bound, "patient acquire_n({BURST}) #{k} took {took:?}; bound {bound:?}");
    }
    stop(tasks).await;
    support::check_invariant_7("patient caller", &log.entries(), limits);
}
