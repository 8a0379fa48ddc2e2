//! Timeout storm: how much of its rate a limiter still admits when every waiter gives up after a
//! timeout (ARCHITECTURE.md invariant 8). 50 tasks each loop
//! `tokio::time::timeout(d, acquire)` on a limiter of 100 a second with a burst of 1, for 3 s of
//! real time, on a multi-thread tokio runtime (2 workers). Counted: acquires that completed
//! before the end. Reported: admitted as a share of the ideal `burst + rate·run`, and
//! tollgate's share over the best peer's.
//!
//! - `tollgate`: `tollgate_tokio::AsyncRateLimiter::new(Rate::per_second(100), 1)`, `acquire()`.
//! - `governor`: `RateLimiter::direct(Quota::per_second(100).allow_burst(1))`, `until_ready()`.
//! - `leaky-bucket`: `RateLimiter::builder().max(1).initial(1).refill(1).interval(10 ms)`
//!   (its default fair scheduler), `acquire_one()`.
//!
//! Two timeout patterns: every waiter 20 ms (two emission intervals), and a random 1–50 ms per
//! attempt (seeded, the same sequence for every library). The libraries take turns, three runs
//! each per pattern; the medians are reported. Custom harness (`harness = false`), about 60 s.
//!
//! Run: `cargo bench -p tollgate-tokio --bench timeout_storm`. Without `--bench` (e.g.
//! `cargo test --benches`) it does one short run of each as a smoke test.
#![allow(missing_docs)] // the bench's items are not an API

use core::future::Future;
use core::num::NonZeroU32;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota};
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tollgate_tokio::{AsyncRateLimiter, Rate};

const RATE: u32 = 100;
const BURST: u32 = 1;
const TASKS: u64 = 50;

#[derive(Clone, Copy)]
enum Timeouts {
    Fixed(Duration),
    /// Uniform in 1..=50 ms, from a per-task seeded xorshift.
    Random,
}

impl Timeouts {
    fn name(self) -> String {
        match self {
            Timeouts::Fixed(d) => format!("timeout {} ms", d.as_millis()),
            Timeouts::Random => "timeout random 1-50 ms".to_string(),
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Runs the storm for `run` with `acquire` as each task's wait; returns the admitted count.
fn storm<F, Fut>(run: Duration, timeouts: Timeouts, acquire: F) -> u64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let rt = runtime();
    let acquire = Arc::new(acquire);
    let admitted = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let end = Instant::now() + run;
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let (acquire, admitted) = (Arc::clone(&acquire), Arc::clone(&admitted));
                tokio::spawn(async move {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i + 1));
                    loop {
                        let d = match timeouts {
                            Timeouts::Fixed(d) => d,
                            Timeouts::Random => Duration::from_micros(1_000 + rng.next() % 49_001),
                        };
                        let ok = tokio::time::timeout(d, acquire()).await.is_ok();
                        if Instant::now() >= end {
                            break;
                        }
                        if ok {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    admitted.load(Ordering::Relaxed)
}

fn tollgate_run(run: Duration, timeouts: Timeouts) -> u64 {
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(RATE), u64::from(BURST)));
    storm(run, timeouts, move || {
        let limiter = Arc::clone(&limiter);
        async move { limiter.acquire().await }
    })
}

fn governor_run(run: Duration, timeouts: Timeouts) -> u64 {
    let quota = Quota::per_second(NonZeroU32::new(RATE).unwrap())
        .allow_burst(NonZeroU32::new(BURST).unwrap());
    let limiter = Arc::new(DefaultDirectRateLimiter::direct(quota));
    storm(run, timeouts, move || {
        let limiter = Arc::clone(&limiter);
        async move { limiter.until_ready().await }
    })
}

fn leaky_bucket_run(run: Duration, timeouts: Timeouts) -> u64 {
    let limiter = Arc::new(
        leaky_bucket::RateLimiter::builder()
            .max(BURST as usize)
            .initial(BURST as usize)
            .refill(1)
            .interval(Duration::from_secs(1) / RATE)
            .build(),
    );
    storm(run, timeouts, move || {
        let limiter = Arc::clone(&limiter);
        async move { limiter.acquire_one().await }
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (run, runs) =
        if full { (Duration::from_secs(3), 3) } else { (Duration::from_millis(300), 1) };
    let ideal = f64::from(BURST) + f64::from(RATE) * run.as_secs_f64();
    let pct = |n: u64| 100.0 * n as f64 / ideal;

    for timeouts in [Timeouts::Fixed(Duration::from_millis(20)), Timeouts::Random] {
        let (mut t, mut g, mut l) = (Vec::new(), Vec::new(), Vec::new());
        for i in 1..=runs {
            // Alternate so that a noisy moment on the machine hits every library alike.
            let (a, b, c) = (
                tollgate_run(run, timeouts),
                governor_run(run, timeouts),
                leaky_bucket_run(run, timeouts),
            );
            println!(
                "timeout_storm [{}] run {i}: tollgate {a} ({:.1} %) | governor {b} ({:.1} %) | leaky-bucket {c} ({:.1} %)",
                timeouts.name(),
                pct(a),
                pct(b),
                pct(c)
            );
            t.push(pct(a));
            g.push(pct(b));
            l.push(pct(c));
        }
        let (t, g, l) = (median(t), median(g), median(l));
        println!(
            "timeout_storm/{TASKS} tasks at {RATE}/s burst {BURST}, {} over {run:?}, median of {runs} (admitted / ideal {ideal:.0}):",
            timeouts.name()
        );
        println!("  {:<14} {:>8.1} %", "tollgate", t);
        println!("  {:<14} {:>8.1} %", "governor", g);
        println!("  {:<14} {:>8.1} %", "leaky-bucket", l);
        println!("  {:<14} {:>8.3}", "ratio vs best", t / g.max(l));
    }
}
