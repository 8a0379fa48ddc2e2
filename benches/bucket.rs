//! Token-bucket decision cost, tollgate beside governor, with time passed in explicitly.
//!
//! Each scenario is one criterion group, so the two libraries sit side by side in the report:
//!
//! - `allowed_1t` / `rejected_1t`: one thread deciding on one bucket;
//! - `allowed_2t` / `rejected_2t`: two threads hammering the same bucket; the time reported
//!   is per decision *per thread* (wall time of `iters` decisions on each thread).
//!
//! Both sides see the same fixed instant (1 s after their epoch: tollgate through
//! `try_acquire_at(1, now)`, governor through a `FakeRelativeClock` that is never advanced)
//! and the same rates. The allowed path uses a burst of `u32::MAX` so that a fresh limiter per
//! sample admits every decision at that one instant; the rejected path uses a burst of 1,
//! spent before timing. Neither library computes when a refused request could go unless asked
//! (governor's `NotUntil` and tollgate's `Refusal` both convert on demand); the `+wait`
//! entries ask for that instant, so that cost is visible too.
//!
//! Run: `cargo bench --bench bucket -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use core::hint::black_box;
use core::num::NonZeroU32;
use core::time::Duration;

#[path = "support/timed.rs"]
mod timed;
use timed::timed;

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use tollgate::{Instant, Rate, TokenBucket};

/// The fixed decision instant on both sides.
const NOW: Instant = Instant::from_secs(1);

type Governor = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

/// Rate and burst of one scenario, built identically for both libraries.
#[derive(Clone, Copy)]
struct Shape {
    per_second: u32,
    burst: u32,
}

/// Many tokens a second and a burst big enough that every timed decision is admitted.
const ALLOWED: Shape = Shape { per_second: 1_000_000, burst: u32::MAX };
/// One token a second, burst 1: after the first decision every one is refused.
const REJECTED: Shape = Shape { per_second: 1, burst: 1 };

fn tollgate_bucket(shape: Shape) -> TokenBucket {
    TokenBucket::new(Rate::per_second(shape.per_second), shape.burst as u64)
}

fn governor_limiter(shape: Shape) -> Governor {
    let quota = Quota::per_second(NonZeroU32::new(shape.per_second).unwrap())
        .allow_burst(NonZeroU32::new(shape.burst).unwrap());
    let clock = FakeRelativeClock::default();
    clock.advance(NOW.elapsed_since_epoch());
    RateLimiter::direct_with_clock(quota, clock)
}

/// A fresh limiter per sample, so the allowed path never runs dry; samples too long for one
/// burst (never, at criterion's sample sizes) are split over several limiters.
fn allowed_path<S: Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    threads: usize,
    make: impl Fn() -> S,
    decide: impl Fn(&S) + Sync + Copy,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let per_limiter = u64::from(ALLOWED.burst) / threads as u64;
            let mut left = iters;
            let mut total = Duration::ZERO;
            while left > 0 {
                let chunk = left.min(per_limiter);
                let state = make();
                total += timed(&state, threads, chunk, decide);
                left -= chunk;
            }
            total
        })
    });
}

fn rejected_path<S: Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    threads: usize,
    state: &S,
    decide: impl Fn(&S) + Sync + Copy,
) {
    group.bench_function(name, |b| b.iter_custom(|iters| timed(state, threads, iters, decide)));
}

fn tollgate_allowed(bucket: &TokenBucket) {
    let r = bucket.try_acquire_at(black_box(1), black_box(NOW));
    debug_assert!(r.is_ok());
    black_box(r).ok();
}

fn governor_allowed(limiter: &Governor) {
    let r = limiter.check();
    debug_assert!(r.is_ok());
    black_box(r).ok();
}

fn tollgate_rejected(bucket: &TokenBucket) {
    let r = bucket.try_acquire_at(black_box(1), black_box(NOW));
    debug_assert!(r.is_err());
    black_box(r).ok();
}

fn governor_rejected(limiter: &Governor) {
    let r = limiter.check();
    debug_assert!(r.is_err());
    black_box(r).ok();
}

/// tollgate's refusal plus the instant it could go: the lazy conversion, paid when asked.
fn tollgate_rejected_with_wait(bucket: &TokenBucket) {
    let r = bucket.try_acquire_at(black_box(1), black_box(NOW)).map_err(|e| e.ready_at());
    debug_assert!(r.is_err());
    black_box(r).ok();
}

/// governor's refusal plus the instant it could go.
fn governor_rejected_with_wait(limiter: &Governor) {
    let r = limiter.check().map_err(|not_until| not_until.earliest_possible());
    debug_assert!(r.is_err());
    black_box(r).ok();
}

fn decisions(c: &mut Criterion) {
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("bucket/allowed_{threads}t"));
        allowed_path(
            &mut group,
            "tollgate",
            threads,
            || tollgate_bucket(ALLOWED),
            tollgate_allowed,
        );
        allowed_path(
            &mut group,
            "governor",
            threads,
            || governor_limiter(ALLOWED),
            governor_allowed,
        );
        group.finish();

        let mut group = c.benchmark_group(format!("bucket/rejected_{threads}t"));
        let bucket = tollgate_bucket(REJECTED);
        bucket.try_acquire_at(1, NOW).unwrap();
        rejected_path(&mut group, "tollgate", threads, &bucket, tollgate_rejected);
        rejected_path(&mut group, "tollgate+wait", threads, &bucket, tollgate_rejected_with_wait);
        let limiter = governor_limiter(REJECTED);
        limiter.check().unwrap();
        rejected_path(&mut group, "governor", threads, &limiter, governor_rejected);
        rejected_path(&mut group, "governor+wait", threads, &limiter, governor_rejected_with_wait);
        group.finish();
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
