//! Header feedback shared through Redis: what one process learns from a provider's headers (a
//! limit lower than configured, the share other clients hold on the key) holds every process
//! of the model (two limiters on two connections stand for two processes); feedback only
//! tightens unless the config says otherwise, and leaves the config's fingerprint alone; a
//! report read late is compared with the books of when it was produced; under a crowd of
//! waiters with random timeouts and a stream of reports, no window admits more than the latest
//! reports allowed; feedback that cannot reach Redis is a store error under every policy.

mod support;

use core::time::Duration;
use std::sync::{Arc, Mutex};

use tokio::time::timeout;
use tollgate::model::{Counts, Limit};
use tollgate::provider::{HeaderReport, Observed, Provider, Quota, parse_headers};
use tollgate::{Clock, RateLimitConfig};
use tollgate_redis::{Degraded, Error, ModelRateLimiter, RedisStore, Share};

/// Every await of these tests is bounded by this: a call that hangs fails the test.
const BOUND: Duration = Duration::from_secs(10);

async fn bounded<T>(f: impl core::future::Future<Output = T>) -> T {
    timeout(BOUND, f).await.expect("hung")
}

/// One "process": a limiter on its own connection.
async fn process(
    server: &support::RedisServer,
    ns: &str,
    cfg: RateLimitConfig,
) -> ModelRateLimiter {
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    ModelRateLimiter::builder(store, ns).model("m", cfg).build().expect("limiter")
}

fn openai(headers: &[(&'static str, &'static str)]) -> HeaderReport {
    parse_headers(Provider::OpenAi, headers.iter().copied(), None)
}

/// A report of one quota over `window`, exact (no rounding).
fn report(
    quota: Quota,
    window: Duration,
    limit: u64,
    remaining: u64,
    reset: Duration,
) -> HeaderReport {
    let mut o = Observed::new(quota);
    o.window = Some(window);
    o.limit = Some(limit);
    o.remaining = Some(remaining);
    o.reset_after = Some(reset);
    let mut r = HeaderReport::empty(Provider::OpenAi);
    r.observed.push(o);
    r
}

/// The server's clock (µs).
fn server_now(server: &support::RedisServer) -> i64 {
    let r = server.command(&["TIME"]);
    let n: Vec<i64> = r.lines().filter_map(|l| l.parse().ok()).collect();
    n[0] * 1_000_000 + n[1]
}

