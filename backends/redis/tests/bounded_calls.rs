//! A caller's own short bound is not a store fault (issue 10, "Store unreachable"): a call cut
//! short by an `acquire_within` bound while the server is merely slow gets its typed error under
//! every degraded policy, nothing admitted; the policy engages on faults only (a connection
//! error, a full response timeout, an open breaker). And so that `Local` and `FailOpen` still
//! engage when the server is truly gone but every caller uses short bounds (a blackhole: no
//! connection error, no call ever waits the full timeout), a cut call starts one probe with the
//! full timeout, whose failure opens the breaker. Each test is bounded in time and prints what
//! it observed (`cargo test -p tollgate-redis --test bounded_calls -- --nocapture`).

mod proxy;
mod support;

use core::time::Duration;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use proxy::fault::{FaultProxy, Mode};
use support::RedisServer;
use tollgate::model::Limit;
use tollgate::{Rate, RateLimitConfig};
use tollgate_redis::{
    Degraded, Error, ModelRateLimiter, RateLimiter, RedisStore, Share, StoreError,
};

const NS: &str = "bounded";
const MODEL: &str = "model";
/// The response timeout of every store here: what a probe waits, the bound on any one call.
const RESPONSE: Duration = Duration::from_millis(300);
/// The callers' own bound, far below a round trip through the delaying proxy.
const SHORT: Duration = Duration::from_millis(5);
/// How late an answer to a [`SHORT`] call may come: the call's least budget (10 ms) and the
/// scheduling of a loaded 2-core machine. Far below [`RESPONSE`]: nobody waits out a timeout.
const ANSWER_BY: Duration = Duration::from_millis(150);
/// Whatever happens, no test runs longer than this.
const TEST_BOUND: Duration = Duration::from_secs(60);

/// A model whose binding limits are `max` requests per `window` (parallel 100).
fn config(max: u64, window: Duration) -> RateLimitConfig {
    RateLimitConfig {
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: 100,
        limits: vec![Limit::requests("requests", max, window).with_slots(20)],
        ..Default::default()
    }
}

fn model_limiter(store: RedisStore, config: RateLimitConfig, policy: Degraded) -> ModelRateLimiter {
    ModelRateLimiter::builder(store, NS)
        .model(MODEL, config)
        .on_store_error(policy)
        .build()
        .expect("limiter")
}

