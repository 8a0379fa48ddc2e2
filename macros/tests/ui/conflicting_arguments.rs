use tollgate_macros::limit_rate_tokio as limit_rate;

#[limit_rate(requests_per_second = 5, limiter = SHARED)]
async fn both() {}

#[limit_rate(limiter = SHARED, burst = 3)]
async fn burst_on_shared() {}

#[limit_rate(requests_per_second = 5, requests_per_second = 6)]
async fn duplicate() {}

#[limit_rate(burst = 3)]
async fn burst_alone() {}

fn main() {}
