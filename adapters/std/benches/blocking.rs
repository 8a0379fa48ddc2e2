//! Blocking `try_acquire` on the real clock: `tollgate_std::RateLimiter` (default `StdClock`)
//! beside `governor`'s `RateLimiter::direct(..).check()` (its default quanta clock).
//!
//! Unlike the root `bucket` bench, which passes one fixed instant to both libraries, every
//! decision here reads its library's clock, as a caller's would. Each scenario is one criterion
//! group, so the libraries sit side by side in the report:
//!
//! - `allowed_1t`: one thread, a rate of 10^9 a second with a burst of 10^9, so the bucket
//!   refills faster than any thread can drain it and every decision is admitted;
//! - `rejected_1t`: one thread, one token an hour with a burst of 1, spent before timing, so
//!   every decision is refused;
//! - `allowed_2t` / `rejected_2t`: the same with two threads hammering one shared limiter; the
//!   time reported is per decision *per thread* (the slower thread's wall time for `iters`
//!   decisions), so it is directly comparable with the one-thread figures.
//!
//! tollgate's refusal carries the instant the token will be ready; governor's `check()` returns
//! a `NotUntil` that computes it only when asked. The `governor+wait` entry asks, so that cost
//! is visible too.
//!
//! Run: `cargo bench -p tollgate-std --bench blocking -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use core::hint::black_box;
use core::num::NonZeroU32;

// Shared with the core's bucket bench, so both measure contention the same way.
#[path = "../../../benches/support/timed.rs"]
mod timed;
use timed::timed;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{DefaultDirectRateLimiter, Quota};
use tollgate_std::{Clock, Rate, RateLimiter, StdClock};

/// Tokens a second (and burst) on the allowed path: one a nanosecond.
const ALLOWED_RATE: u32 = 1_000_000_000;

fn tollgate_allowed() -> RateLimiter {
    RateLimiter::new(Rate::per_second(ALLOWED_RATE), u64::from(ALLOWED_RATE))
}

fn governor_allowed() -> DefaultDirectRateLimiter {
    governor::RateLimiter::direct(Quota::per_second(NonZeroU32::new(ALLOWED_RATE).unwrap()))
}

/// One token an hour, already spent: nothing is admitted during the run.
fn tollgate_drained() -> RateLimiter {
    let limiter = RateLimiter::new(Rate::per_hour(1), 1);
    limiter.try_acquire().unwrap();
    limiter
}

fn governor_drained() -> DefaultDirectRateLimiter {
    let limiter = governor::RateLimiter::direct(Quota::per_hour(NonZeroU32::MIN));
    limiter.check().unwrap();
    limiter
}

fn tollgate_admits(limiter: &RateLimiter) {
    let r = limiter.try_acquire();
    debug_assert!(r.is_ok());
    black_box(r).ok();
}

fn governor_admits(limiter: &DefaultDirectRateLimiter) {
    let r = limiter.check();
    debug_assert!(r.is_ok());
    black_box(r).ok();
}

fn tollgate_refuses(limiter: &RateLimiter) {
    let r = limiter.try_acquire();
    debug_assert!(r.is_err());
    black_box(r).ok();
}

fn governor_refuses(limiter: &DefaultDirectRateLimiter) {
    let r = limiter.check();
    debug_assert!(r.is_err());
    black_box(r).ok();
}

/// governor's refusal plus the instant it could go, which tollgate's refusal always carries.
fn governor_refuses_with_wait(limiter: &DefaultDirectRateLimiter) {
    let r = limiter.check().map_err(|not_until| not_until.earliest_possible());
    debug_assert!(r.is_err());
    black_box(r).ok();
}

fn decisions(c: &mut Criterion) {
    // Both clocks calibrate on first use; pay that before anything is timed.
    black_box(StdClock::new().now());
    black_box(governor_allowed().check()).ok();

    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("blocking/allowed_{threads}t"));
        let limiter = tollgate_allowed();
        group.bench_function("tollgate", |b| {
            b.iter_custom(|iters| timed(&limiter, threads, iters, tollgate_admits))
        });
        let limiter = governor_allowed();
        group.bench_function("governor", |b| {
            b.iter_custom(|iters| timed(&limiter, threads, iters, governor_admits))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("blocking/rejected_{threads}t"));
        let limiter = tollgate_drained();
        group.bench_function("tollgate", |b| {
            b.iter_custom(|iters| timed(&limiter, threads, iters, tollgate_refuses))
        });
        let limiter = governor_drained();
        group.bench_function("governor", |b| {
            b.iter_custom(|iters| timed(&limiter, threads, iters, governor_refuses))
        });
        group.bench_function("governor+wait", |b| {
            b.iter_custom(|iters| timed(&limiter, threads, iters, governor_refuses_with_wait))
        });
        group.finish();
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
