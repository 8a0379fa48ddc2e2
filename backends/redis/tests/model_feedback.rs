//! Provider feedback shared through Redis: a cooldown or an exhausted quota that one process
//! learns holds every process of the model (two limiters on two connections stand for two
//! processes); FIFO across a pause; `resume`; a cooldown never shortens; a permit's slot goes
//! back *into* the cooldown; a hostile mix of waiters under random timeouts and cooldowns
//! admits nothing inside any pause and leaks no slot; feedback that cannot reach Redis is a
//! store error under every degraded policy; another config's feedback is refused.

mod support;

use core::time::Duration;
use std::sync::{Arc, Mutex};

use tokio::time::timeout;
use tollgate::provider::Throttled;
use tollgate::{Clock, RateLimitConfig};
use tollgate_redis::{Degraded, Error, ModelRateLimiter, Share};

/// Every await of these tests is bounded by this: a waiter that hangs fails the test.
const BOUND: Duration = Duration::from_secs(10);

fn config(par: u32) -> RateLimitConfig {
    RateLimitConfig {
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: par,
        ..Default::default()
    }
}

/// The model's pause end as stored (server µs; 0: none).
fn stored_pause(server: &support::RedisServer, ns: &str) -> i64 {
    let r = server.command(&["HGET", &format!("{{tg:{ns}:m=m}}:s"), "pu"]);
    r.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or(0)
}

/// The server's clock (µs).
fn server_now(server: &support::RedisServer) -> i64 {
    let r = server.command(&["TIME"]);
    let n: Vec<i64> = r.lines().filter_map(|l| l.parse().ok()).collect();
    n[0] * 1_000_000 + n[1]
}

async fn bounded<T>(f: impl core::future::Future<Output = T>) -> T {
    timeout(BOUND, f).await.expect("hung")
}

fn limit(e: &Error) -> &tollgate::Error {
    e.limit().unwrap_or_else(|| panic!("expected a limit refusal, got {e:?}"))
}

#[tokio::test]
async fn a_429_seen_by_one_process_holds_the_other_and_fifo_holds_across_the_pause() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = support::model_process(&server, "fb1", config(1)).await;
    let b = support::model_process(&server, "fb1", config(1)).await;
    // A holds the only slot; B's three acquires queue behind it, in this order.
    let held = bounded(a.try_acquire("m", 10)).await.expect("free");
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..3 {
        let (b, log) = (b.clone(), log.clone());
        waiters.push(tokio::spawn(async move {
            let p = bounded(b.acquire("m", 10)).await.expect("admitted");
            log.lock().unwrap().push((i, p.admitted_at_server_micros().unwrap()));
            tokio::time::sleep(Duration::from_millis(20)).await;
            bounded(p.settle(10)).await.expect("settle");
        }));
        tokio::time::sleep(Duration::from_millis(50)).await; // queued in this order
    }
    // A's request got a 429 "retry after 1 s": its slot goes back into the cooldown.
    let cooldown = bounded(held.rate_limited(Duration::from_secs(1))).await.expect("feedback");
    assert!(cooldown.extended);
    let wait = cooldown.until.saturating_duration_since(cooldown.from);
    assert!(wait >= Duration::from_millis(990) && wait <= Duration::from_millis(1010), "{wait:?}");
    let until = stored_pause(&server, "fb1");
    assert!(until > 0, "the pause is in the shared state");
    // B, the other process, is refused with retry_after ≈ the rest of the cooldown.
    let before = b.timer().now();
    let err = bounded(b.try_acquire("m", 10)).await.unwrap_err();
    let tollgate::Error::RateLimited(r) = limit(&err) else { panic!("{err:?}") };
    let retry = r.retry_after(before);
    assert!(
        retry > Duration::from_millis(700) && retry <= Duration::from_millis(1050),
        "{retry:?}"
    );
    for w in waiters {
        bounded(w).await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    assert_eq!(log.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 1, 2], "FIFO across the pause");
    for &(_, at) in &log {
        assert!(at >= until, "admitted at {at}, inside the pause ending at {until}");
    }
    // The first went in at the end, not long after (its timer, not a refresh).
    assert!(log[0].1 - until < 300_000, "{} µs late", log[0].1 - until);
    // The 429'd request's tokens came back; its request stays counted; no slot is held.
    let stats = bounded(a.stats()).await.unwrap();
    assert_eq!(stats["m"].active.used, 0);
    assert_eq!(stats["m"].tokens.used, 30);
    assert_eq!(stats["m"].requests.used, 4);
}

