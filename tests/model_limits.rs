//! Limits as data: a model's further limits (requests per day, tokens per 10 s, a token
//! bucket) come in purely through `RateLimitConfig::limits` and are enforced, reported and
//! validated like `rpm` and `tpm` — with no change to the limiter's code.

mod support;

use core::cell::Cell;
use core::time::Duration;
use std::rc::Rc;
use std::sync::Arc;

use support::Sim;
use tollgate::model::{Counts, Limit};
use tollgate::{Clock, Error, Instant, ManualClock, ModelRateLimiter, Rate, RateLimitConfig};

const HOUR: u64 = 3_600_000_000_000;
const DAY: Duration = Duration::from_secs(86_400);

type Limiter = ModelRateLimiter<Arc<ManualClock>>;

fn limiter(clock: &Arc<ManualClock>, config: RateLimitConfig) -> Limiter {
    ModelRateLimiter::with_timer([("m", config)], RateLimitConfig::default(), clock.clone())
        .unwrap()
}

/// Three requests per day, in 24 one-hour slots, on a model whose RPM and TPM would allow far
/// more: the fourth is refused until the slot holding the first leaves the day, with that
/// exact instant, and the stats show the day's count under its name.
#[test]
fn a_fourth_limit_added_through_config_is_enforced() {
    let clock = Arc::new(ManualClock::new());
    let config = RateLimitConfig {
        rpm: 100,
        tpm: 10_000,
        limits: vec![Limit::requests("rpd", 3, DAY).with_slots(24)],
        ..Default::default()
    };
    let l = limiter(&clock, config);
    for minute in 0..3 {
        clock.set(Instant::from_secs(60 * minute));
        l.try_acquire("m", 10).unwrap().settle(10);
    }
    // The first admission is in slot 0 (hour 0): it leaves the window (T - 1 day, T] once
    // T - 1 day + 1 ns reaches hour 1.
    let room = Instant::from_nanos(HOUR + DAY.as_nanos() as u64 - 1);
    let Err(Error::RateLimited(refused)) = l.try_acquire("m", 10) else {
        panic!("a fourth request in one day was admitted")
    };
    let ready_at = refused.ready_at();
    assert_eq!(ready_at, room);

    let stats = &l.stats()["m"];
    let names: Vec<_> = stats.limits.iter().map(|u| u.name.as_ref()).collect();
    assert_eq!(names, ["rpm", "tpm", "rpd"]);
    assert_eq!(stats.limits[2].usage.to_string(), "3/3");
    assert_eq!(stats.limits[2].counts, Counts::Requests);
    assert_eq!(stats.requests, stats.limits[0].usage);
    // The first request's minute has passed: TPM counts the last two.
    assert_eq!(stats.tokens.to_string(), "20/10000");

    // A bounded wait shorter than that is refused up front with the same instant.
    let err = futures_executor::block_on(l.acquire_within("m", 10, Duration::from_secs(3_600)))
        .unwrap_err();
    assert_eq!(err, Error::MaxWaitExceeded { ready_at: room });

    // One nanosecond before, still refused; at the instant, admitted.
    clock.set(Instant::from_nanos(room.as_nanos() - 1));
    assert!(l.try_acquire("m", 10).is_err());
    clock.set(room);
    l.try_acquire("m", 10).unwrap().settle(10);
    // All three earlier requests were in hour 0's slot, which has left: only this one counts.
    assert_eq!(l.stats()["m"].limits[2].usage.used, 1);
}

/// A waiting `acquire` sleeps exactly until the fourth limit has room, and queued requests
/// are admitted in order as the day's slots leave.
#[test]
fn waiting_acquires_sleep_until_the_fourth_limit_has_room() {
    let mut sim = Sim::new();
    let config = RateLimitConfig {
        limits: vec![Limit::requests("per 10 s", 2, Duration::from_secs(10)).with_slots(10)],
        ..Default::default()
    };
    let l = Rc::new(limiter(&sim.clock, config));
    let admitted = Rc::new(Cell::new(Vec::new()));
    for _ in 0..4 {
        let (l, admitted) = (l.clone(), admitted.clone());
        sim.spawn(async move {
            let permit = l.acquire("m", 1).await.unwrap();
            let mut v = admitted.take();
            v.push(permit.admitted_at().as_nanos());
            admitted.set(v);
            permit.settle(1);
        });
    }
    sim.run();
    // Two at 0; slot 0 ([0, 1 s)) leaves the 10 s window at 11 s - 1 ns.
    assert_eq!(admitted.take(), [0, 0, 10_999_999_999, 10_999_999_999]);
}

