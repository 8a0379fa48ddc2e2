use tollgate_macros::limit_rate_std as limit_rate;

#[limit_rate(requests_per_second = 5)]
async fn fetch_user(id: u32) -> u32 {
    id
}

fn main() {}
