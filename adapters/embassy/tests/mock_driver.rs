//! The embassy adapter on embassy-time's mock driver, which moves only when told to: burst,
//! then pacing, with each waiter woken by the driver's timer queue.
//!
//! The mock driver is one global clock, so the tests here take turns.

use core::future::Future;
use core::pin::pin;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::Waker;
use core::task::{Context, Poll};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Wake;

use embassy_time::{Duration, MockDriver};
use tollgate_embassy::{
    AsyncRateLimiter, Clock, EmbassyTimer, Error, Instant, Rate, Refusal, Timer, limit_rate,
};

static LIMITER: AsyncRateLimiter =
    AsyncRateLimiter::with_timer(Rate::per_second(5), 5, EmbassyTimer::new());

fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    let guard = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    MockDriver::get().reset();
    guard
}

/// Counts wake-ups.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn advance_ms(ms: u64) {
    MockDriver::get().advance(Duration::from_millis(ms));
}

#[test]
fn a_static_limiter_bursts_then_paces_on_the_mock_clock() {
    let _turn = serial();
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);

    for _ in 0..5 {
        assert_eq!(pin!(LIMITER.acquire()).poll(&mut cx), Poll::Ready(()));
    }
    assert_eq!(
        LIMITER.try_acquire(),
        Err(Error::RateLimited(Refusal::at(Instant::from_millis(200))))
    );

    for k in 1..=3u64 {
        let mut next = pin!(LIMITER.acquire());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        let before = wakes.0.load(Ordering::SeqCst);
        advance_ms(199);
        assert_eq!(wakes.0.load(Ordering::SeqCst), before, "woken early");
        assert!(next.as_mut().poll(&mut cx).is_pending());
        advance_ms(1);
        assert_eq!(wakes.0.load(Ordering::SeqCst), before + 1, "the driver wakes it once");
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(EmbassyTimer::new().now(), Instant::from_millis(200 * k));
    }
}

#[test]
fn a_cancelled_waiter_gives_its_token_back() {
    let _turn = serial();
    let waker = Waker::from(Arc::new(Wakes::default()));
    let mut cx = Context::from_waker(&waker);
    let limiter = AsyncRateLimiter::with_timer(Rate::per_second(10), 1, EmbassyTimer::new());
    limiter.try_acquire().unwrap();
    {
        let mut dropped = pin!(limiter.acquire());
        assert!(dropped.as_mut().poll(&mut cx).is_pending());
    }
    let mut next = pin!(limiter.acquire());
    assert!(next.as_mut().poll(&mut cx).is_pending());
    advance_ms(100);
    assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(()), "ready at 100 ms, not 200 ms");
}

#[test]
fn more_than_the_burst_fails_at_once() {
    let _turn = serial();
    let limiter = AsyncRateLimiter::with_timer(Rate::per_second(5), 5, EmbassyTimer::new());
    let r = futures_executor::block_on(limiter.acquire_n(6));
    assert_eq!(r, Err(Error::InsufficientCapacity { requested: 6, capacity: 5 }));
    assert_eq!(limiter.available(), 5);
}

#[test]
fn the_clock_follows_the_driver_and_sleeps_end_on_the_tick() {
    let _turn = serial();
    let timer = EmbassyTimer::new();
    assert_eq!(timer.now(), Instant::ZERO);
    MockDriver::get().advance(Duration::from_micros(1_500));
    assert_eq!(timer.now(), Instant::from_micros(1_500));
    // A deadline between two ticks (1 µs at the mock's 1 MHz) waits for the later one.
    let deadline = Instant::from_nanos(2_000_500);
    assert_eq!(EmbassyTimer::to_embassy(deadline).as_ticks(), 2_001);
    let waker = Waker::from(Arc::new(Wakes::default()));
    let mut cx = Context::from_waker(&waker);
    let mut sleep = pin!(timer.sleep_until(deadline));
    assert!(sleep.as_mut().poll(&mut cx).is_pending());
    MockDriver::get().advance(Duration::from_micros(500));
    assert!(sleep.as_mut().poll(&mut cx).is_pending());
    MockDriver::get().advance(Duration::from_micros(1));
    assert!(sleep.as_mut().poll(&mut cx).is_ready());
    assert!(timer.now() >= deadline);
}

#[limit_rate(requests_per_second = 10, burst = 1)]
async fn blink() -> u8 {
    1
}

#[test]
fn limit_rate_waits_on_the_mock_clock() {
    let _turn = serial();
    let waker = Waker::from(Arc::new(Wakes::default()));
    let mut cx = Context::from_waker(&waker);
    assert_eq!(pin!(blink()).poll(&mut cx), Poll::Ready(1));
    let mut second = pin!(blink());
    assert!(second.as_mut().poll(&mut cx).is_pending());
    advance_ms(99);
    assert!(second.as_mut().poll(&mut cx).is_pending());
    advance_ms(1);
    assert_eq!(second.as_mut().poll(&mut cx), Poll::Ready(1));
}