/// A token limit tighter than `tpm` bounds what can ever fit: an estimate above it fails at
/// once with `InsufficientCapacity` naming that limit's capacity (invariant 5, for every
/// limit in the list), and a settle refunds that window too.
#[test]
fn every_token_limit_bounds_and_settles() {
    let clock = Arc::new(ManualClock::new());
    let config = RateLimitConfig {
        tpm: 10_000,
        limits: vec![Limit::tokens("tokens per 10 s", 500, Duration::from_secs(10))],
        ..Default::default()
    };
    let l = limiter(&clock, config);
    let err = l.try_acquire("m", 501).unwrap_err();
    assert_eq!(err, Error::InsufficientCapacity { requested: 501, capacity: 500 });
    let err = futures_executor::block_on(l.acquire("m", 501)).unwrap_err();
    assert_eq!(err, Error::InsufficientCapacity { requested: 501, capacity: 500 });
    assert_eq!(l.stats()["m"].requests.used, 0, "a refused request was counted");

    let permit = l.try_acquire("m", 500).unwrap();
    assert!(matches!(l.try_acquire("m", 1), Err(Error::RateLimited(_))));
    permit.settle(200);
    let stats = &l.stats()["m"];
    assert_eq!((stats.tokens.used, stats.limits[2].usage.used), (200, 200));
    l.try_acquire("m", 300).unwrap().settle(300);
    assert!(l.try_acquire("m", 1).is_err(), "the 10 s window is full");
    // The 10 s limit empties long before the minute does.
    clock.set(Instant::from_secs(11));
    l.try_acquire("m", 500).unwrap().settle(500);
    assert_eq!(l.stats()["m"].tokens.used, 1_000);
}

/// A token bucket as a limit: a burst, then exact pacing, the refusal naming the instant.
#[test]
fn a_bucket_limit_paces_requests() {
    let clock = Arc::new(ManualClock::new());
    let config = RateLimitConfig {
        rpm: 1_000,
        limits: vec![Limit::bucket("rps", Counts::Requests, 2, Rate::per_second(4))],
        ..Default::default()
    };
    let l = limiter(&clock, config);
    l.try_acquire("m", 1).unwrap().settle(1);
    l.try_acquire("m", 1).unwrap().settle(1);
    let Err(Error::RateLimited(refused)) = l.try_acquire("m", 1) else { panic!() };
    let ready_at = refused.ready_at();
    assert_eq!(ready_at, Instant::from_millis(250));
    clock.set(ready_at);
    l.try_acquire("m", 1).unwrap().settle(1);
    assert_eq!(l.stats()["m"].limits[2].usage.to_string(), "2/2");
    clock.set(Instant::from_secs(5));
    assert_eq!(l.stats()["m"].limits[2].usage.used, 0);
}

/// Every limit is validated, the error naming the model, the index into `limits` and the
/// field; nothing is built.
#[test]
fn invalid_limits_are_typed_errors_naming_the_limit() {
    let ok = Limit::requests("ok", 1, DAY);
    let cases = [
        (Limit::requests("zero", 0, DAY), "max"),
        (Limit::requests("no window", 1, Duration::ZERO), "window"),
        (Limit::requests("no slots", 1, DAY).with_slots(0), "slots"),
        (Limit::requests("too many", 1, DAY).with_slots(Limit::MAX_SLOTS + 1), "slots"),
        (Limit::bucket("no burst", Counts::Tokens, 0, Rate::per_second(1)), "max"),
    ];
    for (bad, field) in cases {
        let config =
            RateLimitConfig { limits: vec![ok.clone(), bad.clone()], ..Default::default() };
        let valid = RateLimitConfig::default();
        let err = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], valid).unwrap_err();
        assert_eq!(err.model.as_deref(), Some("m"), "{bad:?}");
        assert_eq!((err.limit, err.error.field), (Some(1), field), "{bad:?}");
        assert!(err.to_string().starts_with("model `m`: limits[1]: "), "{err}");
        let err = ModelRateLimiter::<ManualClock>::new([("m", RateLimitConfig::default())], config)
            .unwrap_err();
        assert_eq!((err.model.as_deref(), err.limit), (None, Some(1)));
        assert!(err.to_string().starts_with("default config: limits[1]: "), "{err}");
    }
    // The largest slot count is accepted.
    let config = RateLimitConfig {
        limits: vec![Limit::requests("fine", 1, DAY).with_slots(Limit::MAX_SLOTS)],
        ..Default::default()
    };
    assert!(ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config).is_ok());
}

