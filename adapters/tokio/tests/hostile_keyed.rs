//! Hostile use of the keyed limiter on a real multi-thread tokio runtime with the real clock:
//! many tasks over many keys, every await under a random `timeout` or `select!`, every acquire
//! form (borrowed, owned, bounded), and a stream of one-off keys that grows the map. Each hot
//! key has its own admission log, checked against ARCHITECTURE.md's invariants:
//!
//! - 7: per key, in any interval of length d, admitted ≤ burst + rate·d (+ the recording-lag
//!   slack of `support::RECORDING_LAG`);
//! - 8: per key, with demand above the rate and every waiter under a timeout, admitted ≥ 95 %
//!   of rate·d, and right after the storm a lone caller waits at most one emission interval;
//!
//! and afterwards, once every bucket has had time to refill, eviction returns `len()` to 0.
//!
//! Per-key rate 100/s (10 ms emission interval) for 2.5 s storms: 95 % is 238 tokens a key,
//! and each test takes about 3 s of real time.

mod support;

use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::Arc;

use support::{AdmissionLog, Limits, Rng};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tollgate_tokio::{KeyedRateLimiter, Rate};

const RATE: u32 = 100;
const BURST: u64 = 2;
/// Keys with demand far above their rate.
const HOT_KEYS: u64 = 8;
/// Tasks hammering each hot key.
const TASKS_PER_KEY: u64 = 5;
const STORM: Duration = Duration::from_millis(2_500);
const LONE_LIMIT: Duration = Duration::from_secs(1);
/// Where the one-off keys start (far from the hot ones).
const ONE_OFF_BASE: u64 = 1 << 32;

type Limiter = Arc<KeyedRateLimiter<u64>>;

fn logs() -> Arc<Vec<AdmissionLog>> {
    Arc::new((0..HOT_KEYS).map(|_| AdmissionLog::new()).collect())
}

/// Cancels every task at whatever await it is in and waits until each is gone.
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