#[tokio::test]
async fn headers_seen_by_one_process_lower_the_limit_and_drain_the_other() {
    let Some(server) = support::RedisServer::start() else { return };
    let cfg = RateLimitConfig { rpm: 500, tpm: 40_000, ..Default::default() };
    let a = process(&server, "hd1", cfg.clone()).await;
    let b = process(&server, "hd1", cfg.clone()).await;
    bounded(bounded(a.try_acquire("m", 1_000)).await.unwrap().settle(1_000)).await.unwrap();
    // Another app shares the key: 20 000 left of 30 000, where the config says 40 000.
    let headers = [
        ("x-ratelimit-limit-tokens", "30000"),
        ("x-ratelimit-remaining-tokens", "20000"),
        ("x-ratelimit-reset-tokens", "20s"),
    ];
    let r = bounded(a.observe("m", &openai(&headers))).await.unwrap();
    assert_eq!(r.learned.len(), 1, "{r:?}");
    assert_eq!((&*r.learned[0].limit, r.learned[0].from, r.learned[0].to), ("tpm", 40_000, 30_000));
    // The provider counts 10 000: 1 000 of ours, 9 000 of someone else's.
    assert_eq!(r.drained.len(), 1, "{r:?}");
    assert_eq!((&*r.drained[0].limit, r.drained[0].charged), ("tpm", 9_000));
    assert!(r.unmatched.is_empty());
    // B, which observed nothing, sees both.
    let stats = bounded(b.stats()).await.unwrap();
    let t = &stats["m"].limits[1];
    assert_eq!(
        (t.usage.used, t.usage.limit, t.configured, t.learned),
        (10_000, 30_000, 40_000, Some(30_000))
    );
    let before = b.timer().now();
    let err = bounded(b.try_acquire("m", 20_001)).await.unwrap_err();
    let Some(tollgate::Error::RateLimited(refused)) = err.limit() else { panic!("{err:?}") };
    // Room again when the others' share ends: the provider's reset (and a slot).
    let wait = refused.retry_after(before);
    assert!(wait > Duration::from_secs(19) && wait < Duration::from_secs(23), "{wait:?}");
    let p = bounded(b.try_acquire("m", 20_000)).await.expect("the provider's 20 000 fit");
    bounded(p.settle(20_000)).await.unwrap();
    assert!(bounded(a.try_acquire("m", 1)).await.is_err(), "A sees B's 20 000 too");
    // A third process with the same config still matches: learning changed no fingerprint.
    let c = process(&server, "hd1", cfg).await;
    let stats = bounded(c.stats()).await.expect("same config");
    assert_eq!(stats["m"].limits[1].usage.limit, 30_000);
    // A quota with no local limit over its window is reported, not applied.
    let day = report(Quota::Requests, Duration::from_secs(86_400), 10, 0, Duration::from_secs(9));
    let r = bounded(c.observe("m", &day)).await.unwrap();
    assert_eq!(r.unmatched, [Quota::Requests]);
    assert!(r.learned.is_empty() && r.drained.is_empty());
}

#[tokio::test]
async fn a_permit_settles_then_observes_its_answer() {
    let Some(server) = support::RedisServer::start() else { return };
    let cfg = RateLimitConfig { rpm: 500, tpm: 10_000, ..Default::default() };
    let a = process(&server, "hd9", cfg.clone()).await;
    let b = process(&server, "hd9", cfg).await;
    let permit = bounded(a.try_acquire("m", 2_000)).await.unwrap();
    // The request used 500; the provider counts 4 500 in all: 4 000 are someone else's
    // (observed before the settle, the 1 500 it did not use would hide as much of theirs).
    let headers = [("x-ratelimit-limit-tokens", "10000"), ("x-ratelimit-remaining-tokens", "5500")];
    let (settled, r) =
        bounded(permit.settle_and_observe(200, 300, &openai(&headers))).await.unwrap();
    assert_eq!(settled, tollgate_redis::Settled::Applied);
    assert_eq!(r.drained[0].charged, 4_000, "{r:?}");
    assert_eq!(bounded(b.stats()).await.unwrap()["m"].tokens.used, 4_500);
    // As of when it was received.
    let permit = bounded(b.try_acquire("m", 100)).await.unwrap();
    let received = b.timer().now();
    let headers = [("x-ratelimit-limit-tokens", "10000"), ("x-ratelimit-remaining-tokens", "5000")];
    let (_, r) =
        bounded(permit.settle_and_observe_at(100, 0, &openai(&headers), received)).await.unwrap();
    assert_eq!(r.drained[0].charged, 4_400, "5 000 counted, 600 of them ours: {r:?}");
}

