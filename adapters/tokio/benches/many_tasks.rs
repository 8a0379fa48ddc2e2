//! Many waiting tasks on one limiter: the process CPU time (user + system) and wall time for
//! 3 000 tasks to each take one token from a 1 000-a-second limiter with a burst of 1, so the
//! limiter paces them over about 3 s of real time.
//!
//! - `tollgate`: `tollgate_tokio::AsyncRateLimiter`, `acquire().await` per task. Each task
//!   waits in the limiter's line, then (at its head) reserves its instant and sleeps once on
//!   tokio's timer: woken at most twice.
//! - `governor`: `governor::RateLimiter::direct(..)` (default quanta clock), `until_ready().await`
//!   per task. A refused task sleeps (on `futures-timer`'s thread) until the limiter's earliest
//!   possible instant and checks again.
//!
//! Both run on a multi-thread tokio runtime with real time (no paused clock: governor sleeps
//! for real, so tollgate does too). The runtime and limiter are built before measuring; the
//! measured span is spawning the 3 000 tasks and awaiting them all. The two libraries take turns,
//! three runs each, and the medians are reported. This is a custom harness (not criterion):
//! one run takes seconds and the quantity of interest is CPU time, not latency.
//!
//! Run: `cargo bench -p tollgate-tokio --bench many_tasks` (about 20 s). Without `--bench`
//! (e.g. `cargo test --benches`) it does one quick run of each as a smoke test.
#![allow(missing_docs)] // the bench's items are not an API

use core::future::Future;
use core::num::NonZeroU32;
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use governor::{DefaultDirectRateLimiter, Quota};
use tokio::runtime::Runtime;
use tollgate_tokio::{AsyncRateLimiter, Rate};

/// Tokens a second on both limiters.
const RATE: u32 = 1_000;

/// What one run cost.
#[derive(Clone, Copy)]
struct Cost {
    cpu: Duration,
    wall: Duration,
}

/// User plus system CPU time of the whole process so far (every thread, including
/// runtime workers and timer threads).
#[cfg(unix)]
fn process_cpu_time() -> Duration {
    let micros = |t: libc::timeval| {
        let secs = u64::try_from(t.tv_sec).unwrap();
        let micros = u64::try_from(t.tv_usec).unwrap();
        Duration::from_secs(secs) + Duration::from_micros(micros)
    };
    // SAFETY: `rusage` is a plain C struct of integers, for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: `usage` is a valid, exclusively borrowed `rusage` for the call to fill in.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// No portable process CPU clock elsewhere: report zero rather than a wrong number.
#[cfg(not(unix))]
fn process_cpu_time() -> Duration {
    Duration::ZERO
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// Spawns `tasks` copies of `task()` on `rt` and waits for all of them, measuring process CPU
/// time and wall time over exactly that span.
fn measure<F>(rt: &Runtime, tasks: usize, mut task: impl FnMut() -> F) -> Cost
where
    F: Future<Output = ()> + Send + 'static,
{
    let cpu = process_cpu_time();
    let wall = StdInstant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks).map(|_| tokio::spawn(task())).collect();
        for handle in handles {
            handle.await.unwrap();
        }
    });
    Cost { cpu: process_cpu_time() - cpu, wall: wall.elapsed() }
}

fn tollgate_run(tasks: usize) -> Cost {
    let rt = runtime();
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(RATE), 1));
    // Fix the clock origin before measuring.
    let _ = limiter.available();
    measure(&rt, tasks, || {
        let limiter = Arc::clone(&limiter);
        async move { limiter.acquire().await }
    })
}

fn governor_run(tasks: usize) -> Cost {
    let rt = runtime();
    let quota = Quota::per_second(NonZeroU32::new(RATE).unwrap()).allow_burst(NonZeroU32::MIN);
    let limiter = Arc::new(DefaultDirectRateLimiter::direct(quota));
    measure(&rt, tasks, || {
        let limiter = Arc::clone(&limiter);
        async move { limiter.until_ready().await }
    })
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. `cargo test --benches`) gets a
    // quick smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let (tasks, runs) = if full { (3_000, 3) } else { (100, 1) };

    let mut tollgate = Vec::new();
    let mut governor = Vec::new();
    for run in 1..=runs {
        // Alternate so that a noisy moment on the machine hits both libraries alike.
        let t = tollgate_run(tasks);
        let g = governor_run(tasks);
        println!(
            "many_tasks run {run}: tollgate cpu {:8.1} ms wall {:7.1} ms | governor cpu {:8.1} ms wall {:7.1} ms",
            ms(t.cpu),
            ms(t.wall),
            ms(g.cpu),
            ms(g.wall)
        );
        tollgate.push(t);
        governor.push(g);
    }

    let cpu = |c: &[Cost]| median(c.iter().map(|c| c.cpu).collect());
    let wall = |c: &[Cost]| median(c.iter().map(|c| c.wall).collect());
    let (t_cpu, g_cpu) = (cpu(&tollgate), cpu(&governor));
    let (t_wall, g_wall) = (wall(&tollgate), wall(&governor));
    println!("many_tasks/{tasks} tasks at {RATE}/s, burst 1, median of {runs}:");
    println!("  {:<10} {:>12} {:>12}", "", "cpu (ms)", "wall (ms)");
    println!("  {:<10} {:>12.1} {:>12.1}", "tollgate", ms(t_cpu), ms(t_wall));
    println!("  {:<10} {:>12.1} {:>12.1}", "governor", ms(g_cpu), ms(g_wall));
    println!(
        "  {:<10} {:>12.3} {:>12.3}",
        "ratio",
        t_cpu.as_secs_f64() / g_cpu.as_secs_f64(),
        t_wall.as_secs_f64() / g_wall.as_secs_f64()
    );
}
