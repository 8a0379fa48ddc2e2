//! `ModelRateLimiter` admission cost: `acquire` + `settle` on a warm model with room, the
//! same with 10 000 models in the map (lookup cost), and with a clock that moves 100 ms per
//! request (every window's ring in use, slots expiring as they go); then the feedback path:
//! `acquire_with` + `settle_io` with input and output limits, and `observe` of one response's
//! parsed headers (learn and drain two limits). Time is a `ManualClock`, so this measures the
//! limiter, not a clock.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use core::future::Future;
use core::hint::black_box;
use core::task::{Context, Poll};
use std::pin::pin;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::task::noop_waker;
use tollgate::model::{Counts, Estimate, Limit};
use tollgate::provider::{Provider, parse_headers};
use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};

fn roomy() -> RateLimitConfig {
    RateLimitConfig {
        rpm: u32::MAX,
        tpm: u64::MAX,
        max_parallel_requests: 64,
        ..Default::default()
    }
}

/// Polls a future that must complete on its first poll.
fn ready<F: Future>(fut: F) -> F::Output {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a warm model with room must admit at once"),
    }
}

fn acquire_settle(c: &mut Criterion) {
    let mut group = c.benchmark_group("model_acquire_settle");
    let one = ModelRateLimiter::<ManualClock>::new([("gpt-4", roomy())], roomy()).unwrap();
    group.bench_function("1 model", |b| {
        b.iter(|| ready(one.acquire(black_box("gpt-4"), black_box(1_000))).unwrap().settle(900))
    });
    let names: Vec<String> = (0..10_000).map(|i| format!("model-{i:05}")).collect();
    let many =
        ModelRateLimiter::<ManualClock>::new(names.iter().map(|n| (n.as_str(), roomy())), roomy())
            .unwrap();
    group.bench_function("10k models", |b| {
        b.iter(|| {
            ready(many.acquire(black_box("model-05000"), black_box(1_000))).unwrap().settle(900)
        })
    });
    let moving = ModelRateLimiter::<ManualClock>::new([("gpt-4", roomy())], roomy()).unwrap();
    group.bench_function("1 model, moving clock", |b| {
        b.iter(|| {
            moving.timer().advance(core::time::Duration::from_millis(100));
            ready(moving.acquire(black_box("gpt-4"), black_box(1_000))).unwrap().settle(900)
        })
    });
    group.finish();
}

fn feedback(c: &mut Criterion) {
    let mut group = c.benchmark_group("model_feedback");
    let minute = core::time::Duration::from_secs(60);
    let io = RateLimitConfig {
        limits: vec![
            Limit::window("itpm", Counts::InputTokens, u64::MAX, minute),
            Limit::window("otpm", Counts::OutputTokens, u64::MAX, minute),
        ],
        ..roomy()
    };
    let l = ModelRateLimiter::<ManualClock>::new([("claude", io.clone())], io).unwrap();
    group.bench_function("acquire_with + settle_io, 4 limits", |b| {
        b.iter(|| {
            let e = Estimate { input: black_box(1_000), output: black_box(500) };
            ready(l.acquire_with(black_box("claude"), e)).unwrap().settle_io(980, 420)
        })
    });
    let l = ModelRateLimiter::<ManualClock>::new([("gpt-4o", roomy())], roomy()).unwrap();
    let headers = [
        ("x-ratelimit-limit-requests", "5000"),
        ("x-ratelimit-remaining-requests", "4999"),
        ("x-ratelimit-reset-requests", "12ms"),
        ("x-ratelimit-limit-tokens", "800000"),
        ("x-ratelimit-remaining-tokens", "799000"),
        ("x-ratelimit-reset-tokens", "75ms"),
    ];
    let report = parse_headers(Provider::OpenAi, headers, None);
    group.bench_function("observe (parsed OpenAI headers)", |b| {
        b.iter(|| l.observe(black_box("gpt-4o"), black_box(&report)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, acquire_settle, feedback);
criterion_main!(benches);
