use tollgate_macros::limit_rate_tokio as limit_rate;

#[limit_rate(requests_per_second = 2.5)]
async fn fractional() {}

#[limit_rate(requests_per_second = "10")]
async fn string() {}

const RATE: u64 = 10;

#[limit_rate(requests_per_second = RATE)]
async fn constant() {}

fn main() {}
