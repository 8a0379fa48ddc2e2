//! The Redis-backed model limiter against a real server: connect errors, admission and
//! refusal, settle and stats, parallel slots handed over by message, FIFO, cancellation,
//! drop without settle, config mismatch, awkward names, lost leases, degraded policies.

mod support;

use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use tollgate::model::{Estimate, Limit};
use tollgate::{Clock, RateLimitConfig};
use tollgate_redis::{
    Degraded, Error, ModelRateLimiter, RedisStore, Settled, Share, StoreError, StoreOptions,
};

fn config(rpm: u32, tpm: u64, par: u32) -> RateLimitConfig {
    RateLimitConfig { rpm, tpm, max_parallel_requests: par, ..Default::default() }
}

fn limit_err(e: &Error) -> &tollgate::Error {
    e.limit().unwrap_or_else(|| panic!("expected a limit refusal, got {e:?}"))
}

#[tokio::test]
async fn connect_reports_bad_urls_and_unreachable_servers_in_bounded_time() {
    let err = RedisStore::connect("not a url").await.unwrap_err();
    assert!(matches!(err, Error::Store(StoreError::InvalidUrl(_))), "{err:?}");
    let port = support::free_port(); // nobody listens there
    let start = Instant::now();
    let options =
        StoreOptions { connect_timeout: Duration::from_millis(500), ..Default::default() };
    let err =
        RedisStore::connect_with(&format!("redis://127.0.0.1:{port}/"), options).await.unwrap_err();
    assert!(err.is_store(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
}

#[tokio::test]
async fn admits_refuses_settles_and_reports() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = support::model_process(&server, "t1", config(3, 1_000, 5)).await;
    let mut permits = Vec::new();
    for _ in 0..3 {
        permits.push(l.try_acquire("m", 100).await.expect("within rpm"));
    }
    let before = l.timer().now();
    let err = l.try_acquire("m", 100).await.unwrap_err();
    let tollgate::Error::RateLimited(refusal) = limit_err(&err) else { panic!("{err:?}") };
    let wait = refusal.retry_after(before);
    assert!(wait > Duration::from_secs(58) && wait < Duration::from_secs(62), "{wait:?}");
    let stats = l.stats().await.unwrap();
    assert_eq!(stats["m"].requests.to_string(), "3/3");
    assert_eq!(stats["m"].tokens.to_string(), "300/1000");
    assert_eq!(stats["m"].active.to_string(), "3/5");
    let p = permits.pop().unwrap();
    assert_eq!(p.settle(40).await.unwrap(), Settled::Applied);
    let stats = l.stats().await.unwrap();
    assert_eq!(stats["m"].tokens.to_string(), "240/1000");
    assert_eq!(stats["m"].active.used, 2);
    // A never-fitting estimate fails at once.
    let err = l.acquire("m", 1_001).await.unwrap_err();
    assert!(matches!(
        limit_err(&err),
        tollgate::Error::InsufficientCapacity { requested: 1_001, capacity: 1_000 }
    ));
}

#[tokio::test]
async fn a_freed_slot_goes_to_the_waiter_by_message() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = Arc::new(support::model_process(&server, "t2", config(1_000, 100_000, 1)).await);
    let held = l.try_acquire("m", 1).await.unwrap();
    let waiter = {
        let l = l.clone();
        tokio::spawn(async move {
            let p = l.acquire("m", 1).await.expect("admitted once the slot frees");
            (Instant::now(), p)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the only slot is held");
    let freed = Instant::now();
    held.settle(1).await.unwrap();
    let (at, p) =
        tokio::time::timeout(Duration::from_secs(3), waiter).await.expect("woken").unwrap();
    // The refresh runs every 10 s here: only the message can have woken it this fast.
    assert!(at - freed < Duration::from_millis(500), "woken after {:?}", at - freed);
    drop(p);
}

#[tokio::test]
async fn waiters_are_admitted_in_arrival_order_and_never_overtaken() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = Arc::new(support::model_process(&server, "t3", config(1_000, 100_000, 1)).await);
    let held = l.try_acquire("m", 1).await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (l, order) = (l.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let p = l.acquire("m", 1).await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(20)).await;
            p.settle(1).await.unwrap();
        }));
        tokio::time::sleep(Duration::from_millis(40)).await; // a known arrival order
    }
    // A try never overtakes the queue.
    assert!(l.try_acquire("m", 1).await.is_err());
    held.settle(1).await.unwrap();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t).await.expect("all admitted").unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn cancelled_waits_and_dropped_permits_leave_nothing_behind() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = Arc::new(support::model_process(&server, "t4", config(1_000, 100_000, 1)).await);
    let held = l.try_acquire("m", 10).await.unwrap();
    // Waiters that give up: their queue places go.
    for _ in 0..5 {
        assert!(tokio::time::timeout(Duration::from_millis(50), l.acquire("m", 10)).await.is_err());
    }
    let err = l.acquire_within("m", 10, Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(limit_err(&err), tollgate::Error::MaxWaitExceeded { .. }), "{err:?}");
    // Dropped unsettled: the slot comes back through the janitor, the estimate stays.
    drop(held);
    let start = Instant::now();
    let p = loop {
        match l.try_acquire("m", 10).await {
            Ok(p) => break p,
            Err(_) if start.elapsed() < Duration::from_secs(2) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("slot not released, nor the cancelled waiters' places: {e:?}"),
        }
    };
    drop(p);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = l.stats().await.unwrap();
    assert_eq!(stats["m"].active.used, 0);
    assert_eq!(stats["m"].requests.used, 2, "cancelled waits count nothing");
    assert_eq!(stats["m"].tokens.used, 20, "dropped permits keep their estimates");
}