/// An unknown model under a default config with further limits gets them too.
#[test]
fn the_default_config_carries_its_limits() {
    let clock = Arc::new(ManualClock::new());
    let default = RateLimitConfig {
        limits: vec![Limit::requests("rph", 1, Duration::from_secs(3_600))],
        ..Default::default()
    };
    let l: Limiter = ModelRateLimiter::with_timer(
        [("known", RateLimitConfig::default())],
        default.clone(),
        clock.clone(),
    )
    .unwrap();
    l.try_acquire("other", 1).unwrap().settle(1);
    assert!(l.try_acquire("other", 1).is_err());
    assert_eq!(l.config("other"), default);
    l.try_acquire("known", 1).unwrap().settle(1);
    l.try_acquire("known", 1).unwrap().settle(1);
    assert_eq!(l.stats()["known"].limits.len(), 2);
    assert_eq!(clock.now(), Instant::ZERO);
}

/// Many requests against a model whose binding limits are all added through config (a 5 s
/// request window, a 3 s token window, a request bucket): from the admission log, every true
/// window and interval holds no more than its limit, every request is admitted (nothing
/// hangs), and nothing leaks.
#[test]
fn added_limits_hold_in_every_window_of_the_admission_log() {
    let mut sim = Sim::new();
    let config = RateLimitConfig {
        rpm: 10_000,
        tpm: 10_000_000,
        max_parallel_requests: 4,
        limits: vec![
            Limit::requests("r5s", 3, Duration::from_secs(5)).with_slots(5),
            Limit::tokens("t3s", 100, Duration::from_secs(3)).with_slots(3),
            Limit::bucket("rps", Counts::Requests, 2, Rate::per_second(1)),
        ],
        ..Default::default()
    };
    let l = Rc::new(limiter(&sim.clock, config));
    let log = Rc::new(Cell::new(Vec::new()));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const N: usize = 60;
    for _ in 0..N {
        let start = Instant::from_millis(next() % 20_000);
        let est = 1 + next() % 60;
        let hold = Duration::from_millis(next() % 4_000);
        let (l, log, clock) = (l.clone(), log.clone(), sim.clock.clone());
        sim.spawn(async move {
            tollgate::Timer::sleep_until(&*clock, start).await;
            let permit = l.acquire("m", est).await.unwrap();
            let mut v = log.take();
            v.push((permit.admitted_at().as_nanos(), est));
            log.set(v);
            tollgate::Timer::sleep_until(&*clock, clock.now() + hold).await;
            permit.settle(est);
        });
    }
    sim.run();
    let mut log = log.take();
    assert_eq!(log.len(), N, "requests left waiting");
    log.sort();
    let (w5, w3) = (5_000_000_000u64, 3_000_000_000u64);
    for (i, &(t, _)) in log.iter().enumerate() {
        let in5 = log[i..].iter().take_while(|&&(u, _)| u < t + w5).count();
        assert!(in5 <= 3, "r5s: {in5} requests in [{t}, +5 s)");
        let in3: u64 = log[i..].iter().take_while(|&&(u, _)| u < t + w3).map(|e| e.1).sum();
        assert!(in3 <= 100, "t3s: {in3} tokens in [{t}, +3 s)");
        for (k, &(u, _)) in log[i..].iter().enumerate() {
            // Bucket: over [t, u], at most burst + rate · (u - t) admissions.
            assert!((k as u64) < 2 + (u - t) / 1_000_000_000, "rps: {} in [{t}, {u}]", k + 1);
        }
    }
    let stats = &l.stats()["m"];
    assert_eq!(stats.active.used, 0);
    // The 3 s token window bound: the run cannot be much faster than that limit allows.
    let tokens: u64 = log.iter().map(|e| e.1).sum();
    let span = log.last().unwrap().0 - log[0].0;
    assert!(span >= (tokens / 100).saturating_sub(1) * w3, "{tokens} tokens in {span} ns");
    // The 5 s request window binds: 60 requests, 3 per window, need 19 windows after the first.
    assert!(span >= 19 * w5, "{N} requests in {span} ns: r5s did not bind");
}
