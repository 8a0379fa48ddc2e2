//! Contended *waiting* on the blocking limiter: 8 threads share one
//! `tollgate_std::RateLimiter` of 1 000/s with a burst of 1 and take 2 000 tokens between them,
//! so nearly every call waits. Reported per run, then as the median of the runs:
//!
//! - `wall`: from the release of the threads (one barrier) to the last admission, against the
//!   ideal of 1 999 ms (the first token is free, then one per millisecond);
//! - `cpu`: CPU time of the 8 worker threads, from each thread's own
//!   `/proc/thread-self/schedstat` (nanoseconds on a CPU), and per acquire;
//! - `switches`: the workers' voluntary context switches (`/proc/thread-self/status`) per
//!   acquire — how many times a waiting thread went to sleep;
//! - `process cpu`: the whole process's user + system time from `/proc/self/stat` (clock
//!   ticks), which also counts any helper thread the limiter might use.
//!
//! Two forms: `acquire()` and `acquire_within(1 s)` (a bound that never binds here).
//!
//! Linux only (it reads `/proc`); elsewhere it prints the wall times alone.
//!
//! Run: `cargo bench -p tollgate-std --bench waiting` (`-- 9` for nine runs of each form).
#![allow(missing_docs)] // a bench binary, not API

use core::time::Duration;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use tollgate_std::{Clock, Rate, RateLimiter, StdClock};

const THREADS: u64 = 8;
const TOTAL: u64 = 2_000;
const RATE: u32 = 1_000;
const IDEAL: Duration = Duration::from_millis(1_999);

#[derive(Clone, Copy, Default)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    switches: u64,
    process_ticks: u64,
}

/// (nanoseconds on a CPU, voluntary context switches) of the calling thread, if `/proc` has them.
fn thread_usage() -> Option<(u64, u64)> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let cpu = schedstat.split_whitespace().next()?.parse().ok()?;
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let switches = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()?;
    Some((cpu, switches))
}

/// utime + stime of the whole process, in clock ticks.
fn process_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after its `)` are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11); // field 14 is utime
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn run(within: bool) -> Sample {
    let limiter = Arc::new(RateLimiter::new(Rate::per_second(RATE), 1));
    let barrier = Arc::new(Barrier::new(THREADS as usize + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (limiter, barrier) = (Arc::clone(&limiter), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let before = thread_usage();
                for _ in 0..TOTAL / THREADS {
                    if within {
                        limiter
                            .acquire_within(Duration::from_secs(1))
                            .expect("the bound never binds");
                    } else {
                        limiter.acquire();
                    }
                }
                let done = Instant::now();
                let usage =
                    before.zip(thread_usage()).map(|((c0, s0), (c1, s1))| (c1 - c0, s1 - s0));
                (done, usage)
            })
        })
        .collect();
    let ticks_before = process_ticks();
    barrier.wait();
    let start = Instant::now();
    let mut sample = Sample::default();
    for worker in workers {
        let (done, usage) = worker.join().expect("worker panicked");
        sample.wall = sample.wall.max(done - start);
        if let Some((cpu, switches)) = usage {
            sample.cpu += Duration::from_nanos(cpu);
            sample.switches += switches;
        }
    }
    sample.process_ticks = ticks_before.zip(process_ticks()).map_or(0, |(a, b)| b - a);
    sample
}

fn median<T: Copy + Ord>(mut values: Vec<T>) -> T {
    values.sort_unstable();
    values[values.len() / 2]
}

fn main() {
    // Criterion-style arguments (`--bench`) are ignored; a bare number is the run count.
    let runs = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5usize).max(1);
    core::hint::black_box(StdClock::new().now()); // calibrate the clock outside the runs
    println!(
        "waiting: {THREADS} threads, {TOTAL} acquires, {RATE}/s burst 1, ideal {IDEAL:?}, {runs} runs"
    );
    for (name, within) in [("acquire", false), ("acquire_within", true)] {
        let samples: Vec<Sample> = (0..runs).map(|_| run(within)).collect();
        for s in &samples {
            println!(
                "  {name}: wall {:.1} ms ({:.4}× ideal), cpu {:.1} ms ({:.1} µs/acquire), \
                 switches {:.2}/acquire, process cpu {} ticks",
                s.wall.as_secs_f64() * 1e3,
                s.wall.as_secs_f64() / IDEAL.as_secs_f64(),
                s.cpu.as_secs_f64() * 1e3,
                s.cpu.as_secs_f64() * 1e6 / TOTAL as f64,
                s.switches as f64 / TOTAL as f64,
                s.process_ticks,
            );
        }
        let wall = median(samples.iter().map(|s| s.wall).collect());
        let cpu = median(samples.iter().map(|s| s.cpu).collect());
        let switches = median(samples.iter().map(|s| s.switches).collect());
        let ticks = median(samples.iter().map(|s| s.process_ticks).collect());
        println!(
            "{name} median: wall {:.1} ms ({:.4}× ideal), cpu {:.1} ms ({:.1} µs/acquire), \
             switches {:.2}/acquire, process cpu {ticks} ticks",
            wall.as_secs_f64() * 1e3,
            wall.as_secs_f64() / IDEAL.as_secs_f64(),
            cpu.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e6 / TOTAL as f64,
            switches as f64 / TOTAL as f64,
        );
    }
}
