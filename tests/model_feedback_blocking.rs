//! The blocking model limiter (`tollgate-std`) forwards the feedback and reconfiguration
//! methods: a thread blocked in a cooldown goes in when it ends, not before.

use core::time::Duration;
use std::sync::Arc;
use std::time::Instant as WallClock;

use tollgate::provider::Throttled;
use tollgate_std::{Error, ModelRateLimiter, RateLimitConfig};

#[test]
#[cfg_attr(miri, ignore)] // real threads and a real clock, for a second or more
fn a_blocked_thread_waits_out_a_cooldown_and_an_exhausted_quota_fails_it() {
    let config = RateLimitConfig { max_parallel_requests: 1, ..Default::default() };
    let limiter = Arc::new(ModelRateLimiter::new([("m", config.clone())], config).unwrap());
    let permit = limiter.acquire("m", 10).unwrap();
    let waiter = {
        let limiter = Arc::clone(&limiter);
        std::thread::spawn(move || {
            let permit = limiter.acquire("m", 10).unwrap();
            let at = WallClock::now();
            permit.settle(10);
            at
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let started = WallClock::now();
    let cooldown = permit.rate_limited(Duration::from_millis(150));
    assert!(cooldown.extended);
    let admitted = waiter.join().unwrap();
    assert!(admitted - started >= Duration::from_millis(140), "{:?}", admitted - started);

    let report =
        limiter.observe_429("m", &Throttled::QuotaExhausted { reset_after: None }).unwrap();
    assert_eq!(report.error, Some(Error::QuotaExhausted { reset_at: None }));
    assert_eq!(limiter.acquire("m", 1).unwrap_err(), Error::QuotaExhausted { reset_at: None });
    limiter.resume("m").unwrap();
    limiter.reconfigure("m", RateLimitConfig { rpm: 2, ..Default::default() }).unwrap();
    // Two requests so far: the reconfigured rpm of 2 is full.
    assert!(limiter.try_acquire("m", 1).is_err());
    assert_eq!(limiter.stats()["m"].requests.to_string(), "2/2");
}