#[tokio::test]
async fn resume_lets_the_waiters_of_every_process_in_at_once() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = support::model_process(&server, "fb2", config(4)).await;
    let b = support::model_process(&server, "fb2", config(4)).await;
    let report = bounded(
        a.observe_429("m", &Throttled::RetryLater { after: Some(Duration::from_secs(30)) }),
    )
    .await
    .expect("feedback");
    assert!(report.cooldown.is_some_and(|c| c.extended) && report.error.is_none());
    let stats = bounded(b.stats()).await.unwrap();
    assert!(stats["m"].cooldown_until.is_some(), "the other process sees the cooldown");
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let b = b.clone();
        waiters.push(tokio::spawn(async move { bounded(b.acquire("m", 10)).await }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(waiters.iter().all(|w| !w.is_finished()), "nobody is admitted during the pause");
    let start = std::time::Instant::now();
    bounded(a.resume("m")).await.expect("resume");
    for w in waiters {
        let p = timeout(Duration::from_secs(1), w).await.expect("woken by resume").unwrap();
        drop(p.expect("admitted"));
    }
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    assert!(bounded(b.stats()).await.unwrap()["m"].cooldown_until.is_none());
}

#[tokio::test]
async fn an_exhausted_quota_fails_every_process_waiters_included_until_its_reset() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = support::model_process(&server, "fb3", config(1)).await;
    let b = support::model_process(&server, "fb3", config(1)).await;
    let held = bounded(a.try_acquire("m", 10)).await.expect("free");
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let b = b.clone();
        waiters.push(tokio::spawn(async move { b.acquire("m", 10).await }));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let reset_after = Duration::from_millis(1500);
    let report =
        bounded(held.throttled(&Throttled::QuotaExhausted { reset_after: Some(reset_after) }))
            .await
            .expect("feedback");
    assert!(matches!(report.error, Some(tollgate::Error::QuotaExhausted { reset_at: Some(_) })));
    // The waiters are woken and fail (their refresh is 10 s away: by message).
    for w in waiters {
        let r = timeout(Duration::from_millis(500), w).await.expect("a waiter hung").unwrap();
        let err = r.unwrap_err();
        assert!(
            matches!(limit(&err), tollgate::Error::QuotaExhausted { reset_at: Some(_) }),
            "{err:?}"
        );
    }
    let err = bounded(b.try_acquire("m", 10)).await.unwrap_err();
    let tollgate::Error::QuotaExhausted { reset_at: Some(at) } = limit(&err) else {
        panic!("{err:?}")
    };
    let left = at.saturating_duration_since(b.timer().now());
    assert!(left > Duration::from_millis(1000) && left <= reset_after, "{left:?}");
    let err = bounded(b.acquire_within("m", 10, Duration::from_secs(5))).await.unwrap_err();
    assert!(matches!(limit(&err), tollgate::Error::QuotaExhausted { .. }), "{err:?}");
    let stats = bounded(b.stats()).await.unwrap();
    assert_eq!(stats["m"].quota_exhausted.map(|r| r.is_some()), Some(true));
    assert_eq!(stats["m"].active.used, 0, "the 429'd permit's slot is free");
    // After the reset, they admit.
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    drop(bounded(b.try_acquire("m", 10)).await.expect("the quota is back"));
}

#[tokio::test]
async fn an_unknown_reset_holds_until_resumed_and_a_known_one_never_replaces_it() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = support::model_process(&server, "fb4", config(4)).await;
    let b = support::model_process(&server, "fb4", config(4)).await;
    bounded(a.quota_exhausted("m", None)).await.unwrap();
    bounded(a.quota_exhausted("m", Some(Duration::from_millis(50)))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let err = bounded(b.try_acquire("m", 10)).await.unwrap_err();
    assert_eq!(limit(&err), &tollgate::Error::QuotaExhausted { reset_at: None });
    // Held for good: the state does not expire while exhausted until resumed.
    assert_eq!(server.command(&["PTTL", "{tg:fb4:m=m}:s"]), ":-1\r\n");
    bounded(b.resume("m")).await.unwrap();
    drop(bounded(a.try_acquire("m", 10)).await.expect("resumed"));
    let ttl = server.command(&["PTTL", "{tg:fb4:m=m}:s"]);
    assert!(!ttl.starts_with(":-"), "expiring again: {ttl}");
}