#[tokio::test]
async fn feedback_only_tightens_unless_the_config_lets_it_raise() {
    let Some(server) = support::RedisServer::start() else { return };
    let cfg = RateLimitConfig { rpm: 500, tpm: 40_000, ..Default::default() };
    let a = process(&server, "hd2", cfg.clone()).await;
    let b = process(&server, "hd2", cfg).await;
    let higher = [("x-ratelimit-limit-tokens", "90000"), ("x-ratelimit-remaining-tokens", "90000")];
    let r = bounded(a.observe("m", &openai(&higher))).await.unwrap();
    assert!(r.learned.is_empty() && r.drained.is_empty(), "{r:?}");
    let t = &bounded(b.stats()).await.unwrap()["m"].limits[1];
    assert_eq!((t.usage.limit, t.learned), (40_000, None));
    // Learned lower, then a higher one comes back no higher than configured.
    let lower = [("x-ratelimit-limit-tokens", "30000")];
    bounded(a.observe("m", &openai(&lower))).await.unwrap();
    assert_eq!(bounded(b.stats()).await.unwrap()["m"].limits[1].usage.limit, 30_000);
    let r = bounded(b.observe("m", &openai(&higher))).await.unwrap();
    assert_eq!((r.learned[0].from, r.learned[0].to), (30_000, 40_000));
    let t = &bounded(a.stats()).await.unwrap()["m"].limits[1];
    assert_eq!((t.usage.limit, t.learned), (40_000, None));
    assert!(bounded(a.try_acquire("m", 40_001)).await.is_err(), "above the configured limit");

    // With `feedback_may_raise` the provider's higher limit is taken.
    let cfg =
        RateLimitConfig { rpm: 500, tpm: 40_000, feedback_may_raise: true, ..Default::default() };
    let a = process(&server, "hd3", cfg.clone()).await;
    let b = process(&server, "hd3", cfg).await;
    let r = bounded(a.observe("m", &openai(&higher))).await.unwrap();
    assert_eq!((r.learned[0].from, r.learned[0].to), (40_000, 90_000));
    let t = &bounded(b.stats()).await.unwrap()["m"].limits[1];
    assert_eq!((t.usage.limit, t.configured, t.learned), (90_000, 40_000, Some(90_000)));
}