#[tokio::test]
async fn two_configs_for_one_model_are_refused_not_mixed() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = support::model_process(&server, "t5", config(10, 1_000, 2)).await;
    let b = support::model_process(&server, "t5", config(20, 1_000, 2)).await;
    a.try_acquire("m", 1).await.unwrap().settle(1).await.unwrap();
    let err = b.try_acquire("m", 1).await.unwrap_err();
    assert!(matches!(err, Error::ConfigMismatch { .. }), "{err:?}");
    // Another namespace is another budget.
    let c = support::model_process(&server, "t5b", config(20, 1_000, 2)).await;
    c.try_acquire("m", 1).await.unwrap().settle(1).await.unwrap();
}

#[tokio::test]
async fn awkward_names_work_and_stay_apart() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = support::model_process(&server, "t6", config(1, 1_000, 1)).await;
    let long = "x".repeat(1 << 20);
    let names = ["", "a:b", "{x}", "}{", long.as_str(), "model:with:colons"];
    for name in names {
        l.try_acquire(name, 5)
            .await
            .unwrap_or_else(|e| panic!("{name:.20?}: {e:?}"))
            .settle(5)
            .await
            .unwrap();
    }
    for name in names {
        assert!(l.try_acquire(name, 5).await.is_err(), "{name:.20?} has its own rpm of 1");
    }
    let stats = l.stats().await.unwrap();
    assert_eq!(stats.len(), names.len() + 1); // and "m", configured
    assert_eq!(stats[&long].requests.used, 1);
    // Every key expires on its own.
    let keys = server.command(&["KEYS", "*"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.starts_with(['*', '$'])).collect();
    assert!(!keys.is_empty());
    for k in keys {
        let ttl = server.command(&["PTTL", k]);
        assert!(ttl.starts_with(':') && !ttl.starts_with(":-"), "{k}: {ttl}");
    }
}