#[tokio::test]
async fn a_cooldown_never_shortens_and_the_state_outlives_it() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = support::model_process(&server, "fb5", config(4)).await;
    let b = support::model_process(&server, "fb5", config(4)).await;
    let long = bounded(a.cool_down("m", Duration::from_secs(2))).await.unwrap();
    let until = stored_pause(&server, "fb5");
    let short = bounded(b.cool_down("m", Duration::from_millis(100))).await.unwrap();
    assert!(long.extended && !short.extended);
    assert_eq!(stored_pause(&server, "fb5"), until, "a shorter cooldown changes nothing");
    let gap = long.until.saturating_duration_since(short.until)
        + short.until.saturating_duration_since(long.until);
    assert!(gap < Duration::from_millis(50), "the end in force is reported: {gap:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = b.timer().now();
    let err = bounded(b.try_acquire("m", 10)).await.unwrap_err();
    let tollgate::Error::RateLimited(r) = limit(&err) else { panic!("{err:?}") };
    assert!(r.retry_after(before) > Duration::from_millis(1400), "{:?}", r.retry_after(before));
    // A longer one extends it.
    let longer = bounded(b.cool_down("m", Duration::from_secs(3))).await.unwrap();
    assert!(longer.extended && stored_pause(&server, "fb5") > until);
    // The state's expiry covers the pause (the model's windows are a minute; a day's pause
    // must outlive them).
    let day = bounded(a.cool_down("m", Duration::from_secs(86_400))).await.unwrap();
    assert!(day.extended);
    drop(bounded(a.try_acquire("m", 10)).await.unwrap_err());
    let ttl = server.command(&["PTTL", "{tg:fb5:m=m}:s"]);
    let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
    assert!(ttl > 86_000_000, "the state expires before the pause ends: {ttl} ms");
    assert!(stored_pause(&server, "fb5") - server_now(&server) > 86_000_000_000);
}

#[tokio::test]
async fn a_rate_limited_permit_frees_its_slot_into_the_cooldown() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = support::model_process(&server, "fb6", config(1)).await;
    let b = support::model_process(&server, "fb6", config(1)).await;
    let held = bounded(a.try_acquire("m", 10)).await.unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { bounded(b.acquire("m", 10)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "the slot is held");
    let cooldown = bounded(held.rate_limited(Duration::from_millis(600))).await.unwrap();
    let until = stored_pause(&server, "fb6");
    let stats = bounded(a.stats()).await.unwrap();
    assert_eq!(stats["m"].active.used, 0, "released at once");
    assert!(stats["m"].cooldown_until.is_some());
    let p = bounded(waiter).await.unwrap().expect("admitted after the cooldown");
    let at = p.admitted_at_server_micros().unwrap();
    assert!(at >= until, "the slot went to the waiter inside the cooldown: {at} < {until}");
    assert!(a.timer().now() >= cooldown.until);
    drop(p);
}

#[test]
fn hostile_waiters_under_random_timeouts_and_repeated_cooldowns() {
    let Some(server) = support::RedisServer::start() else { return };
    let server = Arc::new(server);
    support::block_on_bounded(Duration::from_secs(60), async move {
        let cfg = config(3);
        let a = support::model_process(&server, "fb7", cfg.clone()).await;
        let b = support::model_process(&server, "fb7", cfg).await;
        let stop = std::time::Instant::now() + Duration::from_secs(3);
        let admitted = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let l = if t % 2 == 0 { a.clone() } else { b.clone() };
            let admitted = admitted.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(t);
                while std::time::Instant::now() < stop {
                    let max_wait = Duration::from_millis(rng.u64(1..200));
                    let r =
                        timeout(BOUND, l.acquire_within("m", 10, max_wait)).await.expect("hung");
                    let Ok(p) = r else { continue };
                    admitted.lock().unwrap().push(p.admitted_at_server_micros().unwrap());
                    tokio::time::sleep(Duration::from_millis(rng.u64(0..5))).await;
                    if rng.bool() {
                        timeout(BOUND, p.settle(5)).await.expect("hung").expect("settle");
                    } else {
                        drop(p); // released in the background
                    }
                }
            }));
        }
        // Cooldowns, one after another, each read back from the state as it starts.
        let mut pauses = Vec::new();
        let mut rng = fastrand::Rng::with_seed(99);
        while std::time::Instant::now() < stop {
            tokio::time::sleep(Duration::from_millis(rng.u64(10..60))).await;
            let d = Duration::from_millis(rng.u64(20..80));
            let c = timeout(BOUND, a.cool_down("m", d)).await.expect("hung").expect("cool_down");
            if c.extended {
                let s = server.clone();
                let until =
                    tokio::task::spawn_blocking(move || stored_pause(&s, "fb7")).await.unwrap();
                let from = until - i64::try_from(d.as_micros()).unwrap();
                pauses.push((from, until));
            }
        }
        for t in tasks {
            timeout(BOUND, t).await.expect("hung").unwrap();
        }
        let admitted = admitted.lock().unwrap().clone();
        assert!(
            pauses.len() > 10 && admitted.len() > 20,
            "{} pauses, {} admissions",
            pauses.len(),
            admitted.len()
        );
        for &t in &admitted {
            for &(from, until) in &pauses {
                assert!(
                    t <= from || t >= until,
                    "admitted at {t} inside the pause {from}..{until}"
                );
            }
        }
        // No slot leaks: the dropped permits' releases arrive in the background.
        let mut active = u64::MAX;
        for _ in 0..50 {
            active = timeout(BOUND, a.stats()).await.expect("hung").unwrap()["m"].active.used;
            if active == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(active, 0, "slots leaked");
        // And the model still admits once the last pause is over.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(timeout(BOUND, b.try_acquire("m", 10)).await.expect("hung").expect("admits"));
    });
}

