//! Adversarial: the breaker and the probe under a server that is slow, then blackholed, then
//! healed, three times over, while a crowd of short-bounded acquires runs with `FailOpen`
//! against a limit that is used up (so every admission is the policy's). The policy must answer
//! only while the server is unreachable: never while it is slow, never in the first response
//! timeout of a blackhole (nothing can know yet), in every blackhole after the probe's timeout
//! (the probe flag is never stuck), and no longer once the healed server answers. Probes stay
//! about one per round trip, not one per cut call. And `breaker_cooldown = 0` behaves as
//! documented; a runtime shut down with calls and probes in flight neither panics nor hangs.
//! `cargo test -p tollgate-redis --all-features --test adversarial_breaker -- --nocapture`.

mod proxy;
mod support;

use core::time::Duration;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use proxy::fault::{FaultProxy, Mode};
use support::RedisServer;
use tollgate::{Rate, RateLimitConfig};
use tollgate_redis::{
    Degraded, Error, ModelRateLimiter, RateLimiter, RedisStore, StoreError, StoreOptions,
};

const RESPONSE: Duration = Duration::from_millis(200);
const COOLDOWN: Duration = Duration::from_millis(200);
/// Each way while slow: a round trip of 60 ms, longer than every caller's bound.
const ONE_WAY: Duration = Duration::from_millis(30);
const SLOW_FOR: Duration = Duration::from_millis(500);
const DARK_FOR: Duration = Duration::from_millis(700);
const HEAL_FOR: Duration = Duration::from_millis(800);
/// After a heal, until the breaker may still answer with the policy: its cooldown twice (a
/// reconnect may fail once more) and a response timeout.
const HEAL_GRACE: Duration = Duration::from_millis(600);
const CYCLES: usize = 3;

/// The tests of this file one at a time: each judges timing (what answered in which phase,
/// how far past its bound), and beside the others' crowds a stall of the 2-core machine made
/// a slow server's calls time out for real (the policy then answered "while only slow").
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

async fn store(url: &str, cooldown: Duration) -> RedisStore {
    // Every field named today; the update keeps this building if options are added.
    #[allow(clippy::needless_update)]
    let options = StoreOptions {
        response_timeout: RESPONSE,
        connect_timeout: RESPONSE,
        breaker_cooldown: cooldown,
        ..Default::default()
    };
    RedisStore::connect_with(url, options).await.expect("connect")
}

/// What one call got, at (ms since the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Policy,
    Redis,
    Refused,
    Timeout,
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Slow,
    Dark,
    Heal,
}

