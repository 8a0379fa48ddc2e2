use tollgate_macros::limit_rate_std;
use tollgate_tokio::{AsyncRateLimiter, Rate, TokioTimer};

static ASYNC: AsyncRateLimiter =
    AsyncRateLimiter::with_timer(Rate::per_second(1), 1, TokioTimer::new());

// The async limiter's `acquire()` is a future: without `.await` it would limit nothing.
#[limit_rate_std(limiter = ASYNC)]
fn blocking() {}

fn main() {}