#[tokio::test]
async fn feedback_that_cannot_reach_redis_is_a_store_error_whatever_the_policy() {
    let Some(mut server) = support::RedisServer::start() else { return };
    let store = support::store_timing_out_after(Duration::from_millis(300), &server.url()).await;
    let open = ModelRateLimiter::builder(store.clone(), "fb8")
        .model("m", config(4))
        .on_store_error(Degraded::FailOpen)
        .build()
        .expect("limiter");
    let local = ModelRateLimiter::builder(store, "fb8")
        .model("m", config(4))
        .on_store_error(Degraded::Local { share: Share::new(1, 2) })
        .build()
        .expect("limiter");
    server.kill();
    let second = Duration::from_secs(1);
    let retry = Throttled::RetryLater { after: Some(second) };
    assert!(bounded(open.cool_down("m", second)).await.unwrap_err().is_store());
    assert!(bounded(open.quota_exhausted("m", None)).await.unwrap_err().is_store());
    assert!(bounded(open.resume("m")).await.unwrap_err().is_store());
    assert!(bounded(open.observe_429("m", &retry)).await.unwrap_err().is_store());
    // "Never fits" needs no round trip: it only reports.
    let never = Throttled::NeverFits { requested: Some(9), limit: Some(5) };
    let report = bounded(open.observe_429("m", &never)).await.expect("no I/O");
    assert!(matches!(report.error, Some(tollgate::Error::InsufficientCapacity { .. })));
    // Admissions follow the policy; the feedback of their permits is still an error.
    let p = bounded(open.try_acquire("m", 10)).await.expect("fail open");
    assert!(p.is_degraded());
    assert!(bounded(p.rate_limited(second)).await.unwrap_err().is_store());
    // A permit of the local share: the local limiter learns the cooldown all the same.
    let p = bounded(local.try_acquire("m", 10)).await.expect("local share");
    assert!(p.is_degraded());
    assert!(bounded(p.throttled(&retry)).await.unwrap_err().is_store());
    let err = bounded(local.try_acquire("m", 10)).await.unwrap_err();
    assert!(matches!(limit(&err), tollgate::Error::RateLimited(_)), "{err:?}");
}

#[tokio::test]
async fn another_config_under_the_same_name_is_refused_feedback_too() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = support::model_process(&server, "fb9", config(4)).await;
    let b = support::model_process(&server, "fb9", config(5)).await;
    drop(bounded(a.try_acquire("m", 10)).await.expect("first config"));
    let err = bounded(b.cool_down("m", Duration::from_secs(1))).await.unwrap_err();
    assert!(matches!(err, Error::ConfigMismatch { .. }), "{err:?}");
    // and A was not paused by it
    drop(bounded(a.try_acquire("m", 10)).await.expect("not paused"));
}

#[tokio::test]
async fn a_request_that_never_fits_the_provider_frees_its_slot_and_pauses_nobody() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = support::model_process(&server, "fb10", config(1)).await;
    let p = bounded(a.try_acquire("m", 40)).await.unwrap();
    let never = Throttled::NeverFits { requested: Some(40), limit: Some(30) };
    let report = bounded(p.throttled(&never)).await.expect("feedback");
    assert_eq!(
        report.error,
        Some(tollgate::Error::InsufficientCapacity { requested: 40, capacity: 30 })
    );
    assert!(report.cooldown.is_none() && report.quota_exhausted.is_none());
    let stats = bounded(a.stats()).await.unwrap();
    assert_eq!((stats["m"].active.used, stats["m"].tokens.used), (0, 0), "slot and tokens back");
    assert!(stats["m"].cooldown_until.is_none() && stats["m"].quota_exhausted.is_none());
    drop(bounded(a.try_acquire("m", 10)).await.expect("nobody paused"));
}
