use tollgate_macros::limit_rate_tokio as limit_rate;

#[limit_rate(requests_per_second = 5)]
struct Client;

trait Api {
    #[limit_rate(requests_per_second = 5)]
    async fn call(&self);
}

#[limit_rate(requests_per_second = 5)]
const fn fixed() -> u32 {
    1
}

fn main() {}