/// Runs `tasks` callers of `f` (their bound 5–50 ms) through the cycles; returns the log
/// `(ms, phase, phase start ms, got)` and other errors.
async fn crowd<F, Fut>(
    proxy: &FaultProxy,
    tasks: u64,
    heal: Mode,
    f: F,
) -> (Vec<(u64, Phase, u64, Got)>, Vec<String>, Duration)
where
    F: Fn(Duration) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<bool, Error>> + Send,
{
    let start = Instant::now();
    let phase = Arc::new(Mutex::new((Phase::Start, 0_u64)));
    let log = Arc::new(Mutex::new((Vec::new(), Vec::new(), Duration::ZERO)));
    let done = Arc::new(core::sync::atomic::AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (f, phase, log, done) = (f.clone(), phase.clone(), log.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(0xb4ea + t);
            while !done.load(core::sync::atomic::Ordering::Relaxed) {
                let bound = Duration::from_millis(rng.u64(5..50));
                let t0 = Instant::now();
                let r = f(bound).await;
                let took = t0.elapsed();
                let at = u64::try_from(start.elapsed().as_millis()).expect("ms");
                let (p, since) = *phase.lock().unwrap();
                let got = match r {
                    Ok(true) => Got::Policy,
                    Ok(false) => Got::Redis,
                    Err(Error::Limit(_)) => Got::Refused,
                    Err(Error::Store(StoreError::Timeout { .. })) => Got::Timeout,
                    Err(Error::Store(StoreError::Unavailable)) => Got::Unavailable,
                    Err(e) => {
                        log.lock().unwrap().1.push(format!("{e:?}"));
                        continue;
                    }
                };
                {
                    let mut l = log.lock().unwrap();
                    l.0.push((at, p, since, got));
                    l.2 = l.2.max(took.saturating_sub(bound.max(Duration::from_millis(10))));
                }
                if got != Got::Policy {
                    tokio::time::sleep(Duration::from_millis(rng.u64(0..3))).await;
                } else {
                    // An admission: the caller does its work (and does not spin the policy).
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    let set = |p: Phase, mode: Mode| {
        let ms = u64::try_from(start.elapsed().as_millis()).expect("ms");
        // The phase is what callers that end from now on are judged by: switch both at once.
        let mut g = phase.lock().unwrap();
        proxy.set_mode(mode);
        *g = (p, ms);
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..CYCLES {
        set(Phase::Slow, Mode::Delay(ONE_WAY));
        tokio::time::sleep(SLOW_FOR).await;
        set(Phase::Dark, Mode::Blackhole);
        tokio::time::sleep(DARK_FOR).await;
        set(Phase::Heal, heal);
        tokio::time::sleep(HEAL_FOR).await;
    }
    done.store(true, core::sync::atomic::Ordering::Relaxed);
    for h in handles {
        tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .expect("a caller hung")
            .expect("caller");
    }
    let (l, other, overrun) = Arc::try_unwrap(log).expect("done").into_inner().unwrap();
    (l, other, overrun)
}

/// Judges a crowd's log (see the module docs); `probes` the PTTLs the server saw.
fn judge(
    what: &str,
    log: &[(u64, Phase, u64, Got)],
    other: &[String],
    overrun: Duration,
    probes: u64,
) {
    let ms = |d: Duration| u64::try_from(d.as_millis()).expect("ms");
    let mut slow_policy = 0;
    let mut early_dark_policy = 0;
    let mut late_heal_policy = 0;
    let mut dark_policy_by_phase = std::collections::BTreeMap::<u64, usize>::new();
    let mut first_policy = std::collections::BTreeMap::<u64, u64>::new();
    let mut last_heal_policy = std::collections::BTreeMap::<u64, u64>::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for &(at, phase, since, got) in log {
        *counts.entry(format!("{phase:?}/{got:?}")).or_default() += 1;
        if got != Got::Policy {
            if phase == Phase::Dark {
                dark_policy_by_phase.entry(since).or_default();
            }
            continue;
        }
        match phase {
            Phase::Start | Phase::Slow => slow_policy += 1,
            // Nothing can know the server is gone before a probe waited its whole timeout; the
            // earliest is one sent a round trip before the blackhole (its answer was eaten).
            Phase::Dark if at + 10 + 2 * ms(ONE_WAY) < since + ms(RESPONSE) => {
                early_dark_policy += 1;
            }
            Phase::Dark => {
                *dark_policy_by_phase.entry(since).or_default() += 1;
                let first = first_policy.entry(since).or_insert(at - since);
                *first = (*first).min(at - since);
            }
            Phase::Heal if at > since + ms(HEAL_GRACE) => late_heal_policy += 1,
            Phase::Heal => {
                let last = last_heal_policy.entry(since).or_insert(at - since);
                *last = (*last).max(at - since);
            }
        }
    }
    // Outside blackholes, a probe answers within a round trip: at most one per round trip.
    let lit = ms(SLOW_FOR + HEAL_FOR) * CYCLES as u64 + 200;
    let probe_bound = lit / (2 * ms(ONE_WAY)) + 4 * CYCLES as u64;
    println!(
        "{what}: {} calls, by phase/outcome {counts:?}; policy while slow {slow_policy}, in a \
         blackhole's first {RESPONSE:?} less a round trip {early_dark_policy}, per blackhole \
         after it {dark_policy_by_phase:?} (the first at {first_policy:?} ms into it), in a \
         heal after {HEAL_GRACE:?} {late_heal_policy} (the last at {last_heal_policy:?} ms \
         into it); {probes} probes answered (bound {probe_bound}); worst overrun {overrun:?}; \
         other {other:?}",
        log.len()
    );
    assert!(other.is_empty(), "unexpected errors: {other:?}");
    assert_eq!(slow_policy, 0, "the policy answered while the server was only slow");
    assert_eq!(early_dark_policy, 0, "the policy answered before anything could know");
    assert_eq!(dark_policy_by_phase.len(), CYCLES, "blackholes seen: {dark_policy_by_phase:?}");
    assert!(
        dark_policy_by_phase.values().all(|&n| n > 0),
        "a blackhole the policy never answered in (probe flag stuck?): {dark_policy_by_phase:?}"
    );
    assert_eq!(late_heal_policy, 0, "the policy still answered well after the server healed");
    assert!(probes <= probe_bound, "{probes} probes: a storm");
    assert!(overrun < Duration::from_millis(150), "a call ran {overrun:?} past its bound");
}

fn probes(server: &RedisServer) -> u64 {
    server.calls_of("pttl")
}

/// A bucket with `FailOpen` through the proxy, empty for a minute (any admission is the
/// policy's), under a crowd through slow → blackhole → `heal` cycles, judged.
fn bucket_cycles(what: &str, name: &str, heal: Mode) {
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(Duration::from_secs(30), async {
        let rate = Rate::new(1, Duration::from_secs(60));
        let direct =
            RateLimiter::new(store(&server.url(), COOLDOWN).await, "adv-br", name, rate, 1)
                .expect("bucket");
        direct.try_acquire().await.expect("the one token");
        let b = RateLimiter::new(store(&proxy.url(), COOLDOWN).await, "adv-br", name, rate, 1)
            .expect("bucket")
            .on_store_error(Degraded::FailOpen);
        let before = probes(&server);
        let (log, other, overrun) = crowd(&proxy, 16, heal, move |bound| {
            let b = b.clone();
            async move { b.acquire_within(bound).await.map(|()| true) }
        })
        .await;
        judge(what, &log, &other, overrun, probes(&server) - before);
    });
}

#[test]
fn slow_dark_heal_cycles_bucket_fail_open() {
    let _alone = alone();
    bucket_cycles("bucket FailOpen", "b", Mode::Forward);
}

#[test]
fn slow_dark_heal_cycles_model_fail_open() {
    let _alone = alone();
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    let config = support::one_request_a_minute();
    support::block_on_bounded(Duration::from_secs(30), async {
        let model = |s| {
            ModelRateLimiter::builder(s, "adv-br")
                .model("m", config.clone())
                .on_store_error(Degraded::FailOpen)
                .build()
                .expect("limiter")
        };
        let direct = model(store(&server.url(), COOLDOWN).await);
        direct.try_acquire("m", 1).await.expect("the one request").settle(1).await.expect("settle");
        let l = model(store(&proxy.url(), COOLDOWN).await);
        let before = probes(&server);
        let (log, other, overrun) = crowd(&proxy, 16, Mode::Forward, move |bound| {
            let l = l.clone();
            async move { l.acquire_within("m", 1, bound).await.map(|p| p.is_degraded()) }
        })
        .await;
        judge("model FailOpen", &log, &other, overrun, probes(&server) - before);
    });
}

/// `breaker_cooldown = 0`: no breaker, no probe. In a blackhole, callers whose bound is short
/// get typed timeouts, never the policy; a call that waits the whole response timeout (an
/// unbounded acquire) gets the policy, and so does an unbounded acquire waiting in the line
/// behind it, when it times out.
#[test]
fn no_breaker_short_bounds_never_degrade_full_timeouts_do() {
    let _alone = alone();
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(Duration::from_secs(30), async {
        let rate = Rate::new(1, Duration::from_secs(60));
        let direct = RateLimiter::new(store(&server.url(), COOLDOWN).await, "adv-br", "z", rate, 1)
            .expect("bucket");
        direct.try_acquire().await.expect("the one token");
        let b = RateLimiter::new(store(&proxy.url(), Duration::ZERO).await, "adv-br", "z", rate, 1)
            .expect("bucket")
            .on_store_error(Degraded::FailOpen);
        let before = probes(&server);
        proxy.set_mode(Mode::Blackhole);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..8_u64 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let (mut admitted, mut timeouts) = (0, 0);
                while started.elapsed() < Duration::from_millis(1_000) {
                    let bound = Duration::from_millis(5 + t * 5);
                    match b.acquire_within(bound).await {
                        Ok(()) => admitted += 1,
                        Err(Error::Store(StoreError::Timeout { .. })) => timeouts += 1,
                        Err(e) => panic!("{e:?}"),
                    }
                }
                (admitted, timeouts)
            }));
        }
        let (mut admitted, mut timeouts) = (0, 0);
        for t in tasks {
            let (a, to) = t.await.expect("task");
            admitted += a;
            timeouts += to;
        }
        // The line's last call (its runner's, with no budget) may still be out: once it has
        // timed out, the next acquire makes a call of its own.
        tokio::time::sleep(RESPONSE + Duration::from_millis(20)).await;
        let t = Instant::now();
        let unbounded = tokio::time::timeout(RESPONSE * 3, b.acquire()).await;
        let took = t.elapsed();
        // One behind it, with no budget either: turned away when the call ahead times out
        // (a fault), so the policy answers it then, not one timeout later.
        let ahead = {
            let b = b.clone();
            tokio::spawn(async move { tokio::time::timeout(RESPONSE * 3, b.acquire()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        let behind = tokio::time::timeout(RESPONSE * 3, b.acquire()).await;
        let took_behind = t.elapsed();
        let ahead = ahead.await.expect("task");
        proxy.set_mode(Mode::Forward);
        let probed = probes(&server) - before;
        println!(
            "cooldown 0, blackhole 1 s, 8 callers bounded 5-40 ms: {admitted} admitted by the \
             policy, {timeouts} typed timeouts, {probed} probes; then an unbounded acquire got \
             {unbounded:?} after {took:?}; one behind another got {behind:?} after \
             {took_behind:?}"
        );
        assert!(matches!(ahead, Ok(Ok(()))), "the unbounded acquire ahead: {ahead:?}");
        assert!(matches!(behind, Ok(Ok(()))), "behind a call that hung: {behind:?}");
        assert!(
            took_behind < RESPONSE - Duration::from_millis(20),
            "behind a call that hung, the policy answered after {took_behind:?}"
        );
        assert!(took_behind >= RESPONSE / 2, "turned away before the call ahead timed out");
        assert_eq!(admitted, 0, "short bounds took the policy with no breaker");
        assert!(timeouts > 50, "too few calls to tell");
        assert_eq!(probed, 0, "a probe with no breaker");
        assert!(
            matches!(unbounded, Ok(Ok(()))),
            "a call that waited the whole response timeout did not take the policy"
        );
        assert!(took >= RESPONSE - Duration::from_millis(5), "admitted before the timeout");
    });
}

/// A runtime shut down with bounded and unbounded acquires, shared calls and probes in flight
/// (the server blackholed): neither the shutdown nor the drops panic or hang.
#[test]
fn runtime_shutdown_with_calls_and_probes_in_flight() {
    let _alone = alone();
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    for round in 0..3_u64 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (b, m) = rt.block_on(async {
            let s = store(&proxy.url(), COOLDOWN).await;
            let b = RateLimiter::per_second(s.clone(), "adv-sd", "b", 1_000)
                .expect("bucket")
                .on_store_error(Degraded::FailOpen);
            let m = ModelRateLimiter::builder(s, "adv-sd")
                .model("m", RateLimitConfig { rpm: 1_000, tpm: 1_000_000, ..Default::default() })
                .build()
                .expect("model");
            (b, m)
        });
        proxy.set_mode(if round == 1 {
            Mode::Delay(Duration::from_millis(50))
        } else {
            Mode::Blackhole
        });
        for t in 0..32_u64 {
            let (b, m) = (b.clone(), m.clone());
            rt.spawn(async move {
                loop {
                    match t % 4 {
                        0 => drop(b.acquire_within(Duration::from_millis(1 + t)).await),
                        1 => drop(b.acquire().await),
                        2 => drop(b.try_acquire_n(2).await),
                        _ => drop(m.acquire_within("m", 1, Duration::from_millis(t)).await),
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(150 + round * 60));
        let t = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            rt.shutdown_timeout(Duration::from_secs(2));
            drop((b, m));
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("the shutdown hung");
        println!("round {round}: the runtime shut down in {:?}", t.elapsed());
        proxy.set_mode(Mode::Forward);
    }
}

/// Which limiter a crowd of unbounded callers uses: both share `src/line.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limiter {
    Bucket,
    Model,
}

/// A config far from every limit: the blackhole, not the limit, answers.
fn roomy() -> RateLimitConfig {
    RateLimitConfig {
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: 100_000,
        ..Default::default()
    }
}

/// The slowest of `tasks` concurrent unbounded acquires (tries when `try_only`) of a
/// fail-closed bucket or model behind a blackhole, each started while a call is already out:
/// the documented bound is the response timeout (`Degraded::FailClosed`: "by its deadline
/// (at most the response timeout)").
async fn slowest_unbounded_error(
    limiter: Limiter,
    cooldown: Duration,
    tasks: usize,
    try_only: bool,
) -> Duration {
    let Some(server) = RedisServer::start() else { return Duration::ZERO };
    let proxy = FaultProxy::in_front_of(server.port());
    let s = store(&proxy.url(), cooldown).await;
    let call: Arc<
        dyn Fn() -> futures_util::future::BoxFuture<'static, Result<(), Error>> + Send + Sync,
    > = match limiter {
        Limiter::Bucket => {
            let b = RateLimiter::per_second(s, "adv-ub", "b", 1_000).expect("bucket");
            Arc::new(move || {
                let b = b.clone();
                Box::pin(
                    async move { if try_only { b.try_acquire().await } else { b.acquire().await } },
                )
            })
        }
        Limiter::Model => {
            let m = ModelRateLimiter::builder(s, "adv-ub")
                .model("m", roomy())
                .build()
                .expect("limiter");
            Arc::new(move || {
                let m = m.clone();
                Box::pin(async move {
                    let p = if try_only {
                        m.try_acquire("m", 1).await
                    } else {
                        m.acquire("m", 1).await
                    };
                    p.map(drop)
                })
            })
        }
    };
    tokio::time::timeout(RESPONSE * 5, call()).await.expect("bounded").expect("through the proxy");
    proxy.set_mode(Mode::Blackhole);
    // A call out first (as in any busy process), then the crowd behind it.
    let first = tokio::spawn(call());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let call = call.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = tokio::time::timeout(RESPONSE * 10, call()).await.expect("the call hung");
            assert!(matches!(r, Err(Error::Store(_))), "fail closed in a blackhole: {r:?}");
            t.elapsed()
        }));
    }
    let mut slowest = Duration::ZERO;
    for h in handles {
        slowest = slowest.max(h.await.expect("task"));
    }
    drop(tokio::time::timeout(RESPONSE * 10, first).await.expect("the first call hung"));
    slowest
}

async fn check_unbounded(limiter: Limiter, cases: &[(Duration, usize, bool)]) {
    let mut seen = Vec::new();
    for &(cooldown, tasks, try_only) in cases {
        let slowest = slowest_unbounded_error(limiter, cooldown, tasks, try_only).await;
        println!(
            "{limiter:?}, cooldown {cooldown:?}, {tasks} {} behind a call out, blackhole: \
             slowest store error after {slowest:?} (response timeout {RESPONSE:?})",
            if try_only { "tries" } else { "acquires" }
        );
        seen.push(slowest);
    }
    let slowest = seen.into_iter().max().unwrap_or_default();
    assert!(slowest < RESPONSE + Duration::from_millis(50), "a store error after {slowest:?}");
}

/// With the breaker on, the first call's whole timeout opens it, and the line's next call is
/// turned away at once: every caller's error within about one response timeout.
#[test]
fn unbounded_acquires_fail_within_the_response_timeout() {
    let _alone = alone();
    support::block_on_bounded(Duration::from_secs(30), async {
        check_unbounded(Limiter::Bucket, &[(COOLDOWN, 64, false), (COOLDOWN, 600, true)]).await;
    });
}

/// As above, the model's line.
#[test]
fn unbounded_model_acquires_fail_within_the_response_timeout() {
    let _alone = alone();
    support::block_on_bounded(Duration::from_secs(30), async {
        check_unbounded(Limiter::Model, &[(COOLDOWN, 64, false), (COOLDOWN, 600, true)]).await;
    });
}

/// With `breaker_cooldown = 0` every call of the line's runner waits its whole timeout, one
/// after another: before the fix a caller behind a call out waited two (measured 382 ms at
/// 200 ms), and with more than `MAX_BATCH` waiting, one more per batch (600 tries: 783 ms).
#[test]
fn unbounded_acquires_fail_within_the_response_timeout_without_a_breaker() {
    let _alone = alone();
    support::block_on_bounded(Duration::from_secs(30), async {
        let cases = [(Duration::ZERO, 64, false), (Duration::ZERO, 600, true)];
        check_unbounded(Limiter::Bucket, &cases).await;
    });
}

/// As above, the model's line.
#[test]
fn unbounded_model_acquires_fail_within_the_response_timeout_without_a_breaker() {
    let _alone = alone();
    support::block_on_bounded(Duration::from_secs(30), async {
        let cases = [(Duration::ZERO, 64, false), (Duration::ZERO, 600, true)];
        check_unbounded(Limiter::Model, &cases).await;
    });
}

/// `f`, failing the test if it hangs.
async fn bounded<T>(f: impl core::future::Future<Output = T>) -> T {
    tokio::time::timeout(RESPONSE * 10, f).await.expect("hung")
}

/// Each way while the line is slow: a call of 160 ms, answered within the response timeout,
/// but a caller behind one waits two (about 300 ms).
const SLOW_CALL_ONE_WAY: Duration = Duration::from_millis(80);

/// The results of `tasks` concurrent tries (no budget of their own) of a used-up limit with
/// `FailOpen`, started while a call is already out, through a proxy that makes every call
/// slow but within the response timeout; with how long each took.
async fn tries_behind_a_slow_line(
    limiter: Limiter,
    cooldown: Duration,
    tasks: usize,
) -> Vec<(Result<bool, Error>, Duration)> {
    let Some(server) = RedisServer::start() else { return Vec::new() };
    let proxy = FaultProxy::in_front_of(server.port());
    // Ok(true): admitted by the policy (the limit is used up: Redis admits nothing).
    type Try = Arc<
        dyn Fn() -> futures_util::future::BoxFuture<'static, Result<bool, Error>> + Send + Sync,
    >;
    let call: Try = match limiter {
        Limiter::Bucket => {
            let rate = Rate::new(1, Duration::from_secs(60));
            let direct =
                RateLimiter::new(store(&server.url(), cooldown).await, "adv-sl", "b", rate, 1)
                    .expect("bucket");
            bounded(direct.try_acquire()).await.expect("the one token");
            let b = RateLimiter::new(store(&proxy.url(), cooldown).await, "adv-sl", "b", rate, 1)
                .expect("bucket")
                .on_store_error(Degraded::FailOpen);
            Arc::new(move || {
                let b = b.clone();
                Box::pin(async move { b.try_acquire().await.map(|()| true) })
            })
        }
        Limiter::Model => {
            let model = |s| {
                ModelRateLimiter::builder(s, "adv-sl")
                    .model("m", support::one_request_a_minute())
                    .on_store_error(Degraded::FailOpen)
                    .build()
                    .expect("limiter")
            };
            let direct = model(store(&server.url(), cooldown).await);
            let p = bounded(direct.try_acquire("m", 1)).await.expect("the one request");
            bounded(p.settle(1)).await.expect("settle");
            let m = model(store(&proxy.url(), cooldown).await);
            Arc::new(move || {
                let m = m.clone();
                Box::pin(async move { m.try_acquire("m", 1).await.map(|p| p.is_degraded()) })
            })
        }
    };
    proxy.set_mode(Mode::Delay(SLOW_CALL_ONE_WAY));
    let first = tokio::spawn(call());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let call = call.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = tokio::time::timeout(RESPONSE * 10, call()).await.expect("the try hung");
            (r, t.elapsed())
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    drop(tokio::time::timeout(RESPONSE * 10, first).await.expect("the first try hung"));
    out
}

/// A caller with no budget waits in the line at most the response timeout from when it
/// joined, as a call of its own would, also when every call answers in time but it waits
/// behind two. The server answering, that is no fault: a typed timeout (or the server's
/// refusal), never the policy.
async fn check_slow_line(limiter: Limiter) {
    for cooldown in [COOLDOWN, Duration::ZERO] {
        let results = tries_behind_a_slow_line(limiter, cooldown, 64).await;
        let slowest = results.iter().map(|(_, t)| *t).max().unwrap_or_default();
        let timeouts = results
            .iter()
            .filter(|(r, _)| matches!(r, Err(Error::Store(StoreError::Timeout { .. }))))
            .count();
        println!(
            "{limiter:?}, cooldown {cooldown:?}, 64 tries behind a slow call ({:?} a call): \
             slowest answer after {slowest:?}, {timeouts} typed timeouts",
            SLOW_CALL_ONE_WAY * 2
        );
        for (r, _) in &results {
            assert!(
                matches!(
                    r,
                    Err(Error::Limit(tollgate::Error::RateLimited(_)))
                        | Err(Error::Store(StoreError::Timeout { .. }))
                ),
                "behind a slow line, not a fault: {r:?}"
            );
        }
        assert!(slowest < RESPONSE + Duration::from_millis(50), "an answer after {slowest:?}");
    }
}

#[test]
fn unbounded_tries_behind_a_slow_line_wait_at_most_the_response_timeout() {
    let _alone = alone();
    support::block_on_bounded(Duration::from_secs(30), async {
        check_slow_line(Limiter::Bucket).await;
    });
}

#[test]
fn unbounded_model_tries_behind_a_slow_line_wait_at_most_the_response_timeout() {
    let _alone = alone();
    support::block_on_bounded(Duration::from_secs(30), async {
        check_slow_line(Limiter::Model).await;
    });
}

/// As [`slow_dark_heal_cycles_bucket_fail_open`], the blackholes healing into a slow server
/// (not a fast one): half-open, every caller's bound still cuts its call, so only the probe's
/// answer closes the breaker; the policy must stop within the grace all the same.
#[test]
fn slow_dark_slow_cycles_bucket_fail_open() {
    let _alone = alone();
    bucket_cycles("bucket FailOpen, healed slow", "s", Mode::Delay(ONE_WAY));
}

/// A limiter kept past the runtime its calls ran on (a static, a test helper, a library's
/// handle shared by two runtimes), used from a new runtime: its store's connection died with
/// the old runtime, so every call must end with a typed error by its bound, not hang. The old
/// runtime is shut down while its crowd was in the bucket's line.
#[test]
fn a_limiter_outliving_its_runtime_answers_on_the_next_one() {
    let _alone = alone();
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    let old = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let b = old.block_on(async {
        RateLimiter::per_second(store(&proxy.url(), COOLDOWN).await, "adv-rt", "b", 1_000)
            .expect("bucket")
    });
    proxy.set_mode(Mode::Delay(Duration::from_millis(50)));
    for _ in 0..32 {
        let b = b.clone();
        old.spawn(async move {
            loop {
                drop(b.try_acquire().await);
            }
        });
    }
    std::thread::sleep(Duration::from_millis(120));
    old.shutdown_timeout(Duration::from_secs(2));
    proxy.set_mode(Mode::Forward);
    let new = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    new.block_on(async {
        for (what, call) in [("try", 0), ("bounded acquire", 1), ("acquire", 2)] {
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(3), async {
                match call {
                    0 => b.try_acquire().await,
                    1 => b.acquire_within(Duration::from_millis(100)).await,
                    _ => b.acquire().await,
                }
            })
            .await;
            println!("after the runtime's shutdown, a {what} got {r:?} in {:?}", t.elapsed());
            assert!(r.is_ok(), "a {what} on the next runtime hung");
        }
    });
}
