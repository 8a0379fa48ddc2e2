//! `AsyncRateLimiter` on tokio's paused clock: every wait is exact and takes no real time.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tollgate_tokio::{AsyncRateLimiter, Error, Rate};

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn burst_then_exact_pacing() {
    let limiter = AsyncRateLimiter::per_second(10);
    let start = Instant::now();
    for _ in 0..10 {
        limiter.acquire().await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    for k in 1..=20u32 {
        limiter.acquire().await;
        assert_eq!(start.elapsed(), 100 * MS * k);
    }
    assert!(limiter.try_acquire().is_err());
}

#[tokio::test(start_paused = true)]
async fn long_run_rate_is_exact() {
    // 3 per second for 1000 s: the burst of 3, then 3000 more, the last at exactly 1000 s.
    let limiter = AsyncRateLimiter::per_second(3);
    let start = Instant::now();
    for _ in 0..3_003 {
        limiter.acquire().await;
    }
    let elapsed = start.elapsed();
    let ideal = Duration::from_secs(1_000);
    assert!(elapsed >= ideal && elapsed - ideal <= MS, "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    // A big request queued first is not overtaken by the small ones behind it.
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(10), 5));
    limiter.acquire_n(5).await.unwrap();
    let start = Instant::now();
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for id in 0..12u64 {
        let (limiter, done) = (Arc::clone(&limiter), Arc::clone(&done));
        let n = if id == 0 { 5 } else { 1 };
        tasks.push(tokio::spawn(async move {
            limiter.acquire_n(n).await.unwrap();
            done.lock().unwrap().push((id, start.elapsed()));
        }));
        // Let it reserve before the next one arrives: arrival order is spawn order.
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    let done = done.lock().unwrap().clone();
    let expected: Vec<_> = (0..12u64).map(|id| (id, 100 * MS * (5 + id as u32))).collect();
    assert_eq!(done, expected);
}

#[tokio::test(start_paused = true)]
async fn more_than_the_burst_fails_at_once() {
    let limiter = AsyncRateLimiter::per_second(10);
    let start = Instant::now();
    assert_eq!(
        limiter.acquire_n(11).await,
        Err(Error::InsufficientCapacity { requested: 11, capacity: 10 })
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(limiter.available(), 10);
}

#[tokio::test(start_paused = true)]
async fn max_wait_is_refused_up_front() {
    let limiter = AsyncRateLimiter::new(Rate::per_second(1), 1);
    limiter.acquire().await;
    let start = Instant::now();
    let refused = limiter.acquire_n_within(1, 500 * MS).await;
    assert!(matches!(refused, Err(Error::MaxWaitExceeded { .. })));
    assert_eq!(start.elapsed(), Duration::ZERO);
    limiter.acquire_n_within(1, 1_000 * MS).await.unwrap();
    assert_eq!(start.elapsed(), 1_000 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_gives_its_token_back() {
    let limiter = AsyncRateLimiter::new(Rate::per_second(10), 1);
    limiter.acquire().await;
    let start = Instant::now();
    // The timeout drops the acquire future half way through its wait...
    assert!(tokio::time::timeout(50 * MS, limiter.acquire()).await.is_err());
    assert_eq!(start.elapsed(), 50 * MS);
    // ...so the next waiter takes its place, at 100 ms rather than 200 ms.
    limiter.acquire().await;
    assert_eq!(start.elapsed(), 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn an_aborted_task_gives_its_token_back() {
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(10), 1));
    limiter.acquire().await;
    let start = Instant::now();
    let waiting = tokio::spawn({
        let limiter = Arc::clone(&limiter);
        async move { limiter.acquire().await }
    });
    tokio::task::yield_now().await; // it reserves 100 ms
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    limiter.acquire().await;
    assert_eq!(start.elapsed(), 100 * MS);
}

/// Counts how often the wrapped future is polled.
struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: u32,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = u32;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        self.polls += 1;
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(_) => Poll::Ready(self.polls),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// No herd: however many wait, each waiter is woken at most twice — once when it reaches the
/// head of the line, once by its own timer (queue first, reserve at the head) — so it is polled
/// at most three times, and every one finishes at its own millisecond.
#[tokio::test(start_paused = true)]
async fn ten_thousand_waiters_finish_on_time_each_woken_at_most_twice() {
    const WAITERS: u32 = 10_000;
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(1_000), 1));
    limiter.acquire().await;
    let start = Instant::now();
    let tasks: Vec<_> = (0..WAITERS)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let polls = CountPolls {
                    inner: Box::pin(async move { limiter.acquire().await }),
                    polls: 0,
                }
                .await;
                (polls, start.elapsed())
            })
        })
        .collect();
    let mut finished = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (polls, at) = task.await.unwrap();
        assert!(polls <= 3, "polled {polls} times");
        finished.push(at);
    }
    // One token every millisecond: each waiter finishes exactly at its own millisecond.
    finished.sort();
    let expected: Vec<_> = (1..=WAITERS).map(|k| MS * k).collect();
    assert_eq!(finished, expected);
    assert_eq!(start.elapsed(), MS * WAITERS);
}

