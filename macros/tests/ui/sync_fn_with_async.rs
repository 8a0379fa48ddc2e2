use tollgate_macros::limit_rate_tokio as limit_rate;

#[limit_rate(requests_per_second = 5)]
fn send_email(to: &str) -> usize {
    to.len()
}

mod embedded {
    use tollgate_macros::limit_rate_embassy as limit_rate;

    #[limit_rate(requests_per_second = 5)]
    pub fn blink() {}
}

fn main() {}
