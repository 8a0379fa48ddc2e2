//! The async-io timer under both runtimes it serves. async-io has no paused clock, so these
//! run in real time: short waits, loose bounds.

use core::future::Future;
use core::pin::Pin;
use core::time::Duration;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tollgate_async_std::{AsyncRateLimiter, Error, Rate};

const MS: Duration = Duration::from_millis(1);

type Spawn = fn(Pin<Box<dyn Future<Output = ()> + Send>>) -> Pin<Box<dyn Future<Output = ()>>>;

fn smol_spawn(f: Pin<Box<dyn Future<Output = ()> + Send>>) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(smol::spawn(f))
}

fn async_std_spawn(
    f: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async_std::task::spawn(f))
}

/// Burst of 2, then one every 25 ms: 6 acquires take 100 ms.
async fn burst_then_pacing() {
    let limiter = AsyncRateLimiter::new(Rate::per_second(40), 2);
    let start = Instant::now();
    limiter.acquire().await;
    limiter.acquire().await;
    assert!(start.elapsed() < 20 * MS, "{:?}", start.elapsed());
    for _ in 0..4 {
        limiter.acquire().await;
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= 95 * MS && elapsed < Duration::from_secs(1), "{elapsed:?}");
}

/// Tasks spawned in order (each reserving before the next arrives) finish in that order.
async fn fifo_across_tasks(spawn: Spawn) {
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(50), 1));
    limiter.acquire().await;
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for id in 0..5 {
        let (limiter, done) = (Arc::clone(&limiter), Arc::clone(&done));
        // Reserve here, in order, then let the task do the waiting.
        tasks.push(spawn(Box::pin(async move {
            limiter.acquire().await;
            done.lock().unwrap().push(id);
        })));
        // The spawned task may not have been polled yet; give it time to reserve.
        async_io::Timer::after(2 * MS).await;
    }
    for task in tasks {
        task.await;
    }
    assert_eq!(*done.lock().unwrap(), [0, 1, 2, 3, 4]);
}

async fn too_big_fails_at_once() {
    let limiter = AsyncRateLimiter::new(Rate::per_minute(1), 2);
    let start = Instant::now();
    assert_eq!(
        limiter.acquire_n(3).await,
        Err(Error::InsufficientCapacity { requested: 3, capacity: 2 })
    );
    assert!(matches!(limiter.acquire_n_within(1, Duration::from_secs(1)).await, Ok(())));
    assert!(matches!(limiter.try_acquire(), Ok(())));
    assert!(matches!(
        limiter.acquire_n_within(1, Duration::from_secs(1)).await,
        Err(Error::MaxWaitExceeded { .. })
    ));
    assert!(start.elapsed() < 100 * MS);
}

/// A waiter dropped mid-wait gives its token back: the next one goes at 40 ms, not 80 ms.
async fn cancelled_waiter_returns_its_token() {
    let limiter = AsyncRateLimiter::new(Rate::per_second(25), 1);
    limiter.acquire().await;
    let start = Instant::now();
    {
        let waiting = limiter.acquire();
        let timeout = async {
            async_io::Timer::after(10 * MS).await;
        };
        drop_first_when_second_ends(waiting, timeout).await;
    }
    limiter.acquire().await;
    let elapsed = start.elapsed();
    assert!(elapsed >= 35 * MS && elapsed < 75 * MS, "{elapsed:?}");
}

/// Runs both futures until the second completes, dropping the first (it must not win).
async fn drop_first_when_second_ends(
    first: impl Future<Output = ()>,
    second: impl Future<Output = ()>,
) {
    let mut first = std::pin::pin!(first);
    let mut second = std::pin::pin!(second);
    core::future::poll_fn(|cx| {
        assert!(first.as_mut().poll(cx).is_pending(), "the waiter finished early");
        second.as_mut().poll(cx)
    })
    .await;
}

#[test]
fn smol_burst_then_pacing() {
    smol::block_on(burst_then_pacing());
}

#[test]
fn async_std_burst_then_pacing() {
    async_std::task::block_on(burst_then_pacing());
}

#[test]
fn smol_fifo_across_tasks() {
    smol::block_on(fifo_across_tasks(smol_spawn));
}

#[test]
fn async_std_fifo_across_tasks() {
    async_std::task::block_on(fifo_across_tasks(async_std_spawn));
}

#[test]
fn smol_too_big_fails_at_once() {
    smol::block_on(too_big_fails_at_once());
}

#[test]
fn async_std_too_big_fails_at_once() {
    async_std::task::block_on(too_big_fails_at_once());
}

#[test]
fn smol_cancelled_waiter_returns_its_token() {
    smol::block_on(cancelled_waiter_returns_its_token());
}

#[test]
fn async_std_cancelled_waiter_returns_its_token() {
    async_std::task::block_on(cancelled_waiter_returns_its_token());
}
