//! `acquire().await` with tokens available, on a tokio current-thread runtime:
//! `tollgate_tokio::AsyncRateLimiter` beside `leaky-bucket`'s `acquire_one().await`.
//!
//! Both limiters are configured so that no acquire ever waits: tollgate at 10^9 tokens a second
//! with a burst of 10^9 (the bucket refills faster than the loop drains it), leaky-bucket with
//! 2^40 tokens initially and as its maximum, refilled by 2^40 every millisecond. Every
//! iteration is therefore the non-waiting path: one clock reading and one atomic update for
//! tollgate, and for leaky-bucket its default *fair* scheduler (which takes its lock on every
//! acquire) or, in the `leaky-bucket(unfair)` entry, its lock-free fast path.
//!
//! A timed sample is one `block_on` running `iters` acquires in a loop, so the runtime's
//! entry cost is amortised away and the figure is the cost of one awaited acquire.
//!
//! Run: `cargo bench -p tollgate-tokio --bench async_acquire -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use core::future::Future;
use core::hint::black_box;
use core::time::Duration;
use std::time::Instant as StdInstant;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tollgate_tokio::{AsyncRateLimiter, Rate};

/// tollgate: one token a nanosecond, so a loop of acquires never empties the bucket.
const TOLLGATE_RATE: u32 = 1_000_000_000;
/// leaky-bucket: a balance no sample can spend, topped up every millisecond.
const LEAKY_TOKENS: usize = 1 << 40;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}

/// Times `iters` sequential awaits of `acquire` inside one `block_on`.
fn timed<F: Future<Output = ()>>(
    rt: &Runtime,
    iters: u64,
    mut acquire: impl FnMut() -> F,
) -> Duration {
    rt.block_on(async {
        let start = StdInstant::now();
        for _ in 0..iters {
            acquire().await;
        }
        start.elapsed()
    })
}

fn leaky(fair: bool) -> leaky_bucket::RateLimiter {
    leaky_bucket::RateLimiter::builder()
        .max(LEAKY_TOKENS)
        .initial(LEAKY_TOKENS)
        .refill(LEAKY_TOKENS)
        .interval(Duration::from_millis(1))
        .fair(fair)
        .build()
}

fn acquire_available(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("async_acquire/available");

    // leaky-bucket reads tokio's clock when it is built, so build everything inside the runtime.
    let tollgate = rt.block_on(async {
        let limiter =
            AsyncRateLimiter::new(Rate::per_second(TOLLGATE_RATE), u64::from(TOLLGATE_RATE));
        limiter.acquire().await; // fixes the clock origin outside the timed loop
        limiter
    });
    group.bench_function("tollgate", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || black_box(&tollgate).acquire()))
    });

    let fair = rt.block_on(async { leaky(true) });
    group.bench_function("leaky-bucket", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || black_box(&fair).acquire_one()))
    });

    let unfair = rt.block_on(async { leaky(false) });
    group.bench_function("leaky-bucket(unfair)", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || black_box(&unfair).acquire_one()))
    });
    group.finish();
}

criterion_group!(benches, acquire_available);
criterion_main!(benches);
