//! `#[limit_rate]` on real functions: pacing on tokio's paused clock, shared budgets, and every
//! shape of signature the attribute must keep intact.
#![deny(warnings)]

use core::time::Duration;
use std::sync::LazyLock;

use tokio::time::Instant;
use tollgate_macros::{limit_rate_std, limit_rate_tokio as limit_rate};
use tollgate_tokio::{AsyncRateLimiter, Rate, TokioTimer};

/// Milliseconds since `start`, on tokio's (paused) clock.
fn ms_since(start: Instant) -> u128 {
    start.elapsed().as_millis()
}

#[limit_rate(requests_per_second = 2)]
async fn ping() {}

#[tokio::test(start_paused = true)]
async fn own_limiter_bursts_then_paces() {
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..5 {
        ping().await;
        at.push(ms_since(start));
    }
    assert_eq!(at, [0, 0, 500, 1_000, 1_500]);
}

#[limit_rate(requests_per_second = 10, burst = 1)]
async fn no_burst() {}

#[tokio::test(start_paused = true)]
async fn burst_argument_sets_the_bucket_size() {
    let start = Instant::now();
    no_burst().await;
    no_burst().await;
    no_burst().await;
    assert_eq!(ms_since(start), 200);
}

static SHARED: AsyncRateLimiter =
    AsyncRateLimiter::with_timer(Rate::per_second(1), 1, TokioTimer::new());

#[limit_rate(limiter = SHARED)]
async fn fetch_user(id: u32) -> u32 {
    id
}

#[limit_rate(limiter = SHARED)]
async fn fetch_order(id: u32) -> u32 {
    id + 1_000
}

#[tokio::test(start_paused = true)]
async fn a_shared_limiter_is_one_budget_for_several_functions() {
    let start = Instant::now();
    assert_eq!(fetch_user(1).await, 1);
    assert_eq!(fetch_order(1).await, 1_001);
    assert_eq!(fetch_user(2).await, 2);
    assert_eq!(ms_since(start), 2_000);
}

static LAZY: LazyLock<AsyncRateLimiter> = LazyLock::new(|| AsyncRateLimiter::per_second(4));

#[limit_rate(limiter = LAZY)]
async fn lazy() {}

#[tokio::test(start_paused = true)]
async fn a_lazy_lock_limiter_works_too() {
    let start = Instant::now();
    for _ in 0..5 {
        lazy().await;
    }
    assert_eq!(ms_since(start), 250);
}

#[tokio::test(start_paused = true)]
async fn calls_from_many_tasks_share_the_function_limiter() {
    #[limit_rate(requests_per_second = 5)]
    async fn job(i: u32) -> u32 {
        i
    }
    let start = Instant::now();
    let handles: Vec<_> = (0..10).map(|i| tokio::spawn(job(i))).collect();
    for h in handles {
        h.await.unwrap();
    }
    // 5 at once, then 5 more at 200 ms intervals.
    assert_eq!(ms_since(start), 1_000);
}

/// Everything around the function survives: attributes, visibility, generics, where clauses,
/// receivers, inner attributes, early returns, `impl Trait` arguments.
mod shapes {
    use super::*;

    pub struct Client {
        pub limiter: AsyncRateLimiter,
        pub calls: core::sync::atomic::AtomicU32,
    }

    impl Client {
        #[limit_rate(limiter = self.limiter)]
        pub async fn call(&self) -> u32 {
            self.calls.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1
        }

        #[limit_rate(requests_per_second = 100)]
        #[must_use]
        pub(crate) async fn generic<T, U>(&mut self, t: T, u: impl Into<U>) -> (T, U)
        where
            T: Clone + Send,
        {
            #![allow(clippy::redundant_clone)]
            (t.clone(), u.into())
        }

        #[limit_rate(requests_per_second = 100)]
        pub async fn consume(self) -> Result<u32, String> {
            if self.calls.into_inner() > 100 {
                return Err("too many".into());
            }
            Ok(7)
        }
    }

    pub trait Api {
        async fn get(&self, key: &str) -> usize;
    }

    impl Api for Client {
        #[limit_rate(requests_per_second = 100)]
        async fn get(&self, key: &str) -> usize {
            key.len()
        }
    }

    #[limit_rate(requests_per_second = 1, burst = 3, crate = renamed)]
    pub async fn renamed_crate<'a>(s: &'a str) -> &'a str {
        s
    }

    use tollgate_tokio as renamed;
}

#[tokio::test(start_paused = true)]
async fn signatures_are_kept_intact() {
    use shapes::{Api, Client};
    let mut client = Client {
        limiter: AsyncRateLimiter::with_timer(Rate::per_second(1), 1, TokioTimer::new()),
        calls: Default::default(),
    };
    let start = Instant::now();
    assert_eq!(client.call().await, 1);
    assert_eq!(client.call().await, 2);
    assert_eq!(ms_since(start), 1_000, "the field limiter paces the method");
    let pair: (String, u64) = client.generic("a".to_string(), 3u32).await;
    assert_eq!(pair, ("a".to_string(), 3));
    assert_eq!(client.get("four").await, 4);
    assert_eq!(client.consume().await, Ok(7));
    assert_eq!(shapes::renamed_crate("x").await, "x");
}

// The blocking flavour, on the std adapter's real clock: loose bounds, well under a second.
#[limit_rate_std(requests_per_second = 50, burst = 1)]
fn blocking_ping() -> u8 {
    1
}

static STD_SHARED: tollgate_std::RateLimiter =
    tollgate_std::RateLimiter::new(Rate::per_second(50), 2);

#[limit_rate_std(limiter = STD_SHARED)]
fn blocking_a() {}

#[limit_rate_std(limiter = STD_SHARED)]
fn blocking_b() {}

#[test]
fn the_blocking_flavour_blocks_the_thread() {
    let start = std::time::Instant::now();
    let sum: u8 = (0..4).map(|_| blocking_ping()).sum();
    assert_eq!(sum, 4);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(55), "3 waits of 20 ms, got {elapsed:?}");
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");

    let start = std::time::Instant::now();
    blocking_a();
    blocking_b(); // the burst of 2
    blocking_a(); // then 20 ms
    blocking_b();
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(35), "2 waits of 20 ms, got {elapsed:?}");
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
}