/// Tasks that take one-off keys with `try_acquire` (a scan of client addresses, say), so the
/// map keeps growing while the hot keys are contended. Returns the tasks and the largest
/// `len()` they saw.
fn spawn_one_off_keys(limiter: &Limiter, seed: u64) -> (Vec<JoinHandle<()>>, Arc<AtomicUsize>) {
    let max_len = Arc::new(AtomicUsize::new(0));
    let tasks = (0..2)
        .map(|i| {
            let (limiter, max_len) = (Arc::clone(limiter), Arc::clone(&max_len));
            let mut rng = Rng::new(seed ^ (i + 1));
            tokio::spawn(async move {
                loop {
                    for _ in 0..20 {
                        let key = ONE_OFF_BASE + rng.range(0, 1_000_000);
                        let _ = limiter.try_acquire(&key);
                    }
                    max_len.fetch_max(limiter.len(), Ordering::Relaxed);
                    sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    (tasks, max_len)
}

/// Runs the storm for `STORM`, stops it, measures a lone caller on key 0, checks invariants 7
/// and 8 per hot key, then checks that eviction forgets every key once all have refilled.
async fn storm_and_check(
    what: &str,
    limiter: &Limiter,
    logs: &[AdmissionLog],
    mut tasks: Vec<JoinHandle<()>>,
) {
    let (one_off, max_len) = spawn_one_off_keys(limiter, 99);
    tasks.extend(one_off);
    let limits = Limits::new(RATE, BURST);
    sleep(STORM.saturating_sub(logs[0].start().elapsed())).await;
    stop(tasks).await;
    let start = Instant::now();
    let waited = timeout(LONE_LIMIT, limiter.acquire(&0)).await.ok().map(|()| start.elapsed());
    for (key, log) in logs.iter().enumerate() {
        let entries = log.entries();
        let what = format!("{what}, key {key}");
        eprintln!(
            "{what}: {} tokens in {STORM:?} ({:.1} % of rate·d)",
            log.tokens_until(STORM),
            100.0 * log.tokens_until(STORM) as f64 / (f64::from(RATE) * STORM.as_secs_f64())
        );
        support::check_invariant_7(&what, &entries, limits);
        support::check_throughput(&what, log, STORM, limits);
    }
    support::check_lone_caller(what, waited, limits);

    let peak = max_len.load(Ordering::Relaxed);
    assert!(peak > 100, "{what}: the one-off keys never grew the map ({peak} keys)");
    // Tens of thousands of one-off keys were taken, each live for one emission interval
    // (10 ms): incremental eviction keeps the map near the few hundred live at a time.
    assert!(peak < 10_000, "{what}: {peak} keys held at once: refilled keys are not forgotten");
    // Every bucket is full again after burst / rate = 20 ms; give the timer some room.
    sleep(Duration::from_millis(50)).await;
    limiter.retain_recent();
    assert_eq!(limiter.len(), 0, "{what}: keys left after everything refilled (peak {peak})");
    limiter.shrink_to_fit();
    assert_eq!(limiter.table_bytes(), 0, "{what}: the tables kept memory");
    eprintln!("{what}: peak {peak} keys held, 0 after the storm");
}

/// `timeout(random 1–50 ms, acquire(&key))` on every hot key, borrowed and owned forms mixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_storm_over_many_keys_keeps_each_keys_rate_and_then_forgets_them() {
    let limiter: Limiter = Arc::new(KeyedRateLimiter::new(Rate::per_second(RATE), BURST));
    let logs = logs();
    let mut rng = Rng::new(1);
    let mut tasks = Vec::new();
    for key in 0..HOT_KEYS {
        for t in 0..TASKS_PER_KEY {
            let (limiter, logs) = (Arc::clone(&limiter), Arc::clone(&logs));
            let mut rng = rng.fork(key * TASKS_PER_KEY + t);
            tasks.push(tokio::spawn(async move {
                loop {
                    let admitted = if rng.chance(1, 2) {
                        timeout(rng.millis(1, 50), limiter.acquire(&key)).await.is_ok()
                    } else {
                        let owned = Arc::clone(&limiter).acquire_n_owned(key, 1);
                        matches!(timeout(rng.millis(1, 50), owned).await, Ok(Ok(())))
                    };
                    if admitted {
                        logs[key as usize].record(1);
                    }
                }
            }));
        }
    }
    storm_and_check("keyed timeout storm", &limiter, &logs, tasks).await;
}

/// `select!` against sleeps and against a rival acquire of the same key, `acquire_n` of up to
/// the burst, and bounded waits of 0–30 ms (0 is a try) that are refused up front when they
/// could not be served in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_and_bounded_storm_over_many_keys() {
    let limiter: Limiter = Arc::new(KeyedRateLimiter::new(Rate::per_second(RATE), BURST));
    let logs = logs();
    let mut rng = Rng::new(2);
    let mut tasks = Vec::new();
    for key in 0..HOT_KEYS {
        for t in 0..TASKS_PER_KEY {
            let (limiter, logs) = (Arc::clone(&limiter), Arc::clone(&logs));
            let mut rng = rng.fork(key * TASKS_PER_KEY + t);
            tasks.push(tokio::spawn(async move {
                let log = &logs[key as usize];
                loop {
                    match rng.range(0, 3) {
                        0 => tokio::select! {
                            () = limiter.acquire(&key) => log.record(1),
                            () = sleep(rng.millis(1, 50)) => {}
                        },
                        1 => tokio::select! {
                            () = limiter.acquire(&key) => log.record(1),
                            () = limiter.acquire(&key) => log.record(1),
                            () = sleep(rng.millis(1, 50)) => {}
                        },
                        2 => {
                            let n = rng.range(1, BURST);
                            tokio::select! {
                                r = limiter.acquire_n(&key, n) => {
                                    r.unwrap();
                                    log.record(n);
                                }
                                () = sleep(rng.millis(1, 50)) => {}
                            }
                        }
                        _ => match limiter.acquire_within(&key, rng.millis(0, 30)).await {
                            Ok(()) => log.record(1),
                            Err(_) => sleep(rng.millis(1, 3)).await,
                        },
                    }
                }
            }));
        }
    }
    storm_and_check("keyed select storm", &limiter, &logs, tasks).await;
}
