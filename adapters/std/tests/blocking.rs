//! The blocking driver on the real clock. The limiter's logic is tested in the core with a
//! manual clock; these tests only check that waits really block, for about the right time,
//! and never hang. Bounds are loose: CI machines are shared and slow.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use tollgate_std::{Clock, Error, Instant, Rate, RateLimiter, StdClock, StdTimer, Timer, block_on};

#[test]
fn blocking_acquires_are_paced_by_the_real_clock() {
    let limiter = RateLimiter::new(Rate::per_second(20), 1);
    let start = StdInstant::now();
    for _ in 0..5 {
        limiter.acquire();
    }
    let elapsed = start.elapsed();
    // 1 at once, then 4 × 50 ms.
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[test]
fn threads_share_one_budget() {
    // Burst 5, then one every 10 ms: 20 acquires over 4 threads need at least 150 ms.
    let limiter = Arc::new(RateLimiter::new(Rate::per_second(100), 5));
    let start = StdInstant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || {
                for _ in 0..5 {
                    limiter.acquire_n(1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(145), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[test]
fn more_than_the_burst_fails_at_once() {
    let limiter = RateLimiter::new(Rate::per_minute(1), 3);
    let start = StdInstant::now();
    let expected = Error::InsufficientCapacity { requested: 4, capacity: 3 };
    assert_eq!(limiter.acquire_n(4), Err(expected));
    assert_eq!(limiter.acquire_n_within(4, Duration::from_secs(60)), Err(expected));
    assert_eq!(limiter.try_acquire_n(4), Err(expected));
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(limiter.available(), 3, "nothing was taken");
}

#[test]
fn a_timeout_too_short_is_refused_up_front() {
    let limiter = RateLimiter::new(Rate::per_minute(1), 1);
    limiter.acquire();
    let start = StdInstant::now();
    let refused = limiter.acquire_n_within(1, Duration::from_secs(1));
    assert!(matches!(refused, Err(Error::MaxWaitExceeded { .. })), "{refused:?}");
    assert!(matches!(limiter.acquire_within(Duration::ZERO), Err(Error::MaxWaitExceeded { .. })));
    assert!(start.elapsed() < Duration::from_millis(100));
    // A timeout long enough waits, then succeeds.
    let limiter = RateLimiter::new(Rate::per_second(50), 1);
    limiter.acquire();
    assert_eq!(limiter.acquire_n_within(1, Duration::from_millis(500)), Ok(()));
}

#[test]
fn try_acquire_never_blocks() {
    let limiter = RateLimiter::per_second(2);
    assert_eq!(limiter.burst(), 2);
    limiter.try_acquire().unwrap();
    limiter.try_acquire_n(1).unwrap();
    let err = limiter.try_acquire().unwrap_err();
    let ready_at = err.ready_at().unwrap();
    assert!(ready_at > StdClock::new().now());
}

#[test]
fn a_static_limiter_works() {
    static LIMITER: RateLimiter = RateLimiter::new(Rate::per_second(1_000), 2);
    LIMITER.acquire();
    LIMITER.acquire();
    LIMITER.acquire(); // ~1 ms
}

/// A `StdTimer` sleep polled by another executor wakes through the helper thread.
#[test]
fn std_timer_sleeps_under_a_foreign_executor() {
    let timer = StdTimer::new();
    let start = StdInstant::now();
    let deadline = timer.now() + Duration::from_millis(30);
    futures_executor::block_on(timer.sleep_until(deadline));
    assert!(timer.now() >= deadline);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(29), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    // The async limiter behind a blocking one, awaited on a foreign executor.
    let limiter = RateLimiter::new(Rate::per_second(50), 1);
    limiter.acquire();
    let start = StdInstant::now();
    futures_executor::block_on(limiter.as_async().acquire());
    assert!(start.elapsed() >= Duration::from_millis(15), "{:?}", start.elapsed());
}

/// Many sleepers on the helper thread, with different deadlines, all wake.
#[test]
fn the_helper_thread_serves_many_sleepers() {
    let timer = StdTimer::new();
    let now = timer.now();
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            thread::spawn(move || {
                let deadline = now + Duration::from_millis(5 * (8 - i));
                futures_executor::block_on(StdTimer::new().sleep_until(deadline));
                assert!(StdTimer::new().now() >= deadline);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// `block_on` drives several sleeps joined together, parking until the earliest each time.
#[test]
fn block_on_parks_until_the_earliest_deadline() {
    let timer = StdTimer::new();
    let start = timer.now();
    let (a, b) = (start + Duration::from_millis(20), start + Duration::from_millis(40));
    block_on(async {
        let (mut first, mut second) =
            (std::pin::pin!(timer.sleep_until(a)), std::pin::pin!(timer.sleep_until(b)));
        std::future::poll_fn(|cx| {
            let a_done = first.as_mut().poll(cx).is_ready();
            let b_done = second.as_mut().poll(cx).is_ready();
            if a_done && b_done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
        })
        .await;
    });
    assert!(timer.now() >= b);
    assert!(timer.now() - start < Duration::from_secs(1));
    let _: Instant = start;
}
