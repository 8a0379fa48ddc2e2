//! `ModelRateLimiter` admission cost: `acquire` + `settle` on a warm model with room, the
//! same with 10 000 models in the map (lookup cost), and with a clock that moves 100 ms per
//! request (every window's ring in use, slots expiring as they go). Time is a `ManualClock`,
//! so this measures the limiter, not a clock.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use core::future::Future;
use core::hint::black_box;
use core::task::{Context, Poll};
use std::pin::pin;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::task::noop_waker;
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

criterion_group!(benches, acquire_settle);
criterion_main!(benches);