/// A 2 s window of 100 ms slots, so that a report can be read later than a window.
fn short(max: u64) -> RateLimitConfig {
    RateLimitConfig {
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: 64,
        limits: vec![
            Limit::window("r2s", Counts::Requests, max, Duration::from_secs(2)).with_slots(20),
        ],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_report_read_late_is_compared_with_the_books_of_when_it_was_produced() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = process(&server, "hd4", short(100)).await;
    for _ in 0..10 {
        bounded(bounded(a.try_acquire("m", 1)).await.unwrap().settle(1)).await.unwrap();
    }
    // The provider counted our 10 and nobody else's when it answered.
    let seen = a.timer().now();
    let said = report(Quota::Requests, Duration::from_secs(2), 100, 90, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let r = bounded(a.observe_at("m", &said, seen)).await.unwrap();
    assert!(r.drained.is_empty(), "our own 10, not someone else's: {r:?}");
    // Read now instead, the same report says someone else holds 10 (ours are still in the
    // window, so 10 + 10 = 20 counted).
    let r = bounded(a.observe(
        "m",
        &report(Quota::Requests, Duration::from_secs(2), 100, 80, Duration::from_secs(1)),
    ))
    .await
    .unwrap();
    assert_eq!(r.drained[0].charged, 10, "{r:?}");
    // A share held past the windows keeps the state alive as long (it lives there).
    let long = report(Quota::Requests, Duration::from_secs(2), 100, 50, Duration::from_secs(120));
    assert!(!bounded(a.observe("m", &long)).await.unwrap().drained.is_empty());
    let ttl = server.command(&["PTTL", "{tg:hd4:m=m}:s"]);
    let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
    assert!(ttl > 119_000, "the state expires before the share ends: {ttl} ms");
    // A report older than the window changes nothing.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let old = a.timer().now() - Duration::from_millis(2_500);
    let r = bounded(a.observe_at("m", &said, old)).await.unwrap();
    assert!(r.drained.is_empty(), "{r:?}");
}

#[tokio::test]
async fn header_feedback_that_cannot_reach_redis_is_a_store_error_whatever_the_policy() {
    let Some(mut server) = support::RedisServer::start() else { return };
    let store = support::store_timing_out_after(Duration::from_millis(300), &server.url()).await;
    let cfg = RateLimitConfig { rpm: 500, tpm: 40_000, ..Default::default() };
    let headers = [("x-ratelimit-limit-tokens", "30000"), ("x-ratelimit-remaining-tokens", "100")];
    let closed =
        ModelRateLimiter::builder(store.clone(), "hd5").model("m", cfg.clone()).build().unwrap();
    let open = ModelRateLimiter::builder(store.clone(), "hd5")
        .model("m", cfg.clone())
        .on_store_error(Degraded::FailOpen)
        .build()
        .unwrap();
    let local = ModelRateLimiter::builder(store, "hd5")
        .model("m", cfg)
        .on_store_error(Degraded::Local { share: Share::new(1, 2) })
        .build()
        .unwrap();
    server.kill();
    for l in [&closed, &open, &local] {
        let err = bounded(l.observe("m", &openai(&headers))).await.unwrap_err();
        assert!(err.is_store(), "{err:?}");
        let err = bounded(l.observe_at("m", &openai(&headers), l.timer().now())).await.unwrap_err();
        assert!(err.is_store(), "{err:?}");
    }
    // A degraded permit's answer: settled where it was counted, an error all the same (the
    // others were not told); the local share learns it (its room drained to the 100 left).
    let p = bounded(open.try_acquire("m", 10)).await.expect("fail open");
    let err = bounded(p.settle_and_observe(10, 0, &openai(&headers))).await.unwrap_err();
    assert!(err.is_store(), "{err:?}");
    let p = bounded(local.try_acquire("m", 10)).await.expect("local share");
    assert!(p.is_degraded());
    let err = bounded(p.settle_and_observe(10, 0, &openai(&headers))).await.unwrap_err();
    assert!(err.is_store(), "{err:?}");
    let err = bounded(local.try_acquire("m", 200)).await.unwrap_err();
    assert!(matches!(err.limit(), Some(tollgate::Error::RateLimited(_))), "{err:?}");
    // Nothing to apply needs no round trip.
    let r = bounded(open.observe("m", &HeaderReport::empty(Provider::OpenAi))).await.unwrap();
    assert_eq!(r, tollgate::model::FeedbackReport::default());
}

#[tokio::test]
async fn another_config_under_the_same_name_is_refused_header_feedback_too() {
    let Some(server) = support::RedisServer::start() else { return };
    let a = process(&server, "hd6", RateLimitConfig { tpm: 40_000, ..Default::default() }).await;
    let b = process(&server, "hd6", RateLimitConfig { tpm: 50_000, ..Default::default() }).await;
    drop(bounded(a.try_acquire("m", 10)).await.expect("first config"));
    let headers = [("x-ratelimit-limit-tokens", "30000"), ("x-ratelimit-remaining-tokens", "0")];
    let err = bounded(b.observe("m", &openai(&headers))).await.unwrap_err();
    assert!(matches!(err, Error::ConfigMismatch { .. }), "{err:?}");
    drop(bounded(a.try_acquire("m", 10)).await.expect("not drained by it"));
}

/// One report as applied: the server's clock just before and just after the call, what it
/// said was left, and for how long.
#[derive(Debug, Clone, Copy)]
struct Applied {
    before: i64,
    after: i64,
    remaining: u64,
    reset_us: i64,
}

#[test]
fn a_crowd_under_random_timeouts_never_gets_more_than_the_latest_reports_allowed() {
    let Some(server) = support::RedisServer::start() else { return };
    let server = Arc::new(server);
    const WINDOW_US: i64 = 2_000_000;
    const SLOT_US: i64 = 100_000;
    // The provider's limit, below the configured 400 (learned on the first report).
    const LIMIT: u64 = 240;
    support::block_on_bounded(Duration::from_secs(60), async move {
        let a = process(&server, "hd7", short(400)).await;
        let b = process(&server, "hd7", short(400)).await;
        let stop = std::time::Instant::now() + Duration::from_secs(4);
        let admitted = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let l = if t % 2 == 0 { a.clone() } else { b.clone() };
            let admitted = admitted.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(t);
                while std::time::Instant::now() < stop {
                    // (a crowd that asks a little faster than the provider lets it, so that
                    // windows are seldom full of our own requests alone)
                    tokio::time::sleep(Duration::from_millis(rng.u64(40..160))).await;
                    let max_wait = Duration::from_millis(rng.u64(1..150));
                    let Ok(p) = bounded(l.acquire_within("m", 1, max_wait)).await else { continue };
                    admitted.lock().unwrap().push(p.admitted_at_server_micros().unwrap());
                    tokio::time::sleep(Duration::from_millis(rng.u64(0..5))).await;
                    // A request is a request: settled or dropped, it stays counted.
                    if rng.bool() {
                        bounded(p.settle(1)).await.expect("settle");
                    } else {
                        drop(p);
                    }
                }
            }));
        }
        // Reports, one after another, from either process, each bracketed by the server's
        // clock.
        let mut applied = Vec::new();
        let mut rng = fastrand::Rng::with_seed(77);
        while std::time::Instant::now() < stop {
            if !applied.is_empty() {
                tokio::time::sleep(Duration::from_millis(rng.u64(20..150))).await;
            }
            // A provider that counts our requests and someone else's (a varying crowd of
            // them), now and then nonsense (more left than it could have).
            let s = server.clone();
            let now = tokio::task::spawn_blocking(move || server_now(&s)).await.unwrap();
            let ours =
                admitted.lock().unwrap().iter().filter(|&&t| t > now - WINDOW_US).count() as u64;
            let others = rng.u64(0..=LIMIT / 3);
            let remaining = match rng.u64(0..8) {
                0 => 0,
                1 => rng.u64(0..=LIMIT),
                _ => LIMIT.saturating_sub(ours + others),
            };
            let reset = Duration::from_millis(rng.u64(100..1_500));
            let r = report(Quota::Requests, Duration::from_secs(2), LIMIT, remaining, reset);
            let l = if rng.bool() { &a } else { &b };
            let s = server.clone();
            let before = tokio::task::spawn_blocking(move || server_now(&s)).await.unwrap();
            bounded(l.observe("m", &r)).await.expect("observe");
            let s = server.clone();
            let after = tokio::task::spawn_blocking(move || server_now(&s)).await.unwrap();
            let reset_us = i64::try_from(reset.as_micros()).unwrap();
            applied.push(Applied { before, after, remaining, reset_us });
        }
        for t in tasks {
            bounded(t).await.unwrap();
        }
        let mut log = admitted.lock().unwrap().clone();
        log.sort_unstable();
        let in_window =
            |from: i64, to: i64| log.iter().filter(|&&t| t > from && t <= to).count() as u64;
        let (mut checked, mut closest) = (0u64, 0f64);
        for &t in &log {
            let own = in_window(t - WINDOW_US, t);
            // Once learned, the provider's limit holds for every window.
            if t >= applied[0].after {
                assert!(own <= LIMIT, "{own} admitted in the window ending at {t}, above {LIMIT}");
            }
            // Until a report's reset, a window holds no more than what the provider had left
            // and what of ours it had counted (all of ours in its window and one slot before
            // it, at most: the state counts by slots, and a straddling one as ours).
            for r in applied.iter().filter(|r| t >= r.after && t < r.before + r.reset_us) {
                let counted = in_window(r.before - WINDOW_US - SLOT_US, r.after);
                let bound = r.remaining + counted;
                assert!(
                    own <= bound,
                    "{own} admitted in the window ending at {t}, above {bound} ({} left, {counted} of ours counted): {r:?}",
                    r.remaining
                );
                checked += 1;
                closest = closest.max(own as f64 / bound.max(1) as f64);
            }
        }
        eprintln!(
            "{} admissions, {} reports, {checked} checks, the closest at {closest:.2} of its bound, max in a window {}",
            log.len(),
            applied.len(),
            log.iter().map(|&t| in_window(t - WINDOW_US, t)).max().unwrap_or(0)
        );
        assert!(
            log.len() > 60 && applied.len() > 10 && checked > 100,
            "{} admissions, {} reports, {checked} checks",
            log.len(),
            applied.len()
        );
        // Not vacuous: some window came close to what the reports allowed (a drain that held
        // nothing breaks the bound: checked by making `rule_drain` hold nothing).
        assert!(
            closest >= 0.7,
            "no check came near its bound ({closest:.2}): the reports never held anything back"
        );
    });
}

