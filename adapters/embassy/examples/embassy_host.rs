//! HOST-RUNNABLE with embassy-time's mock driver (a dev-dependency), not firmware: it shows a
//! `static` limiter bursting then pacing as the mock clock is advanced by hand. On a device the
//! same `static` and `LIMITER.acquire().await` run inside an embassy task, with the HAL's
//! time driver instead of the mock.
//!
//! Run with `cargo run -p tollgate-embassy --example embassy_host`.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embassy_time::{Duration, MockDriver};
use tollgate_embassy::{AsyncRateLimiter, Clock, EmbassyTimer, Rate};

/// At most 2 log lines per second over the radio, in bursts of 3.
static LIMITER: AsyncRateLimiter =
    AsyncRateLimiter::with_timer(Rate::per_second(2), 3, EmbassyTimer::new());

fn main() {
    let mut cx = Context::from_waker(Waker::noop());
    for line in 0..6 {
        let mut send = pin!(async {
            LIMITER.acquire().await;
        });
        // A real executor would sleep until the driver's alarm; here we advance the mock clock
        // 50 ms at a time until the task is done.
        while send.as_mut().poll(&mut cx) == Poll::Pending {
            MockDriver::get().advance(Duration::from_millis(50));
        }
        let now = EmbassyTimer::new().now();
        println!("log line {line} sent at {:>4} ms", now.as_millis());
    }
}
