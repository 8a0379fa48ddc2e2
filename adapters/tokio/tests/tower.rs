//! The tower layer: clones share one budget, the token is taken when the inner service is
//! called (invariant 9, no banking), waits are FIFO and free to cancel, and the bounded and
//! refusing policies fail at once with the wait.
//!
//! Most tests run on tokio's paused clock, so every instant is exact; the last one runs on a
//! real multi-thread runtime.
#![cfg(feature = "tower")]

use core::convert::Infallible;
use core::future::{Future, Ready, poll_fn, ready};
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::sync::{Arc, Mutex};

use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tollgate_tokio::{
    AsyncRateLimiter, Error, Rate, RateLimitLayer, RateLimited, TokioTimer, WhenLimited,
};
use tower::load_shed::error::Overloaded;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// An inner service that records the instant of every call it is passed, and is ready only
/// from `opens_at` on.
struct Recorder {
    calls: Arc<Mutex<Vec<Instant>>>,
    opens_at: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Recorder {
    fn new(opens_at: Instant) -> Self {
        Self { calls: Arc::default(), opens_at, sleep: None }
    }

    fn calls(&self) -> Arc<Mutex<Vec<Instant>>> {
        Arc::clone(&self.calls)
    }
}

impl Clone for Recorder {
    fn clone(&self) -> Self {
        Self { calls: Arc::clone(&self.calls), opens_at: self.opens_at, sleep: None }
    }
}

impl Service<u32> for Recorder {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if Instant::now() >= self.opens_at {
            return Poll::Ready(Ok(()));
        }
        let at = self.opens_at;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(sleep_until(at)));
        sleep.as_mut().poll(cx).map(Ok)
    }

    fn call(&mut self, n: u32) -> Self::Future {
        self.calls.lock().unwrap().push(Instant::now());
        ready(Ok(n))
    }
}

/// Invariant 9 on a log of inner calls: in every closed interval `[t_i, t_j]`, the calls are
/// at most `burst + rate·(t_j - t_i)`.
fn assert_no_banking(what: &str, calls: &[Instant], per_second: u64, burst: u64) {
    let mut calls = calls.to_vec();
    calls.sort();
    for i in 0..calls.len() {
        for j in i..calls.len() {
            let span = calls[j] - calls[i];
            let allowed = burst + (span.as_nanos() * u128::from(per_second) / 1_000_000_000) as u64;
            let seen = (j - i + 1) as u64;
            assert!(
                seen <= allowed,
                "{what}: {seen} calls reached the inner service within {span:?} \
                 (allowed {allowed}: burst {burst} + {per_second}/s); calls at {:?}",
                calls.iter().map(|t| *t - calls[0]).collect::<Vec<_>>()
            );
        }
    }
}

/// Issue 8, item 3: ten clones on 1/s burst 1 whose inner service opens at 10 s. They wait in
/// `poll_ready` for the inner service meanwhile; the ten idle seconds must not turn into ten
/// calls at 10 s.
#[tokio::test(start_paused = true)]
async fn clones_waiting_for_the_inner_service_bank_nothing() {
    let start = Instant::now();
    let inner = Recorder::new(start + Duration::from_secs(10));
    let calls = inner.calls();
    let service = RateLimitLayer::new(Rate::per_second(1), 1).layer(inner);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let mut mine = service.clone();
            tokio::spawn(async move {
                loop {
                    let ready = mine.ready().await.unwrap();
                    let _ = ready.call(i).await;
                }
            })
        })
        .collect();
    sleep_until(start + Duration::from_millis(15_500)).await;
    for task in &tasks {
        task.abort();
    }
    let calls = calls.lock().unwrap().clone();
    // 10 s, 11 s, …, 15 s: one at the opening (the burst), then one a second.
    assert_eq!(
        calls.len(),
        6,
        "calls at {:?}",
        calls.iter().map(|t| *t - start).collect::<Vec<_>>()
    );
    assert_no_banking("inner opens at 10 s", &calls, 1, 1);
}