/// The commands scripts ran (`INFO commandstats`, reset first) while `n` tries and settles
/// went one after another, all inside one second of the server's clock (so that no window's
/// head moves in between, which costs the same with feedback or without): per command, its
/// calls. Tried again if the second ran out.
async fn commands_of(
    server: &Arc<support::RedisServer>,
    l: &ModelRateLimiter,
    n: usize,
) -> Vec<(String, u64)> {
    for _ in 0..10 {
        let s = server.clone();
        let started = tokio::task::spawn_blocking(move || {
            // Wait for the start of a new second (every run's first call moves the heads
            // then), then reset the counters.
            let second = server_now(&s) / 1_000_000;
            loop {
                let now = server_now(&s);
                if now / 1_000_000 > second && now % 1_000_000 < 100_000 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            s.command(&["CONFIG", "RESETSTAT"]);
            server_now(&s)
        })
        .await
        .unwrap();
        for _ in 0..n {
            let p = bounded(l.try_acquire("m", 1)).await.expect("room");
            bounded(p.settle(1)).await.expect("settle");
        }
        let s = server.clone();
        let (ended, stats) = tokio::task::spawn_blocking(move || {
            (server_now(&s), s.command(&["INFO", "commandstats"]))
        })
        .await
        .unwrap();
        if ended / 1_000_000 != started / 1_000_000 {
            continue;
        }
        return stats
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
                let calls = rest.split(',').next()?.parse().ok()?;
                (!name.starts_with("config") && name != "info").then(|| (name.to_owned(), calls))
            })
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
    }
    panic!("no second of the server's clock was long enough");
}

