use tollgate_macros::limit_rate_tokio as limit_rate;

#[limit_rate(rps = 5)]
async fn misspelled() {}

#[limit_rate(requests_per_minute = 60)]
async fn other_period() {}

#[limit_rate(requests_per_second = 5, colour = "blue")]
async fn extra() {}

#[limit_rate(SHARED)]
async fn missing_key() {}

fn main() {}