/// Issue 8, item 3: callers that hold a ready service for a long time, then call together
/// (as `ReadyCache` and balancers keep services ready): no burst beyond the bucket.
#[tokio::test(start_paused = true)]
async fn callers_holding_ready_services_bank_nothing() {
    let start = Instant::now();
    let inner = Recorder::new(start);
    let calls = inner.calls();
    let service = RateLimitLayer::new(Rate::per_second(5), 1).layer(inner);
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let mut mine = service.clone();
            tokio::spawn(async move {
                let ready = mine.ready().await.unwrap();
                sleep_until(start + Duration::from_secs(10)).await;
                ready.call(i).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 5);
    assert_no_banking("held ready for 10 s", &calls, 5, 1);
    // FIFO at the rate: 10 s, 10.2 s, …, 10.8 s.
    assert_eq!(*calls.iter().max().unwrap() - start, 10_800 * MS);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_budget() {
    let inner = Recorder::new(Instant::now());
    let calls = inner.calls();
    let service = RateLimitLayer::new(Rate::per_second(10), 2).layer(inner);
    let (mut a, mut b) = (service.clone(), service);
    let start = Instant::now();
    assert_eq!(a.ready().await.unwrap().call(1).await.unwrap(), 1);
    assert_eq!(b.ready().await.unwrap().call(2).await.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::ZERO); // the burst of 2, between both clones
    assert_eq!(a.ready().await.unwrap().call(3).await.unwrap(), 3);
    assert_eq!(start.elapsed(), 100 * MS);
    assert_eq!(b.ready().await.unwrap().call(4).await.unwrap(), 4);
    assert_eq!(start.elapsed(), 200 * MS);
    assert_eq!(calls.lock().unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn many_clones_in_tasks_keep_the_rate() {
    let limiter = Arc::new(AsyncRateLimiter::new(Rate::per_second(100), 1));
    let inner = Recorder::new(Instant::now());
    let calls = inner.calls();
    let service = RateLimitLayer::from_limiter(Arc::clone(&limiter)).layer(inner);
    let start = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(i).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(start.elapsed(), 190 * MS);
    assert_no_banking("20 oneshots", &calls.lock().unwrap(), 100, 1);
    // The layer's limiter is the one we passed: it is empty now.
    assert!(limiter.try_acquire().is_err());
}

/// `poll_ready` takes nothing: a service that was made ready and dropped (or never called)
/// leaves the budget as it was.
#[tokio::test(start_paused = true)]
async fn ready_services_hold_no_token() {
    let layer = RateLimitLayer::new(Rate::per_second(1), 1);
    let service = layer.layer(Recorder::new(Instant::now()));
    let mut held: Vec<_> = (0..5).map(|_| service.clone()).collect();
    for s in &mut held {
        s.ready().await.unwrap();
    }
    assert_eq!(layer.limiter().available(), 1, "ready services took nothing");
    drop(held);
    let start = Instant::now();
    let mut next = service.clone();
    assert_eq!(next.ready().await.unwrap().call(7).await.unwrap(), 7);
    assert_eq!(start.elapsed(), Duration::ZERO);
    // Spent now: the next one waits a full period (in `poll_ready`, the waiting policy's
    // backpressure).
    let mut last = service;
    last.ready().await.unwrap();
    assert_eq!(start.elapsed(), 1_000 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_ready_clone_swapped_out_and_called_keeps_the_budget() {
    // The hyper/axum pattern: poll_ready on `self`, swap in a fresh clone, call the ready one.
    let inner = Recorder::new(Instant::now());
    let calls = inner.calls();
    let mut service = RateLimitLayer::new(Rate::per_second(10), 1).layer(inner);
    let start = Instant::now();
    for i in 0..3 {
        service.ready().await.unwrap();
        let fresh = service.clone();
        let mut ready = core::mem::replace(&mut service, fresh);
        assert_eq!(ready.call(i).await.unwrap(), i);
    }
    assert_eq!(start.elapsed(), 200 * MS);
    assert_eq!(calls.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn call_without_poll_ready_still_takes_its_token_at_call() {
    let inner = Recorder::new(Instant::now());
    let calls = inner.calls();
    let mut service = RateLimitLayer::new(Rate::per_second(10), 1).layer(inner);
    let start = Instant::now();
    assert_eq!(service.call(1).await.unwrap(), 1);
    assert_eq!(service.call(2).await.unwrap(), 2); // waited in line for its token
    assert_eq!(start.elapsed(), 100 * MS);
    assert_no_banking("calls without poll_ready", &calls.lock().unwrap(), 10, 1);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_woken_when_a_token_is_free() {
    let mut service =
        RateLimitLayer::new(Rate::per_second(10), 1).layer(Recorder::new(Instant::now()));
    service.ready().await.unwrap();
    service.call(0).await.unwrap();
    let start = Instant::now();
    let ready = pin!(poll_fn(|cx| service.poll_ready(cx)));
    assert!(ready.await.is_ok());
    assert_eq!(start.elapsed(), 100 * MS);
}

/// (c) A call that had to wait and whose response future is dropped while waiting gives
/// everything back: its place in line, and its reservation if it was first in line.
#[tokio::test(start_paused = true)]
async fn a_response_future_dropped_while_waiting_gives_everything_back() {
    let layer = RateLimitLayer::new(Rate::per_second(1), 1);
    let inner = Recorder::new(Instant::now());
    let calls = inner.calls();
    let service = layer.layer(inner);
    let start = Instant::now();
    // All three see the free token in `poll_ready`; the first call takes it.
    let (mut a, mut b, mut c) = (service.clone(), service.clone(), service.clone());
    for s in [&mut a, &mut b, &mut c] {
        s.ready().await.unwrap();
    }
    a.call(0).await.unwrap();
    // b and c must wait: b is first in line (it holds the reservation for 1 s), c behind it.
    let mut cx = Context::from_waker(Waker::noop());
    let mut b_waits = Box::pin(b.call(1));
    let mut c_waits = Box::pin(c.call(2));
    assert!(b_waits.as_mut().poll(&mut cx).is_pending());
    assert!(c_waits.as_mut().poll(&mut cx).is_pending());
    assert_eq!(layer.limiter().waiters(), 2);
    drop(b_waits);
    drop(c_waits);
    assert_eq!(layer.limiter().waiters(), 0, "both left the line");
    // The next caller is not delayed by them: its token is the one due at 1 s.
    let mut d = service.clone();
    assert_eq!(d.ready().await.unwrap().call(3).await.unwrap(), 3);
    assert_eq!(start.elapsed(), 1_000 * MS);
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 2, "the dropped calls never reached the inner service");
}

/// Dropping the middle of three waiting calls: the others keep their order and the rate.
#[tokio::test(start_paused = true)]
async fn waiting_calls_are_served_in_order_around_a_dropped_one() {
    let layer = RateLimitLayer::new(Rate::per_second(10), 1).max_wait(Duration::from_secs(5));
    let inner = Recorder::new(Instant::now());
    let calls = inner.calls();
    let mut service = layer.layer(inner);
    let start = Instant::now();
    service.ready().await.unwrap();
    service.call(0).await.unwrap();
    let first = tokio::spawn(service.ready().await.unwrap().call(1));
    tokio::task::yield_now().await;
    let second = tokio::spawn(service.ready().await.unwrap().call(2));
    tokio::task::yield_now().await;
    let third = tokio::spawn(service.ready().await.unwrap().call(3));
    tokio::task::yield_now().await;
    assert_eq!(layer.limiter().waiters(), 3);
    second.abort();
    let third_at = async {
        third.await.unwrap().unwrap();
        start.elapsed()
    };
    let first_at = async {
        first.await.unwrap().unwrap();
        start.elapsed()
    };
    let (first_at, third_at) = tokio::join!(first_at, third_at);
    assert_eq!((first_at, third_at), (100 * MS, 200 * MS));
    assert_eq!(calls.lock().unwrap().len(), 3);
}

/// `retry_after` is exact on the bucket's token clock, whose fixed-point units put an instant
/// up to a few nanoseconds off a round number of milliseconds from now.
fn assert_retry_after(limited: &RateLimited, expected: Duration) {
    let got = limited.retry_after().expect("a token that will come");
    let off = got.abs_diff(expected);
    assert!(off <= Duration::from_micros(1), "retry after {got:?}, expected {expected:?}");
}

fn limited(error: &BoxError) -> RateLimited {
    *error.downcast_ref::<RateLimited>().unwrap_or_else(|| panic!("not a RateLimited: {error}"))
}

/// (d) A bounded wait: shorter waits wait, a longer one fails at once with the wait, taking
/// nothing and calling nothing.
#[tokio::test(start_paused = true)]
async fn max_wait_refuses_up_front_with_the_wait() {
    let layer = RateLimitLayer::new(Rate::per_second(1), 1).max_wait(500 * MS);
    assert_eq!(layer.policy(), WhenLimited::WaitAtMost(500 * MS));
    let inner = Recorder::new(Instant::now());
    let calls = inner.calls();
    let mut service = layer.layer(inner);
    let start = Instant::now();
    service.ready().await.unwrap().call(0).await.unwrap();
    // The next token is 1 s away, beyond the 500 ms bound.
    let refused = service.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
    let refused = limited(&refused);
    assert_retry_after(&refused, 1_000 * MS);
    let Error::MaxWaitExceeded { ready_at } = refused.error() else {
        panic!("{:?}", refused.error());
    };
    assert_eq!(TokioTimer::new().to_tokio(ready_at), start + refused.retry_after().unwrap());
    assert_eq!(calls.lock().unwrap().len(), 1, "the refused call was not passed on");
    assert_eq!(layer.limiter().waiters(), 0);
    // 600 ms later the token is 400 ms away: within the bound, so it waits.
    sleep(600 * MS).await;
    assert_eq!(service.ready().await.unwrap().call(2).await.unwrap(), 2);
    assert_eq!(start.elapsed(), 1_000 * MS);
    assert_no_banking("max_wait", &calls.lock().unwrap(), 1, 1);
}

/// (d) The bound counts the callers already waiting: a call behind a long line is refused
/// with the instant after the line.
#[tokio::test(start_paused = true)]
async fn max_wait_counts_the_line() {
    let layer = RateLimitLayer::new(Rate::per_second(10), 1).max_wait(250 * MS);
    let mut service = layer.layer(Recorder::new(Instant::now()));
    service.ready().await.unwrap().call(0).await.unwrap();
    let mut waiting = Vec::new();
    for i in 1..=2 {
        waiting.push(tokio::spawn(service.ready().await.unwrap().call(i)));
    }
    tokio::task::yield_now().await;
    assert_eq!(layer.limiter().waiters(), 2); // ready at 100 ms and 200 ms
    let refused = service.ready().await.unwrap().call(3).await.unwrap_err();
    assert_retry_after(&limited(&refused), 300 * MS);
    for w in waiting {
        w.await.unwrap().unwrap();
    }
}

/// (d) The refusing policy: no wait at all, and the refusal says when to come back.
#[tokio::test(start_paused = true)]
async fn refusing_mode_refuses_with_retry_info() {
    let layer = RateLimitLayer::new(Rate::per_second(2), 2).refuse_when_limited();
    assert_eq!(layer.policy(), WhenLimited::Refuse);
    let inner = Recorder::new(Instant::now());
    let calls = inner.calls();
    let mut service = layer.layer(inner);
    let start = Instant::now();
    for i in 0..2 {
        service.ready().await.unwrap().call(i).await.unwrap();
    }
    let refused = service.ready().await.unwrap().call(2).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    let refused = limited(&refused);
    assert_retry_after(&refused, 500 * MS);
    assert!(matches!(refused.error(), Error::RateLimited(_)));
    assert!(refused.to_string().starts_with("rate limited; retry after "), "{refused}");
    assert_eq!(refused.retry_after_secs(), Some(1));
    assert!(core::error::Error::source(&refused).is_some());
    sleep(refused.retry_after().unwrap()).await;
    service.ready().await.unwrap().call(3).await.unwrap();
    assert_eq!(calls.lock().unwrap().len(), 3);
    // A refusing service does not overtake waiters of the same limiter: the free token is
    // theirs, and the refusal counts them.
    sleep(1_000 * MS).await;
    let limiter = Arc::clone(layer.limiter());
    limiter.try_acquire_n(2).unwrap();
    let waiter = tokio::spawn(async move { limiter.acquire().await });
    tokio::task::yield_now().await;
    sleep(500 * MS).await; // a token is free, but the waiter is taking it
    let refused = service.ready().await.unwrap().call(4).await;
    waiter.await.unwrap();
    let refused = limited(&refused.unwrap_err());
    assert!(refused.retry_after().is_some());
}

/// A token that can never come is an error, whatever the policy; never "go ahead".
#[tokio::test(start_paused = true)]
async fn a_token_that_can_never_come_is_an_error() {
    const CENTURIES: Duration = Duration::from_secs(600 * 365 * 24 * 60 * 60);
    for policy in [WhenLimited::Wait, WhenLimited::WaitAtMost(Duration::MAX), WhenLimited::Refuse] {
        let layer = RateLimitLayer::new(Rate::new(1, CENTURIES), 1).when_limited(policy);
        let inner = Recorder::new(Instant::now());
        let calls = inner.calls();
        let mut service = layer.layer(inner);
        service.ready().await.unwrap().call(0).await.unwrap();
        let start = Instant::now();
        let refused = service.ready().await.unwrap().call(1).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::ZERO, "{policy:?}");
        assert_eq!(limited(&refused).retry_after(), None, "{policy:?}");
        assert_eq!(limited(&refused).retry_after_secs(), None, "{policy:?}");
        assert_eq!(calls.lock().unwrap().len(), 1, "{policy:?}");
    }
}

/// (e) `load_shed` in front of the waiting policy: `poll_ready`'s backpressure sheds what
/// the rate cannot serve; the inner service sees ~ the rate and never more than the bucket,
/// and nothing is left owing afterwards.
#[tokio::test(start_paused = true)]
async fn load_shed_in_front_serves_the_rate_and_leaves_no_debt() {
    const RATE: u64 = 100;
    const STORM: Duration = Duration::from_secs(5);
    let layer = RateLimitLayer::new(Rate::per_second(RATE as u32), 1);
    let inner = Recorder::new(Instant::now());
    let calls = inner.calls();
    let shedding = ServiceBuilder::new().load_shed().layer(layer.clone()).service(inner.clone());
    let start = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let mut mine = shedding.clone();
            tokio::spawn(async move {
                let mut shed = 0_u64;
                while start.elapsed() < STORM {
                    match mine.ready().await.unwrap().call(i).await {
                        Ok(_) => {}
                        Err(e) if e.is::<Overloaded>() => {
                            shed += 1;
                            sleep(MS).await;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                shed
            })
        })
        .collect();
    let mut shed = 0;
    for task in tasks {
        shed += task.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    let served = calls.iter().filter(|t| **t - start < STORM).count() as u64;
    let expected = RATE * STORM.as_secs();
    assert!(shed > 0, "nothing was shed");
    assert!(served * 100 >= expected * 95, "served {served} of {expected}");
    assert!(served <= expected + 1, "served {served} of {expected}");
    eprintln!(
        "paused clock, load_shed in front: {served} served in {STORM:?} = {:.1} % of {expected}, \
         {shed} shed",
        served as f64 * 100.0 / expected as f64
    );
    assert_no_banking("load_shed storm", &calls, RATE, 1);
    assert_eq!(layer.limiter().waiters(), 0);
    // A lone request after the storm waits at most one emission interval.
    let lone = Instant::now();
    layer.layer(inner).oneshot(0).await.unwrap();
    assert!(lone.elapsed() <= 10 * MS, "the lone request waited {:?}", lone.elapsed());
}

/// (e) on the real clock, on a multi-thread runtime: `load_shed` in front, 40 callers for
/// 2 s at 200/s. Timestamps are taken by the inner service after the token, so a window is
/// allowed 2 ms of scheduling slack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_shed_on_the_real_clock_serves_the_rate() {
    const RATE: u64 = 200;
    const BURST: u64 = 2;
    const STORM: Duration = Duration::from_secs(2);
    let layer = RateLimitLayer::new(Rate::per_second(RATE as u32), BURST);
    let inner = Recorder::new(Instant::now());
    let calls = inner.calls();
    let shedding = ServiceBuilder::new().load_shed().layer(layer.clone()).service(inner.clone());
    let start = Instant::now();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let mut mine = shedding.clone();
            tokio::spawn(async move {
                while start.elapsed() < STORM {
                    match mine.ready().await.unwrap().call(i).await {
                        Ok(_) => tokio::task::yield_now().await,
                        Err(e) if e.is::<Overloaded>() => sleep(MS).await,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut calls = calls.lock().unwrap().clone();
    calls.sort();
    let served = calls.iter().filter(|t| **t - start < STORM).count() as u64;
    let configured = RATE * STORM.as_secs();
    eprintln!(
        "real clock, load_shed in front: {served} served in {STORM:?} = {:.1} % of {configured}",
        served as f64 * 100.0 / configured as f64
    );
    assert!(served * 100 >= configured * 90, "served {served} of {configured}");
    for i in 0..calls.len() {
        for j in i..calls.len() {
            let span = calls[j] - calls[i] + 2 * MS;
            let allowed = BURST + (span.as_nanos() * u128::from(RATE) / 1_000_000_000) as u64;
            assert!((j - i + 1) as u64 <= allowed, "{} calls within {span:?}", j - i + 1);
        }
    }
    let lone = Instant::now();
    layer.layer(inner).oneshot(0).await.unwrap();
    let waited = lone.elapsed();
    eprintln!("real clock: the lone request after the storm waited {waited:?}");
    assert!(waited <= 5 * MS + 20 * MS, "the lone request waited {waited:?}");
}

#[test]
fn services_and_futures_are_send_and_sync() {
    fn check<T: Send + Sync>(_: &T) {}
    fn check_send<T: Send>(_: &T) {}
    let echo = service_fn(|n: u32| async move { Ok::<_, Infallible>(n) });
    let mut service = RateLimitLayer::per_second(5).layer(echo);
    check(&service);
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _guard = rt.enter();
    let future = service.call(1);
    check_send(&future);
    assert!(RateLimitLayer::try_new(Rate::per_second(5), 0).is_err());
    let limited: BoxError = "x".into();
    check(&limited);
}
