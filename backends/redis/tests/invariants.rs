//! Invariants under real concurrency in one process: many tokio tasks on a real clock, every
//! acquire raced against a timeout or a `select!`, permits settled, refunded or dropped. From
//! the admission log in server time: requests and tokens within every 2 s window, parallel
//! slots never exceeded, and throughput at least 90 % of the binding limit (cancellations cost
//! nothing).

mod support;

use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tollgate::RateLimitConfig;
use tollgate::model::Limit;
use tollgate_redis::{ModelRateLimiter, RedisStore};

const WINDOW_US: i64 = 2_000_000;
const MAX_REQUESTS: usize = 20;
const MAX_TOKENS: u64 = 3_000;
const PARALLEL: usize = 4;

struct Rng(u64);

impl Rng {
    fn upto(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % (max + 1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Admission {
    at_us: i64,
    tokens: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_in_every_window_and_throughput_stays_high() {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let config = RateLimitConfig {
        rpm: 100_000,
        tpm: 10_000_000,
        max_parallel_requests: PARALLEL as u32,
        limits: vec![
            Limit::requests("r2s", MAX_REQUESTS as u64, Duration::from_secs(2)).with_slots(20),
            Limit::tokens("t2s", MAX_TOKENS, Duration::from_secs(2)).with_slots(20),
        ],
    };
    let limiter = Arc::new(
        ModelRateLimiter::builder(store, "inv")
            .model("m", config)
            .ticket_ttl(Duration::from_millis(600))
            .build()
            .unwrap(),
    );
    let log = Arc::new(Mutex::new(Vec::<Admission>::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let run = Duration::from_secs(6);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (limiter, log, in_flight, most, cancelled) =
            (limiter.clone(), log.clone(), in_flight.clone(), most.clone(), cancelled.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9 ^ ((t + 1) * 0x1234_5678_9abc));
            while start.elapsed() < run {
                let est = 50 + rng.upto(100);
                let permit = match rng.upto(4) {
                    // Raced against a short timeout: often cancelled while queued.
                    0 => {
                        let d = Duration::from_millis(rng.upto(200));
                        match tokio::time::timeout(d, limiter.acquire("m", est)).await {
                            Ok(p) => p.unwrap(),
                            Err(_) => {
                                cancelled.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        }
                    }
                    // Raced in a select! against a sleep.
                    1 => {
                        let d = Duration::from_millis(50 + rng.upto(300));
                        tokio::select! {
                            p = limiter.acquire("m", est) => p.unwrap(),
                            () = tokio::time::sleep(d) => {
                                cancelled.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        }
                    }
                    _ => match limiter.acquire_within("m", est, Duration::from_secs(3)).await {
                        Ok(p) => p,
                        Err(e) => {
                            assert!(e.limit().is_some(), "{e:?}");
                            continue;
                        }
                    },
                };
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let at_us = permit.admitted_at_server_micros().expect("counted in Redis");
                tokio::time::sleep(Duration::from_millis(rng.upto(30))).await;
                let dropped = rng.upto(9) == 0;
                let tokens = if dropped { est } else { rng.upto(est) };
                log.lock().unwrap().push(Admission { at_us, tokens });
                in_flight.fetch_sub(1, Ordering::SeqCst);
                if dropped {
                    drop(permit); // the estimate stays charged
                } else {
                    permit.settle(tokens).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(20), t).await.expect("no task hangs").unwrap();
    }
    let mut log = log.lock().unwrap().clone();
    log.sort_by_key(|a| a.at_us);
    assert!(most.load(Ordering::SeqCst) <= PARALLEL, "parallel: {}", most.load(Ordering::SeqCst));
    for (i, a) in log.iter().enumerate() {
        let window: Vec<&Admission> =
            log[i..].iter().take_while(|b| b.at_us < a.at_us + WINDOW_US).collect();
        assert!(window.len() <= MAX_REQUESTS, "{} requests in [{}, +2 s)", window.len(), a.at_us);
        let tokens: u64 = window.iter().map(|b| b.tokens).sum();
        assert!(tokens <= MAX_TOKENS, "{tokens} tokens in [{}, +2 s)", a.at_us);
    }
    // Throughput: the first 6 s of admissions (three windows of 20) hold at least 90 %.
    let first = log[0].at_us;
    let in_run = log.iter().filter(|a| a.at_us < first + 3 * WINDOW_US).count();
    let ideal = 3 * MAX_REQUESTS;
    eprintln!(
        "admitted {in_run} of {ideal} in 6 s ({} cancelled waits), most in flight {}",
        cancelled.load(Ordering::Relaxed),
        most.load(Ordering::SeqCst)
    );
    assert!(in_run * 10 >= ideal * 9, "throughput {in_run}/{ideal}");
    assert!(cancelled.load(Ordering::Relaxed) > 10, "the cancellations must have happened");
    // Nothing leaks: every slot comes back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = limiter.stats().await.unwrap();
    assert_eq!(stats["m"].active.used, 0, "{stats:?}");
}
