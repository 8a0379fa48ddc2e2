//! The blocking driver on the real clock. The limiter's logic is tested in the core with a
//! manual clock; these tests only check that waits really block, for about the right time,
//! and never hang. Bounds are loose: CI machines are shared and slow.

use core::time::Duration;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant as StdInstant;

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

/// The bucket's next free instant for one token, read without taking anything.
fn next_free(limiter: &RateLimiter) -> Instant {
    match limiter.bucket().peek_at(1, StdClock::new().now()) {
        Ok(()) => StdClock::new().now(),
        Err(e) => e.ready_at().expect("a refusal says when"),
    }
}

/// Polls `done` every millisecond for up to two seconds.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let give_up = StdInstant::now() + Duration::from_secs(2);
    while StdInstant::now() < give_up {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    done()
}

/// FIFO across threads: a waiting thread reserves on arrival (the bucket's next free instant
/// moves before it returns), so threads that arrive in a known order — large requests among
/// small ones — are admitted in that order, each no earlier than its booked instant.
#[test]
fn threads_are_admitted_in_arrival_order() {
    let limiter = Arc::new(RateLimiter::new(Rate::per_second(20), 3)); // 50 ms a token
    limiter.acquire_n(3).unwrap(); // empty: everyone below waits
    let admitted = Arc::new(Mutex::new(Vec::new()));
    let weights = [1, 3, 1, 2, 1, 3, 1];
    let mut threads = Vec::new();
    for (i, n) in weights.into_iter().enumerate() {
        let before = next_free(&limiter);
        let booked = match limiter.bucket().peek_at(n, StdClock::new().now()) {
            Err(e) => e.ready_at().unwrap(),
            Ok(()) => panic!("arrival {i}: {n} tokens free in an emptied bucket"),
        };
        let (mine, log) = (Arc::clone(&limiter), Arc::clone(&admitted));
        threads.push(thread::spawn(move || {
            mine.acquire_n(n).unwrap();
            let at = StdClock::new().now();
            log.lock().unwrap().push(i);
            (at, booked)
        }));
        // Arrival is the reservation: wait for it before the next thread arrives.
        assert!(eventually(|| next_free(&limiter) > before), "arrival {i} reserved nothing");
    }
    for (i, t) in threads.into_iter().enumerate() {
        let (at, booked) = t.join().unwrap();
        assert!(at >= booked, "arrival {i} admitted {:?} before its instant", booked - at);
    }
    assert_eq!(*admitted.lock().unwrap(), (0..weights.len()).collect::<Vec<_>>());
}

/// Threads and async tasks on one budget: while tasks wait in the async limiter's line, a
/// thread that must wait joins that line behind them instead of reserving past them.
#[test]
fn a_thread_does_not_overtake_tasks_waiting_in_line() {
    let limiter = Arc::new(RateLimiter::new(Rate::per_second(20), 1));
    limiter.acquire();
    let admitted = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for who in ["task 1", "task 2", "thread"] {
        let (mine, log) = (Arc::clone(&limiter), Arc::clone(&admitted));
        let waiting = limiter.as_async().waiters();
        threads.push(thread::spawn(move || {
            if who == "thread" {
                mine.acquire();
            } else {
                block_on(mine.as_async().acquire());
            }
            log.lock().unwrap().push(who);
        }));
        // Task 1 is the head (it holds the only reservation); task 2 waits behind it without
        // one. A thread reserving directly would go before task 2; it must queue instead.
        let in_line = eventually(|| limiter.as_async().waiters() > waiting);
        assert!(in_line, "{who} did not join the line");
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*admitted.lock().unwrap(), ["task 1", "task 2", "thread"]);
}

/// The bounded forms decide up front, from one clock reading, and a refusal takes nothing.
#[test]
fn bounded_waits_refuse_up_front_taking_nothing() {
    let limiter = RateLimiter::new(Rate::per_second(10), 1); // 100 ms a token
    limiter.acquire();
    let free_at = next_free(&limiter);
    let start = StdInstant::now();
    let within = limiter.acquire_n_within(1, Duration::from_millis(20)).unwrap_err();
    let deadline = StdClock::new().now() + Duration::from_millis(20);
    let before = limiter.acquire_before(deadline).unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(50), "{:?}", start.elapsed());
    for refused in [within, before] {
        assert!(matches!(refused, Error::MaxWaitExceeded { .. }), "{refused:?}");
        assert_eq!(refused.ready_at(), Some(free_at), "the instant it would have gone");
    }
    assert_eq!(next_free(&limiter), free_at, "a refusal reserved nothing");
    // A bound that covers the instant waits for it and no longer.
    limiter.acquire_before(free_at).unwrap();
    assert!(StdClock::new().now() >= free_at);
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
        core::future::poll_fn(|cx| {
            let a_done = first.as_mut().poll(cx).is_ready();
            let b_done = second.as_mut().poll(cx).is_ready();
            if a_done && b_done { core::task::Poll::Ready(()) } else { core::task::Poll::Pending }
        })
        .await;
    });
    assert!(timer.now() >= b);
    assert!(timer.now() - start < Duration::from_secs(1));
    let _: Instant = start;
}
