use tollgate_macros::limit_rate_tokio as limit_rate;

#[limit_rate]
async fn bare() {}

#[limit_rate()]
async fn empty_parens() {}

fn main() {}