#[tokio::test]
async fn a_lost_lease_is_reported() {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let l = ModelRateLimiter::builder(store, "t7")
        .model("m", config(100, 1_000, 2))
        .lease_ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    let p = l.try_acquire("m", 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!p.lease_lost(), "the heartbeat keeps it");
    // The lease vanishes (as after a partition longer than its TTL).
    server.command(&["DEL", "{tg:t7:m=m}:l"]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(p.lease_lost(), "the next heartbeat finds it gone");
    assert_eq!(p.settle(1).await.unwrap(), Settled::LeaseLost);
}

#[tokio::test]
async fn store_down_fails_closed_by_default_and_degrades_only_when_asked() {
    let Some(mut server) = support::RedisServer::start() else { return };
    let options =
        StoreOptions { response_timeout: Duration::from_millis(200), ..Default::default() };
    let store = RedisStore::connect_with(&server.url(), options).await.unwrap();
    let cfg = RateLimitConfig {
        limits: vec![Limit::requests("r10s", 8, Duration::from_secs(10))],
        ..config(1_000, 100_000, 8)
    };
    let closed =
        ModelRateLimiter::builder(store.clone(), "t8").model("m", cfg.clone()).build().unwrap();
    let open = ModelRateLimiter::builder(store.clone(), "t8o")
        .model("m", cfg.clone())
        .on_store_error(Degraded::FailOpen)
        .build()
        .unwrap();
    let local = ModelRateLimiter::builder(store, "t8l")
        .model("m", cfg)
        .on_store_error(Degraded::Local { share: Share::new(1, 4) })
        .build()
        .unwrap();
    closed.try_acquire("m", 1).await.unwrap().settle(1).await.unwrap();
    server.kill();
    for _ in 0..3 {
        let start = Instant::now();
        let err = closed.acquire("m", 1).await.unwrap_err();
        assert!(err.is_store(), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(2), "fail closed took {:?}", start.elapsed());
    }
    let p = open.acquire("m", 1).await.unwrap();
    assert!(p.is_degraded());
    // A quarter of 8 per 10 s on the local share: 2, then refusals.
    let mut admitted = 0;
    for _ in 0..5 {
        if let Ok(p) = local.try_acquire("m", 1).await {
            assert!(p.is_degraded());
            admitted += 1;
            p.settle(1).await.unwrap();
        }
    }
    assert_eq!(admitted, 2);
}

#[tokio::test]
async fn a_retried_admission_is_counted_once() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = support::model_process(&server, "t9", config(10, 1_000, 5)).await;
    // As after a reply lost to a timeout: the same request id comes again.
    let first = l.try_acquire_with_id("m", 100, "req-1").await.unwrap();
    let again = l.try_acquire_with_id("m", 100, "req-1").await.unwrap();
    assert_eq!(first.admitted_at_server_micros(), again.admitted_at_server_micros());
    let stats = l.stats().await.unwrap();
    assert_eq!(
        (stats["m"].requests.used, stats["m"].tokens.used, stats["m"].active.used),
        (1, 100, 1)
    );
    // Settled once: the second settle finds nothing left to apply.
    assert_eq!(first.settle(60).await.unwrap(), Settled::Applied);
    assert_eq!(again.settle(60).await.unwrap(), Settled::LeaseLost);
    assert_eq!(l.stats().await.unwrap()["m"].tokens.used, 60);
}

#[tokio::test]
async fn memory_does_not_grow_with_requests() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = support::model_process(&server, "t10", config(1_000, 1_000_000, 5)).await;
    let keys = || server.command(&["DBSIZE"]);
    for _ in 0..200 {
        l.try_acquire("m", 10).await.unwrap().settle(5).await.unwrap();
    }
    // State and admission records; leases and queue hold nothing now.
    let after = keys();
    let n: usize = after.trim_start_matches(':').trim().parse().unwrap();
    assert!(n <= 5, "{n} keys after 200 requests");
    let fields = server.command(&["HLEN", "{tg:t10:m=m}:s"]);
    let fields: usize = fields.trim_start_matches(':').trim().parse().unwrap();
    // clk, fp, and per window (rpm, tpm) its head, its total and the slots in use (at most
    // its ring of 61; one or two here, however many requests).
    assert!(fields <= 2 + 2 * 4, "{fields} fields in the state");
}