/// The one real-time test: a multi-thread runtime cannot start paused. Loose bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_the_multi_thread_runtime() {
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(100), 1));
    let start = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire().await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= 89 * MS && elapsed < Duration::from_secs(1), "{elapsed:?}");
}

/// The model limiter on tokio's paused clock: RPM waits end exactly when the window allows.
#[tokio::test(start_paused = true)]
async fn the_model_limiter_runs_on_the_paused_clock() {
    use std::sync::Arc;
    use tollgate_tokio::{ModelRateLimiter, RateLimitConfig};

    let limiter = Arc::new(
        ModelRateLimiter::new(
            [(
                "m",
                RateLimitConfig {
                    rpm: 2,
                    tpm: 1_000,
                    max_parallel_requests: 2,
                    ..Default::default()
                },
            )],
            RateLimitConfig::default(),
        )
        .unwrap(),
    );
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let permit = limiter.acquire_owned("m", 100).await.unwrap();
                let admitted = start.elapsed();
                permit.settle(100);
                admitted
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in tasks {
        times.push(t.await.unwrap());
    }
    times.sort();
    assert_eq!(times[0], core::time::Duration::ZERO);
    assert_eq!(times[1], core::time::Duration::ZERO);
    // The third waits until second 0 has left the 60 s window (one-second slots).
    assert!(times[2] >= core::time::Duration::from_secs(60), "{:?}", times[2]);
    assert!(times[2] <= core::time::Duration::from_secs(61), "{:?}", times[2]);
    assert_eq!(limiter.stats()["m"].active.used, 0);
}

/// The review's second measurement (issue 8): 20 clients, each retrying
/// `timeout(50 ms, acquire())` on 10/s for 5 s of paused time. Reserving for every waiter at
/// once admitted 1 request instead of ~50, and a lone `acquire()` afterwards waited 195 s for
/// tokens nobody used. Now every token of the 5 s is used and the lone caller waits at most
/// one emission interval.
#[tokio::test(start_paused = true)]
async fn clients_that_time_out_leave_the_rate_intact() {
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(10), 1));
    let admitted = Arc::new(Mutex::new(0u32));
    let start = Instant::now();
    let end = start + Duration::from_secs(5);
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
            tokio::spawn(async move {
                while Instant::now() < end {
                    let wait = tokio::time::timeout(50 * MS, limiter.acquire());
                    if wait.await.is_ok() && Instant::now() < end {
                        *admitted.lock().unwrap() += 1;
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    // The burst of 1 at 0 s, then one every 100 ms up to (not including) 5 s.
    assert_eq!(*admitted.lock().unwrap(), 50);
    let lone = Instant::now();
    limiter.acquire().await;
    assert!(lone.elapsed() <= 100 * MS, "a lone caller waited {:?}", lone.elapsed());
}
