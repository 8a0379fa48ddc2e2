//! The async-std/smol and embassy flavours of `#[limit_rate]` on their adapters' timers.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::time::Instant;

use tollgate_macros::{limit_rate_async_std, limit_rate_embassy};

#[limit_rate_async_std(requests_per_second = 20, burst = 1)]
async fn on_async_io() -> u8 {
    1
}

/// async-io's timer runs on real time: one short test with loose bounds.
#[test]
fn the_async_std_flavour_paces_on_async_io() {
    let start = Instant::now();
    let sum = async_io::block_on(async {
        let mut sum = 0;
        for _ in 0..3 {
            sum += on_async_io().await;
        }
        sum
    });
    assert_eq!(sum, 3);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(95), "2 waits of 50 ms, got {elapsed:?}");
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
}

/// A `static` limiter in const context: what an embassy task on a microcontroller gets.
#[limit_rate_embassy(requests_per_second = 2)]
async fn blink(n: u32) -> u32 {
    n
}

#[test]
fn the_embassy_flavour_paces_on_the_mock_driver() {
    let driver = embassy_time::MockDriver::get();
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(pin!(blink(1)).poll(&mut cx), Poll::Ready(1));
    assert_eq!(pin!(blink(2)).poll(&mut cx), Poll::Ready(2)); // the burst of 2
    let mut third = pin!(blink(3));
    assert!(third.as_mut().poll(&mut cx).is_pending());
    driver.advance(embassy_time::Duration::from_millis(499));
    assert!(third.as_mut().poll(&mut cx).is_pending());
    driver.advance(embassy_time::Duration::from_millis(1));
    assert_eq!(third.as_mut().poll(&mut cx), Poll::Ready(3));
}