/// What `calls` [`SHORT`]-bounded calls of `f` (on `tasks` tasks) got: admitted, store
/// timeouts, other errors (debug text), and the slowest answer.
async fn short_calls<F, Fut>(tasks: usize, calls: usize, f: F) -> Outcomes
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<bool, Error>> + Send,
{
    let out = Arc::new(Mutex::new(Outcomes::default()));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (f, out) = (f.clone(), out.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..calls / tasks {
                let t = Instant::now();
                let r = tokio::time::timeout(SHORT + RESPONSE * 3, f()).await;
                let took = t.elapsed();
                let r = r.unwrap_or_else(|_| panic!("a {SHORT:?} acquire still ran at {took:?}"));
                let mut o = out.lock().unwrap();
                o.slowest = o.slowest.max(took);
                match r {
                    Ok(true) => o.degraded += 1,
                    Ok(false) => o.admitted += 1,
                    Err(Error::Store(StoreError::Timeout { .. })) => o.timeouts += 1,
                    Err(e) => {
                        // By kind (the variant's name), not by instant.
                        let text = format!("{e:?}");
                        let kind =
                            text.split([' ', '{', '(']).take(2).collect::<Vec<_>>().join(" ");
                        *o.other.entry(kind).or_default() += 1;
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await.expect("caller task");
    }
    Arc::try_unwrap(out).expect("tasks done").into_inner().unwrap()
}

#[derive(Debug, Default)]
struct Outcomes {
    /// Admitted through Redis.
    admitted: usize,
    /// Admitted by the degraded policy.
    degraded: usize,
    timeouts: usize,
    /// Other errors, by kind.
    other: std::collections::BTreeMap<String, usize>,
    slowest: Duration,
}

/// How many `PTTL` commands `server` ran: the probes (nothing else here sends one).
fn probes(server: &RedisServer) -> u64 {
    let stats = server.command(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_pttl:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a count"))
}

/// A healthy server 40 ms away (20 ms each way) whose model window is already full; 200
/// acquires bounded at 5 ms: each call is cut by its caller's bound, which says nothing about
/// the server, so none is admitted, whatever the policy.
fn slow_model_admits_nothing_past_its_limit(policy: Degraded) {
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(TEST_BOUND, async {
        let window = Duration::from_secs(2);
        let direct = model_limiter(
            support::store_timing_out_after(RESPONSE, &server.url()).await,
            config(5, window),
            policy,
        );
        for _ in 0..5 {
            let p = direct.try_acquire(MODEL, 1).await.expect("room in the window");
            p.settle(1).await.expect("settle");
        }
        assert!(direct.try_acquire(MODEL, 1).await.is_err(), "the window is full");
        let l = model_limiter(
            support::store_timing_out_after(RESPONSE, &proxy.url()).await,
            config(5, window),
            policy,
        );
        proxy.set_mode(Mode::Delay(Duration::from_millis(20)));
        let started = Instant::now();
        let l2 = l.clone();
        let o = short_calls(20, 200, move || {
            let l = l2.clone();
            async move {
                let p = l.acquire_within(MODEL, 1, SHORT).await?;
                Ok(p.is_degraded())
            }
        })
        .await;
        let took = started.elapsed();
        let probed = probes(&server);
        // The server was reachable all along: a caller that waits long enough gets its answer
        // (the window is full), not the policy's.
        let long = l.acquire_within(MODEL, 1, Duration::from_millis(500)).await;
        println!(
            "model, {policy:?}, server 40 ms away, window full: 200 acquires bounded at {SHORT:?} \
             in {took:?}: {} admitted through Redis, {} by the policy, {} store timeouts, other \
             {:?}, slowest answer {:?}; {probed} probes; a 500 ms acquire then got {long:?}",
            o.admitted, o.degraded, o.timeouts, o.other, o.slowest
        );
        check_probes(probed, took);
        assert!(took < window, "the run outlasted the window: the check would be void");
        assert_eq!(o.degraded, 0, "the policy admitted calls cut by their callers' own bound");
        assert_eq!(o.admitted, 0, "admitted past the full window");
        assert!(o.other.is_empty(), "errors other than store timeouts: {:?}", o.other);
        assert!(o.slowest <= ANSWER_BY, "a {SHORT:?} acquire answered after {:?}", o.slowest);
        assert!(
            matches!(long, Err(Error::Limit(tollgate::Error::MaxWaitExceeded { .. }))),
            "a 500 ms acquire through a healthy server: {long:?}"
        );
    });
}

/// Probes during a run of `took` against a server 40 ms away: at least one (the cut calls
/// asked), and at most one out at a time, so about one per round trip, not one per cut call.
fn check_probes(probed: u64, took: Duration) {
    let round_trips = u64::try_from(took.as_millis() / 40).expect("ms") + 2;
    assert!((1..=round_trips).contains(&probed), "{probed} probes in {took:?}");
}

#[test]
fn a_slow_server_is_not_unreachable_model_fail_open() {
    slow_model_admits_nothing_past_its_limit(Degraded::FailOpen);
}

#[test]
fn a_slow_server_is_not_unreachable_model_local() {
    slow_model_admits_nothing_past_its_limit(Degraded::Local { share: Share::percent(100) });
}

/// As [`slow_model_admits_nothing_past_its_limit`], for the bucket: its burst taken, refilled
/// one token a minute.
fn slow_bucket_admits_nothing_past_its_limit(policy: Degraded) {
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(TEST_BOUND, async {
        let rate = Rate::new(1, Duration::from_secs(60));
        let bucket = |s| RateLimiter::new(s, NS, "bucket", rate, 5).expect("bucket");
        let direct = bucket(support::store_timing_out_after(RESPONSE, &server.url()).await)
            .on_store_error(policy);
        for _ in 0..5 {
            direct.try_acquire().await.expect("a token of the burst");
        }
        assert!(direct.try_acquire().await.is_err(), "the burst is taken");
        let b = bucket(support::store_timing_out_after(RESPONSE, &proxy.url()).await)
            .on_store_error(policy);
        proxy.set_mode(Mode::Delay(Duration::from_millis(20)));
        let started = Instant::now();
        let b2 = b.clone();
        let o = short_calls(20, 200, move || {
            let b = b2.clone();
            // The bucket's answer does not say who admitted: nothing may be admitted at all.
            async move { b.acquire_within(SHORT).await.map(|()| false) }
        })
        .await;
        let took = started.elapsed();
        let probed = probes(&server);
        let long = b.acquire_within(Duration::from_millis(500)).await;
        println!(
            "bucket, {policy:?}, server 40 ms away, burst taken: 200 acquires bounded at \
             {SHORT:?} in {took:?}: {} admitted, {} store timeouts, other {:?}, slowest answer \
             {:?}; {probed} probes; a 500 ms acquire then got {long:?}",
            o.admitted, o.timeouts, o.other, o.slowest
        );
        check_probes(probed, took);
        assert_eq!(o.admitted, 0, "admitted past the bucket's burst");
        // Callers behind another of this process wait at its gate and may give up there.
        assert!(
            o.other.keys().all(|e| e.contains("MaxWaitExceeded")),
            "errors other than timeouts and refusals: {:?}",
            o.other
        );
        assert!(o.slowest <= ANSWER_BY, "a {SHORT:?} acquire answered after {:?}", o.slowest);
        assert!(
            matches!(long, Err(Error::Limit(tollgate::Error::MaxWaitExceeded { .. }))),
            "a 500 ms acquire through a healthy server: {long:?}"
        );
    });
}

#[test]
fn a_slow_server_is_not_unreachable_bucket_fail_open() {
    slow_bucket_admits_nothing_past_its_limit(Degraded::FailOpen);
}

#[test]
fn a_slow_server_is_not_unreachable_bucket_local() {
    slow_bucket_admits_nothing_past_its_limit(Degraded::Local { share: Share::percent(100) });
}

/// One answer in a blackhole: when (since the cut), how long it took, whether admitted.
#[derive(Debug, Clone, Copy)]
struct Answer {
    at: Duration,
    took: Duration,
    admitted: bool,
}

/// `tasks` callers making [`SHORT`]-bounded calls of `f` for `run` after the proxy starts
/// swallowing everything; what each call answered.
async fn in_a_blackhole<F, Fut>(
    proxy: &FaultProxy,
    tasks: usize,
    run: Duration,
    f: F,
) -> Vec<Answer>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), Error>> + Send,
{
    proxy.set_mode(Mode::Blackhole);
    let cut = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while cut.elapsed() < run {
                let t = Instant::now();
                let r = tokio::time::timeout(SHORT + RESPONSE * 3, f()).await;
                let took = t.elapsed();
                let r = r.unwrap_or_else(|_| panic!("a {SHORT:?} acquire still ran at {took:?}"));
                if let Err(e) = &r {
                    assert!(e.is_store(), "in a blackhole: {e:?}");
                }
                answers.push(Answer { at: cut.elapsed(), took, admitted: r.is_ok() });
                tokio::time::sleep(Duration::from_millis(2)).await; // a caller, not a busy loop
            }
            answers
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("caller task"));
    }
    all.sort_by_key(|a| a.at);
    all
}

/// Checks a blackhole's answers: typed errors by the callers' bound at first, the policy from
/// once the probe (the full response timeout) failed, and from then on only the policy.
fn check_blackhole(what: &str, answers: &[Answer]) {
    let first = answers.iter().find(|a| a.admitted).map(|a| a.at);
    let before = answers.iter().filter(|a| first.is_none_or(|f| a.at < f)).count();
    let refused_after = first.map_or(0, |f| {
        answers.iter().filter(|a| !a.admitted && a.at > f + Duration::from_millis(50)).count()
    });
    let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    println!(
        "{what} in a blackhole, {SHORT:?} acquires only (response timeout {RESPONSE:?}): {before} \
         typed store errors, then the policy from {first:?} on ({} answers in all, {refused_after} \
         refused after it); slowest answer {slowest:?}",
        answers.len()
    );
    let first = first.expect("the policy never engaged: the probe did not open the breaker");
    // Not before the probe could fail: until then the server may be merely slow.
    assert!(first >= RESPONSE / 2, "the policy engaged after {first:?}, on the callers' bound");
    assert!(
        first <= RESPONSE + Duration::from_millis(400),
        "the policy engaged only after {first:?}"
    );
    assert!(before > 0);
    // Past the breaker's cooldown too: nothing has answered since, so the store is not back.
    assert_eq!(refused_after, 0, "typed errors after the policy engaged");
    assert!(slowest <= ANSWER_BY, "a {SHORT:?} acquire answered after {slowest:?}");
}

#[test]
fn a_blackhole_engages_the_local_share_through_the_probe() {
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(TEST_BOUND, async {
        let policy = Degraded::Local { share: Share::percent(50) };
        let l = model_limiter(
            support::store_timing_out_after(RESPONSE, &proxy.url()).await,
            config(100_000, Duration::from_secs(2)),
            policy,
        );
        let p = l.acquire_within(MODEL, 1, Duration::from_secs(1)).await.expect("healthy");
        assert!(!p.is_degraded());
        p.settle(1).await.expect("settle");
        let l2 = l.clone();
        let answers = in_a_blackhole(&proxy, 4, Duration::from_millis(2_000), move || {
            let l = l2.clone();
            async move {
                let p = l.acquire_within(MODEL, 1, SHORT).await?;
                assert!(p.is_degraded(), "admitted through a blackhole");
                drop(p);
                Ok(())
            }
        })
        .await;
        check_blackhole("model, Local { 50 % }", &answers);
    });
}

#[test]
fn a_blackhole_engages_fail_open_through_the_probe() {
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(TEST_BOUND, async {
        let s = support::store_timing_out_after(RESPONSE, &proxy.url()).await;
        let s2 = s.clone();
        let b = RateLimiter::per_second(s, NS, "bucket", 1_000)
            .expect("bucket")
            .on_store_error(Degraded::FailOpen);
        b.acquire_within(Duration::from_secs(1)).await.expect("healthy");
        let calls = move || {
            let b = b.clone();
            async move { b.acquire_within(SHORT).await }
        };
        let answers = in_a_blackhole(&proxy, 4, Duration::from_millis(2_000), calls.clone()).await;
        check_blackhole("bucket, FailOpen", &answers);
        // Healed, the first answer closes the breaker; swallowed again, a probe (not one left
        // stuck from before) opens it again.
        proxy.set_mode(Mode::Forward);
        let healed = Instant::now();
        let b = RateLimiter::per_second(s2, NS, "bucket", 1_000).expect("bucket");
        while b.acquire_within(Duration::from_millis(200)).await.is_err() {
            assert!(healed.elapsed() < Duration::from_secs(10), "no answer 10 s after the heal");
        }
        let answers = in_a_blackhole(&proxy, 4, Duration::from_millis(1_000), calls).await;
        check_blackhole("bucket, FailOpen, again after a heal", &answers);
    });
}

/// A lone `acquire` with no bound of its own (nothing else of its process in flight) in a
/// blackhole waits at most the response timeout for its answer, as `Degraded` documents,
/// under each policy: its first call waits the whole timeout, which is a fault; the policy
/// then answers, with no second call into the silence.
#[test]
fn a_lone_unbounded_acquire_in_a_blackhole_is_answered_within_the_response_timeout() {
    let Some(server) = RedisServer::start() else { return };
    for policy in
        [Degraded::FailClosed, Degraded::FailOpen, Degraded::Local { share: Share::percent(50) }]
    {
        let proxy = FaultProxy::in_front_of(server.port());
        support::block_on_bounded(TEST_BOUND, async {
            let l = model_limiter(
                support::store_timing_out_after(RESPONSE, &proxy.url()).await,
                config(100_000, Duration::from_secs(2)),
                policy,
            );
            l.acquire(MODEL, 1).await.expect("healthy").settle(1).await.expect("settle");
            proxy.set_mode(Mode::Blackhole);
            let t = Instant::now();
            let r = l.acquire(MODEL, 1).await;
            let took = t.elapsed();
            println!(
                "{policy:?}: a lone unbounded acquire in a blackhole answered after {took:?}: {:?}",
                r.as_ref().map(|p| p.is_degraded())
            );
            match policy {
                Degraded::FailClosed => assert!(matches!(r, Err(Error::Store(_))), "{r:?}"),
                _ => assert!(r.as_ref().is_ok_and(|p| p.is_degraded()), "{r:?}"),
            }
            assert!(
                took < RESPONSE + ANSWER_BY,
                "{took:?} with a response timeout of {RESPONSE:?}"
            );
        });
    }
}

/// The bucket's lone unbounded `acquire` and `try_acquire` in a blackhole, likewise.
#[test]
fn a_lone_unbounded_bucket_call_in_a_blackhole_is_answered_within_the_response_timeout() {
    let Some(server) = RedisServer::start() else { return };
    for policy in
        [Degraded::FailClosed, Degraded::FailOpen, Degraded::Local { share: Share::percent(50) }]
    {
        let proxy = FaultProxy::in_front_of(server.port());
        support::block_on_bounded(TEST_BOUND, async {
            let store = support::store_timing_out_after(RESPONSE, &proxy.url()).await;
            let b = RateLimiter::new(store, NS, "lone", Rate::per_second(1_000), 1_000)
                .expect("bucket")
                .on_store_error(policy);
            b.acquire().await.expect("healthy");
            proxy.set_mode(Mode::Blackhole);
            for (what, t, r) in [
                ("acquire", Instant::now(), b.acquire().await),
                ("try_acquire", Instant::now(), b.try_acquire().await),
            ] {
                let took = t.elapsed();
                println!(
                    "bucket {policy:?}: a lone unbounded {what} in a blackhole answered after {took:?}: {r:?}"
                );
                assert!(
                    took < RESPONSE + ANSWER_BY,
                    "{what}: {took:?} with a response timeout of {RESPONSE:?}"
                );
            }
        });
    }
}
