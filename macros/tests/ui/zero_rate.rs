use tollgate_macros::limit_rate_tokio as limit_rate;

#[limit_rate(requests_per_second = 0)]
async fn zero() {}

#[limit_rate(requests_per_second = 5, burst = 0)]
async fn zero_burst() {}

#[limit_rate(requests_per_second = -1)]
async fn negative() {}

#[limit_rate(requests_per_second = 5, burst = 3_000_000_000_000_000_000)]
async fn huge_burst() {}

fn main() {}
