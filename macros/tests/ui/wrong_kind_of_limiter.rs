use tollgate_macros::limit_rate_tokio;
use tollgate_tokio::Rate;

static BLOCKING: tollgate_std::RateLimiter = tollgate_std::RateLimiter::new(Rate::per_second(1), 1);

#[limit_rate_tokio(limiter = BLOCKING)]
async fn awaiting() {}

static NOT_A_LIMITER: u32 = 5;

#[limit_rate_tokio(limiter = NOT_A_LIMITER)]
async fn nonsense() {}

fn main() {}
