//! `#[limit_rate]` as re-exported by this crate, under smol (real clock, loose bounds).

use core::time::Duration;
use std::time::Instant;

use tollgate_async_std::limit_rate;

#[limit_rate(requests_per_second = 50, burst = 1)]
async fn fetch(id: u32) -> u32 {
    id
}

#[test]
fn async_fns_are_paced() {
    smol::block_on(async {
        let start = Instant::now();
        for id in 0..3 {
            assert_eq!(fetch(id).await, id);
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(38), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    });
}