#[test]
fn feedback_costs_an_admission_no_command() {
    let Some(server) = support::RedisServer::start() else { return };
    let server = Arc::new(server);
    support::block_on_bounded(Duration::from_secs(60), async move {
        // (minute windows of one-second slots: no head moves inside a measured second)
        let cfg = RateLimitConfig {
            rpm: 1_000_000,
            tpm: 1_000_000_000,
            max_parallel_requests: 64,
            ..Default::default()
        };
        let a = process(&server, "hd8", cfg).await;
        drop(bounded(a.try_acquire("m", 1)).await.unwrap());
        let without = commands_of(&server, &a, 20).await;
        // Learned maxima and shares held, in force all along.
        let r =
            report(Quota::Requests, Duration::from_secs(60), 900_000, 100, Duration::from_secs(60));
        let r = bounded(a.observe("m", &r)).await.unwrap();
        assert!(!r.learned.is_empty() && !r.drained.is_empty(), "{r:?}");
        let with = commands_of(&server, &a, 20).await;
        let fcalls = without.iter().find(|(c, _)| c == "fcall").map_or(0, |c| c.1);
        // (TIME: the scripts' own, and two of this test's, outside them)
        let others: u64 =
            without.iter().filter(|(c, _)| c != "fcall").map(|c| c.1).sum::<u64>() - 2;
        eprintln!(
            "per call: {fcalls} FCALL, {others} commands inside them; without {without:?}, with {with:?}"
        );
        assert_eq!(fcalls, 40, "one call per try and per settle: {without:?}");
        assert_eq!(without, with, "feedback in force costs admissions no command");
    });
}