#[tokio::test]
async fn a_state_lost_on_the_server_is_reported() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = support::model_process(&server, "t11", config(2, 1_000, 5)).await;
    l.try_acquire("m", 1).await.unwrap().settle(1).await.unwrap();
    l.try_acquire("m", 1).await.unwrap().settle(1).await.unwrap();
    assert!(l.try_acquire("m", 1).await.is_err());
    assert_eq!(l.state_resets(), 0, "a first use is not a loss");
    server.command(&["FLUSHALL"]);
    // The counts are gone (at most one window admitted again), and that is reported.
    l.try_acquire("m", 1).await.unwrap().settle(1).await.unwrap();
    assert_eq!(l.state_resets(), 1);
    l.try_acquire("m", 1).await.unwrap().settle(1).await.unwrap();
    assert!(l.try_acquire("m", 1).await.is_err());
    assert_eq!(l.state_resets(), 1);
}

#[tokio::test]
async fn acquires_cancelled_mid_call_leave_no_stale_ticket_or_slot() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = support::model_process(&server, "t12", config(100_000, 10_000_000, 1)).await;
    let mut got = 0;
    for i in 0..60u64 {
        // From 0 to ~3 ms: many are dropped while their script call is in flight.
        let d = Duration::from_micros((i * 7_919) % 3_000);
        if let Ok(Ok(p)) = tokio::time::timeout(d, l.acquire("m", 10)).await {
            got += 1;
            drop(p);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let p = l.try_acquire("m", 10).await.unwrap_or_else(|e| {
        panic!("a stale ticket or slot blocks the model ({got} admitted before): {e:?}")
    });
    assert!(start.elapsed() < Duration::from_secs(1));
    drop(p);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = l.stats().await.unwrap();
    assert_eq!(stats["m"].active.used, 0, "{stats:?}");
    let queued = server.command(&["ZCARD", "{tg:t12:m=m}:q"]);
    assert_eq!(queued.trim(), ":0", "tickets left in the queue");
}

/// Operation calls so far (FCALL; EVALSHA, plus EVAL after a NOSCRIPT, on a server without
/// functions).
fn script_calls(server: &support::RedisServer) -> u64 {
    let info = server.command(&["INFO", "commandstats"]);
    info.lines()
        .filter(|l| {
            ["cmdstat_fcall:", "cmdstat_evalsha:", "cmdstat_eval:"].iter().any(|p| l.starts_with(p))
        })
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_rate_wait_sleeps_once_without_polling() {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let cfg = RateLimitConfig {
        limits: vec![Limit::requests("r", 1, Duration::from_secs(2)).with_slots(20)],
        ..config(1_000, 100_000, 5)
    };
    // A short ticket TTL: a refresh every 100 ms, were the head to refresh while it sleeps.
    let l = ModelRateLimiter::builder(store, "t13")
        .model("m", cfg)
        .ticket_ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    l.try_acquire("m", 1).await.unwrap().settle(1).await.unwrap();
    let before = script_calls(&server);
    let start = Instant::now();
    l.acquire("m", 1).await.unwrap().settle(1).await.unwrap();
    let waited = start.elapsed();
    let calls = script_calls(&server) - before;
    assert!(waited >= Duration::from_millis(1_900), "waited {waited:?}");
    // The first admit (told to sleep), the second (admitted), the settle.
    assert!(calls <= 4, "{calls} script calls in a {waited:?} wait");
}

#[tokio::test]
async fn the_breaker_answers_at_once_while_down_and_probes_again_after_its_cooldown() {
    let Some(mut server) = support::RedisServer::start() else { return };
    let options = StoreOptions {
        response_timeout: Duration::from_millis(300),
        breaker_cooldown: Duration::from_millis(400),
        ..Default::default()
    };
    let store = RedisStore::connect_with(&server.url(), options).await.unwrap();
    let l = ModelRateLimiter::builder(store, "t14")
        .model("m", config(1_000, 100_000, 8))
        .on_store_error(Degraded::Local { share: Share::new(1, 2) })
        .build()
        .unwrap();
    assert!(!l.try_acquire("m", 1).await.unwrap().is_degraded());
    server.kill();
    let first = l.acquire("m", 1).await.unwrap(); // finds Redis gone (a failed call or two)
    assert!(first.is_degraded());
    for _ in 0..3 {
        let start = Instant::now();
        let p = l.acquire("m", 1).await.unwrap();
        assert!(p.is_degraded());
        assert!(
            start.elapsed() < Duration::from_millis(150),
            "waited {:?} on a known outage",
            start.elapsed()
        );
    }
    server.restart();
    tokio::time::sleep(Duration::from_millis(500)).await; // past the cooldown
    let start = Instant::now();
    let back = loop {
        let p = l.acquire("m", 1).await.unwrap();
        if !p.is_degraded() {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    back.settle(1).await.unwrap();
}

#[tokio::test]
async fn bounded_acquires_refuse_up_front_what_cannot_make_their_deadline() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = support::model_process(&server, "t15", config(1, 1_000, 5)).await;
    let now = l.timer().now();
    // A deadline already past fails at once, even with room.
    let err = l.acquire_before("m", 1, now).await.unwrap_err();
    assert!(matches!(limit_err(&err), tollgate::Error::MaxWaitExceeded { .. }), "{err:?}");
    l.acquire_within("m", 1, Duration::ZERO).await.unwrap().settle(1).await.unwrap();
    // RPM 1: the next room is a minute away; a 10 s bound is refused at once with that instant.
    let start = Instant::now();
    let by = l.timer().now() + Duration::from_secs(10);
    let err = l.acquire_before("m", 1, by).await.unwrap_err();
    let tollgate::Error::MaxWaitExceeded { ready_at } = *limit_err(&err) else { panic!("{err:?}") };
    assert!(ready_at > by, "{ready_at:?} vs {by:?}");
    assert!(start.elapsed() < Duration::from_secs(1), "refused up front, not after waiting");
    let stats = l.stats().await.unwrap();
    assert_eq!((stats["m"].requests.used, stats["m"].active.used), (1, 0));
}

#[tokio::test]
async fn a_waiter_refreshing_on_a_lost_state_leaves_it_expiring() {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    // A ticket TTL of 300 ms: the waiter renews its place every 100 ms.
    let l = ModelRateLimiter::builder(store, "t20")
        .model("m", config(1_000, 100_000, 1))
        .ticket_ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    let held = l.acquire("m", 1).await.unwrap();
    let waiter = tokio::spawn({
        let l = l.clone();
        async move { l.acquire("m", 1).await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The state goes (evicted, say) while the waiter is queued without a slot; its renewals
    // read the windows, which writes the state again: it must expire again too.
    server.command(&["DEL", "{tg:t20:m=m}:s"]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let ttl = server.command(&["PTTL", "{tg:t20:m=m}:s"]);
    assert_ne!(ttl.trim(), ":-1", "the state was written back without an expiry");
    held.settle(1).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn input_and_output_tokens_are_limited_apart() {
    let Some(server) = support::RedisServer::start() else { return };
    let minute = Duration::from_secs(60);
    let cfg = RateLimitConfig {
        rpm: 100,
        tpm: 100_000,
        max_parallel_requests: 10,
        limits: vec![
            Limit::window("itpm", tollgate::model::Counts::InputTokens, 1_000, minute),
            Limit::window("otpm", tollgate::model::Counts::OutputTokens, 500, minute),
        ],
        ..Default::default()
    };
    let l = support::model_process(&server, "t21", cfg).await;
    let used = |s: &tollgate::ModelStats, name: &str| {
        s.limits.iter().find(|u| u.name == name).map(|u| u.usage.used).unwrap()
    };
    // Input is reserved at admission; output is not (only room for one more is needed).
    let e = Estimate { input: 600, output: 4_000 };
    let p = l.try_acquire_with("m", e).await.unwrap();
    assert_eq!(p.estimate(), e);
    let s = &l.stats().await.unwrap()["m"];
    assert_eq!((s.tokens.used, used(s, "itpm"), used(s, "otpm")), (4_600, 600, 0));
    // A second input estimate over what is left is refused; the output window still has room.
    let err = l.try_acquire_with("m", Estimate { input: 500, output: 0 }).await.unwrap_err();
    assert!(matches!(limit_err(&err), tollgate::Error::RateLimited(_)), "{err:?}");
    // Settled: input to the actual, output charged now, for the first time.
    assert_eq!(p.settle_io(550, 520).await.unwrap(), Settled::Applied);
    let s = &l.stats().await.unwrap()["m"];
    assert_eq!((s.tokens.used, used(s, "itpm"), used(s, "otpm")), (1_070, 550, 520));
    // The output window is now over its limit: nothing more is admitted until it drains.
    let err = l.try_acquire_with("m", Estimate { input: 1, output: 1 }).await.unwrap_err();
    let tollgate::Error::RateLimited(r) = limit_err(&err) else { panic!("{err:?}") };
    assert!(r.retry_after(l.timer().now()) > Duration::from_secs(50), "{r:?}");
    // An input estimate over the input limit can never fit.
    let err = l.acquire_with("m", Estimate { input: 1_001, output: 0 }).await.unwrap_err();
    assert!(
        matches!(
            limit_err(&err),
            tollgate::Error::InsufficientCapacity { requested: 1_001, capacity: 1_000 }
        ),
        "{err:?}"
    );
    // A plain settle splits input first: 700 of an estimate of 300 input are 300 + 400.
    let l2 = support::model_process(
        &server,
        "t22",
        RateLimitConfig {
            rpm: 100,
            tpm: 100_000,
            max_parallel_requests: 10,
            limits: vec![Limit::window(
                "otpm",
                tollgate::model::Counts::OutputTokens,
                5_000,
                minute,
            )],
            ..Default::default()
        },
    )
    .await;
    let p = l2.acquire_with("m", Estimate { input: 300, output: 100 }).await.unwrap();
    p.settle(700).await.unwrap();
    let s = &l2.stats().await.unwrap()["m"];
    assert_eq!((s.tokens.used, used(s, "otpm")), (700, 400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_whose_caller_is_gone_gives_back_its_request_too() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = support::model_process(&server, "t23", config(10, 10_000, 10)).await;
    drop(l.try_acquire("m", 100).await.unwrap()); // the state exists: 1 request, 100 tokens
    // Hold every call on the server: the next try goes out and waits there; its caller is
    // gone before the answer, so its guard's give-back follows it on the same connection.
    server.command(&["CLIENT", "PAUSE", "300", "ALL"]);
    let gone = tokio::spawn({
        let l = l.clone();
        async move { l.try_acquire("m", 100).await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    gone.abort();
    // After the pause the try is admitted, then undone: its slot, its tokens and its request.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = &l.stats().await.unwrap()["m"];
        let now = (s.requests.used, s.tokens.used, s.active.used);
        if now == (1, 100, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "still {now:?} after the give-back");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_that_frees_goes_to_every_waiter_it_fits_in_one_call() {
    let Some(server) = support::RedisServer::start() else { return };
    let l = support::model_process(&server, "t24", config(100, 1_000, 100)).await;
    let full = l.acquire("m", 1_000).await.unwrap(); // the token window is full for a minute
    let waiters: Vec<_> = (0..6)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.acquire("m", 100).await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await; // all six queued
    // Settled to 500: room for five of them, which the settle's call admits on their behalf,
    // oldest first, at its one instant (one waiter per round trip before).
    full.settle(500).await.unwrap();
    let mut admitted = Vec::new();
    let mut left = Vec::new();
    for w in waiters {
        match tokio::time::timeout(Duration::from_secs(2), w).await {
            Ok(p) => admitted.push(p.unwrap()),
            Err(_) => left.push(()),
        }
    }
    assert_eq!((admitted.len(), left.len()), (5, 1), "five fit, the sixth waits");
    let at: Vec<i64> = admitted.iter().map(|p| p.admitted_at_server_micros().unwrap()).collect();
    assert!(at.iter().all(|&t| t == at[0]), "admitted in one call: {at:?}");
    let s = &l.stats().await.unwrap()["m"];
    assert_eq!((s.tokens.used, s.active.used), (1_000, 5));
}
