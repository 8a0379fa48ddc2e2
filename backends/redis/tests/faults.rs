//! Fault tests against a real redis-server (DESIGN.md invariant 10): the server killed with
//! SIGKILL mid-run, a partition through a TCP fault proxy (refuse, blackhole, delay), the script
//! cache flushed, the server paused, and its state flushed. Each test is bounded in time and
//! prints what it observed (`cargo test -p tollgate-redis --test faults -- --nocapture`).

mod proxy;
mod support;

use core::time::Duration;
use std::time::Instant;

use proxy::fault::{FaultProxy, Mode};
use proxy::log::{self, Record, wall_us};
use support::RedisServer;
use tollgate::RateLimitConfig;
use tollgate::model::Limit;
use tollgate_redis::{Degraded, Error, ModelRateLimiter, Settled, Share, StoreError};

const NS: &str = "faults";
const MODEL: &str = "model";
/// The response timeout of every store here: the bound on any one call.
const RESPONSE: Duration = Duration::from_millis(300);
/// Whatever happens, no test runs longer than this.
const TEST_BOUND: Duration = Duration::from_secs(60);

/// A config whose only binding limits are `parallel` slots and, if given, requests per window.
fn config(parallel: u32, requests: Option<(u64, Duration)>) -> RateLimitConfig {
    RateLimitConfig {
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: parallel,
        limits: requests
            .map(|(max, window)| vec![Limit::requests("requests", max, window).with_slots(20)])
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// The model limiter of these tests on a store at `url` (calls time out after [`RESPONSE`]).
async fn limiter(url: &str, config: RateLimitConfig, lease_ttl: Duration) -> ModelRateLimiter {
    let store = support::store_timing_out_after(RESPONSE, url).await;
    ModelRateLimiter::builder(store, NS)
        .model(MODEL, config)
        .lease_ttl(lease_ttl)
        .ticket_ttl(lease_ttl)
        .build()
        .expect("limiter")
}

/// One bounded attempt: the acquire with a deadline, settled at once when admitted. Returns
/// whether it was admitted, how long it took, and the error if any.
async fn attempt(l: &ModelRateLimiter, deadline: Duration) -> (bool, Duration, Option<Error>) {
    let t = Instant::now();
    let r =
        tokio::time::timeout(deadline + RESPONSE * 3, l.acquire_within(MODEL, 1, deadline)).await;
    let took = t.elapsed();
    match r {
        Err(_) => panic!("an acquire with a {deadline:?} deadline still ran after {took:?}"),
        Ok(Ok(p)) => {
            let _ = p.settle(1).await;
            (true, took, None)
        }
        Ok(Err(e)) => (false, took, Some(e)),
    }
}

#[test]
fn server_killed_mid_run_fails_closed_then_reconnects() {
    let Some(mut server) = RedisServer::start() else { return };
    support::block_on_bounded(TEST_BOUND, async {
        let l = limiter(&server.url(), config(4, None), Duration::from_secs(3)).await;
        let bucket = tollgate_redis::RateLimiter::per_second(
            support::store_timing_out_after(RESPONSE, &server.url()).await,
            NS,
            "bucket",
            1_000,
        )
        .expect("bucket");
        let before = 20;
        for _ in 0..before {
            assert!(attempt(&l, Duration::from_millis(500)).await.0, "admission before the kill");
        }
        server.kill();
        let killed = Instant::now();
        let (mut admitted, mut errors, mut slowest) = (0, 0, Duration::ZERO);
        let mut kinds = std::collections::BTreeSet::new();
        while killed.elapsed() < Duration::from_millis(1_500) {
            // A caller retrying every 5 ms (the breaker answers at once: no busy loop).
            tokio::time::sleep(Duration::from_millis(5)).await;
            let deadline = Duration::from_millis(200);
            let (ok, took, err) = attempt(&l, deadline).await;
            admitted += usize::from(ok);
            if let Some(e) = err {
                assert!(e.is_store(), "while down: {e:?}");
                kinds.insert(match e {
                    Error::Store(StoreError::Timeout { .. }) => "timeout",
                    Error::Store(StoreError::Redis(_)) => "connection",
                    Error::Store(StoreError::Unavailable) => "breaker open",
                    _ => "other store error",
                });
                errors += 1;
            }
            slowest = slowest.max(took);
            let b = tokio::time::timeout(RESPONSE * 3, bucket.try_acquire()).await;
            let b = b.expect("bucket try_acquire hung while the server was down");
            assert!(matches!(b, Err(Error::Store(_))), "bucket while down: {b:?}");
        }
        assert_eq!(admitted, 0, "admitted while the server was down (fail closed)");
        assert!(
            slowest <= Duration::from_millis(200) + RESPONSE,
            "an error came after {slowest:?}"
        );
        server.restart();
        let restarted = Instant::now();
        let reconnect = loop {
            if attempt(&l, Duration::from_millis(200)).await.0 {
                break restarted.elapsed();
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(10),
                "no admission 10 s after restart"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let bucket_back = loop {
            if bucket.try_acquire().await.is_ok() {
                break restarted.elapsed();
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(10),
                "bucket dead 10 s after restart"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        println!(
            "kill -9: {before} admitted before; while down {errors} acquires failed closed \
             (slowest answer {slowest:?} with a 200 ms deadline; {kinds:?}), {admitted} admitted; \
             after restart the model limiter admitted again in {reconnect:?}, the bucket in \
             {bucket_back:?}"
        );
    });
}

#[test]
fn local_share_bounds_admissions_while_the_server_is_down() {
    let Some(mut server) = RedisServer::start() else { return };
    support::block_on_bounded(TEST_BOUND, async {
        let window = Duration::from_secs(2);
        let store = support::store_timing_out_after(RESPONSE, &server.url()).await;
        let l = ModelRateLimiter::builder(store, NS)
            .model(MODEL, config(8, Some((40, window))))
            .on_store_error(Degraded::Local { share: Share::new(1, 4) })
            .build()
            .expect("limiter");
        server.kill();
        let t = Instant::now();
        let (mut local, mut refused) = (0, 0);
        while t.elapsed() < window {
            tokio::time::sleep(Duration::from_millis(2)).await; // a caller, not a busy loop
            match l.try_acquire(MODEL, 1).await {
                Ok(p) => {
                    assert!(p.is_degraded(), "admitted through a dead server");
                    local += 1;
                    assert_eq!(p.settle(1).await.expect("local settle"), Settled::Local);
                }
                Err(_) => refused += 1,
            }
        }
        println!(
            "Local {{ share: 1/4 }} with the server down: {local} admitted locally in one 2 s \
             window of 40 (share 10), {refused} refused"
        );
        assert!((1..=10).contains(&local), "the local share admitted {local}, not 1..=10");
        drop(server);
    });
}

#[test]
fn refused_connections_fail_closed_then_heal() {
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(TEST_BOUND, async {
        let l = limiter(&proxy.url(), config(4, None), Duration::from_secs(3)).await;
        assert!(attempt(&l, Duration::from_millis(200)).await.0);
        proxy.set_mode(Mode::Refuse);
        let (mut admitted, mut errors, mut slowest) = (0, 0, Duration::ZERO);
        for _ in 0..10 {
            let (ok, took, err) = attempt(&l, Duration::from_millis(200)).await;
            admitted += usize::from(ok);
            errors += usize::from(err.is_some_and(|e| e.is_store()));
            slowest = slowest.max(took);
        }
        assert_eq!(admitted, 0, "admitted while every connection was refused");
        assert_eq!(errors, 10);
        proxy.set_mode(Mode::Forward);
        let healed = Instant::now();
        while !attempt(&l, Duration::from_millis(200)).await.0 {
            assert!(healed.elapsed() < Duration::from_secs(10), "no admission 10 s after heal");
        }
        println!(
            "refuse: 10 acquires failed closed (slowest {slowest:?} with a 200 ms deadline), \
             0 admitted; admitted again {:?} after the proxy accepted again ({} connections \
             accepted in all)",
            healed.elapsed(),
            proxy.accepted()
        );
    });
}

#[test]
fn delay_slows_admissions_and_past_the_timeout_fails_closed() {
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(TEST_BOUND, async {
        let l = limiter(&proxy.url(), config(4, None), Duration::from_secs(3)).await;
        proxy.set_mode(Mode::Delay(Duration::from_millis(50)));
        let mut slow = Vec::new();
        for _ in 0..5 {
            let (ok, took, err) = attempt(&l, Duration::from_secs(1)).await;
            assert!(ok, "a 100 ms round trip within a 300 ms timeout failed: {err:?}");
            slow.push(took);
        }
        // Each admission is an acquire and a settle: two round trips of 100 ms at least.
        assert!(slow.iter().all(|t| *t >= Duration::from_millis(100)), "{slow:?}");
        proxy.set_mode(Mode::Delay(Duration::from_millis(400)));
        let deadline = Duration::from_secs(1);
        let (ok, took, err) = attempt(&l, deadline).await;
        assert!(!ok, "admitted through a round trip longer than the response timeout");
        assert!(err.as_ref().is_some_and(Error::is_store), "{err:?}");
        assert!(took <= deadline + Duration::from_millis(100), "answered after {took:?}");
        proxy.set_mode(Mode::Forward);
        let healed = Instant::now();
        while !attempt(&l, Duration::from_millis(500)).await.0 {
            assert!(healed.elapsed() < Duration::from_secs(10), "no admission 10 s after heal");
        }
        println!(
            "delay: 50 ms each way → admissions took {slow:?} (acquire + settle); 400 ms each way \
             → failed closed after {took:?} with a 1 s deadline ({}); admitted again {:?} after the delay was lifted",
            err.map(|e| e.to_string()).unwrap_or_default(),
            healed.elapsed()
        );
    });
}

#[test]
fn a_partitioned_holder_loses_its_leases_to_the_others() {
    let Some(server) = RedisServer::start() else { return };
    let proxy = FaultProxy::in_front_of(server.port());
    support::block_on_bounded(TEST_BOUND, async {
        let ttl = Duration::from_millis(1_200);
        // Worker A reaches Redis through the proxy; worker B directly.
        let a = limiter(&proxy.url(), config(3, None), ttl).await;
        let b = limiter(&server.url(), config(3, None), ttl).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(a.acquire(MODEL, 1).await.expect("A takes a slot"));
        }
        assert!(b.try_acquire(MODEL, 1).await.is_err(), "B got a slot A holds");
        proxy.set_mode(Mode::Blackhole);
        let cut = Instant::now();
        // B waits for a slot: A's leases expire since its heartbeats cannot get through.
        let mut got = Vec::new();
        for _ in 0..3 {
            let p = tokio::time::timeout(ttl * 3, b.acquire(MODEL, 1))
                .await
                .expect("B still waits long after A's lease TTL")
                .expect("B acquires");
            got.push((cut.elapsed(), p));
        }
        let b_after = got.iter().map(|g| g.0).max().expect("three");
        // While partitioned A learns nothing new, and its acquires fail closed by their deadline.
        let (ok, took, err) = attempt(&a, Duration::from_millis(200)).await;
        assert!(
            !ok && err.as_ref().is_some_and(Error::is_store),
            "A through the blackhole: {err:?}"
        );
        assert!(
            took <= Duration::from_millis(200) + RESPONSE,
            "A's acquire answered after {took:?}"
        );
        proxy.set_mode(Mode::Forward);
        let healed = Instant::now();
        // A's next heartbeat (every TTL/3) that gets through reports every lease lost.
        while !held.iter().all(tollgate_redis::ModelPermit::lease_lost) {
            assert!(healed.elapsed() < ttl * 4, "A never learned it lost its leases");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let learned = healed.elapsed();
        let mut settled = Vec::new();
        for p in held {
            settled.push(p.settle(1).await.expect("A settles after the heal"));
        }
        println!(
            "blackhole of worker A holding 3 slots (lease TTL {ttl:?}): B got all 3 within \
             {b_after:?} of the cut; A's acquire failed closed after {took:?}; after the heal A's \
             permits reported lease_lost() after {learned:?}, and its settles said {settled:?}"
        );
        assert!(b_after <= ttl + ttl / 3 + Duration::from_millis(300), "B waited {b_after:?}");
        assert!(settled.iter().all(|s| *s == Settled::LeaseLost), "{settled:?}");
        for (_, p) in got {
            assert_eq!(p.settle(1).await.expect("B settles"), Settled::Applied);
        }
    });
}

/// Load from `tasks` tasks for `run`, while `fault` runs once at `at` after the start; the
/// admissions logged (as records, in server time) and the errors seen.
async fn load_with_fault(
    l: &ModelRateLimiter,
    tasks: u32,
    run: Duration,
    hold: Duration,
    at: Duration,
    fault: impl FnOnce(),
) -> (Vec<Record>, Vec<String>) {
    let end = tokio::time::Instant::now() + run;
    let t0 = Instant::now();
    let max_wait = Duration::from_millis(500);
    let mut handles = Vec::new();
    for task in 0..tasks {
        let l = l.clone();
        handles.push(tokio::spawn(async move {
            let (mut records, mut errors) = (Vec::new(), Vec::new());
            while tokio::time::Instant::now() < end {
                let at = |e: String| format!("{e} [at {:?}]", t0.elapsed());
                let asked_us = wall_us();
                let asked = Instant::now();
                // Twice the response timeout past its deadline, an acquire has hung.
                let bound = max_wait + RESPONSE * 2;
                match tokio::time::timeout(bound, l.acquire_within(MODEL, 1, max_wait)).await {
                    Err(_) => {
                        errors.push(format!(
                            "hung: no answer {:?} after a {max_wait:?} acquire",
                            asked.elapsed()
                        ));
                    }
                    Ok(Err(e)) => {
                        // Store errors are tagged: a refusal to wait 500 ms is no fault.
                        errors
                            .push(at(format!("{}{e}", if e.is_store() { "store: " } else { "" })));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(Ok(p)) => {
                        let start_us = p.admitted_at_server_micros().map_or(0, |t| t as u64);
                        tokio::time::sleep(hold).await;
                        let end_us = wall_us();
                        if let Err(e) = p.settle(1).await {
                            errors.push(at(format!("settle: {e}")));
                        }
                        records.push(Record {
                            group: 0,
                            worker: 0,
                            task,
                            asked_us,
                            start_us,
                            end_us,
                            est: 1,
                            actual: 1,
                        });
                    }
                }
            }
            (records, errors)
        }));
    }
    tokio::time::sleep(at).await;
    fault();
    let (mut records, mut errors) = (Vec::new(), Vec::new());
    for h in handles {
        let (r, e) = h.await.expect("load task");
        records.extend(r);
        errors.extend(e);
    }
    (records, errors)
}

#[test]
fn script_and_function_flush_mid_run_change_nothing() {
    let Some(server) = RedisServer::start() else { return };
    support::block_on_bounded(TEST_BOUND, async {
        let l = limiter(&server.url(), config(4, None), Duration::from_secs(3)).await;
        let port = server.port();
        let flush = move || {
            // Flush again and again while the load runs, the function library (what the limiter
            // calls) and the script cache (its fallback) in turn: each must be reloaded each time.
            std::thread::spawn(move || {
                for i in 0..10 {
                    let what = if i % 2 == 0 { "FUNCTION" } else { "SCRIPT" };
                    support::command(port, &[what, "FLUSH"]).expect("FLUSH");
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        };
        let (records, errors) = load_with_fault(
            &l,
            8,
            Duration::from_millis(1_500),
            Duration::from_millis(2),
            Duration::from_millis(300),
            flush,
        )
        .await;
        let peak = log::peak_parallel(&records).peak;
        println!(
            "FUNCTION FLUSH ×5 and SCRIPT FLUSH ×5 mid-run: {} admitted, {} errors, peak in flight {peak} of 4",
            records.len(),
            errors.len()
        );
        assert!(
            errors.is_empty(),
            "{} errors after FUNCTION/SCRIPT FLUSH, first {:?}",
            errors.len(),
            errors.first()
        );
        assert!(records.len() > 50, "only {} admitted", records.len());
        assert!(peak <= 4);
    });
}

#[test]
fn client_pause_fails_closed_by_the_deadline_then_catches_up() {
    let Some(server) = RedisServer::start() else { return };
    support::block_on_bounded(TEST_BOUND, async {
        let ttl = Duration::from_secs(3);
        let l = limiter(&server.url(), config(4, None), ttl).await;
        // A permit held across the pause: its lease must survive (pause < TTL).
        let held = l.acquire(MODEL, 1).await.expect("held permit");
        let port = server.port();
        let pause = move || {
            support::command(port, &["CLIENT", "PAUSE", "1500", "ALL"]).expect("CLIENT PAUSE");
        };
        let paused_at = wall_us() + 300_000;
        let (records, errors) = load_with_fault(
            &l,
            3,
            Duration::from_millis(3_000),
            Duration::from_millis(5),
            Duration::from_millis(300),
            pause,
        )
        .await;
        // Admissions whose script ran during the pause: none (the server runs no command).
        let during = records
            .iter()
            .filter(|r| (paused_at + 50_000..paused_at + 1_450_000).contains(&r.start_us))
            .count();
        let after = records.iter().filter(|r| r.start_us >= paused_at + 1_500_000).count();
        tokio::time::sleep(ttl / 3).await; // a heartbeat after the pause
        let lost = held.lease_lost();
        let store_errors = errors.iter().filter(|e| e.starts_with("store: ")).count();
        let settled = held.settle(1).await.expect("settle after the pause");
        let hung: Vec<&String> = errors.iter().filter(|e| e.starts_with("hung")).collect();
        println!(
            "CLIENT PAUSE 1500 ALL: {store_errors} acquires failed closed during it ({:?}…), \
             {during} admitted during it, {after} after it; the permit held across it: \
             lease_lost() = {lost}, settle = {settled:?}",
            errors.first()
        );
        assert!(hung.is_empty(), "acquires outlived their deadline: {hung:?}");
        assert_eq!(during, 0);
        assert!(store_errors > 0, "no acquire failed during a 1.5 s pause with 500 ms deadlines");
        // An admit that timed out during the pause still runs once the pause ends; unless its
        // client takes it back, its ticket heads the queue (or its lease holds a slot) until
        // its TTL, and nobody is admitted meanwhile.
        assert!(after > 10, "only {after} admitted in the 1.2 s after the pause: {errors:?}");
        assert!(
            !lost && settled == Settled::Applied,
            "a lease was lost to a pause shorter than its TTL"
        );
    });
}

#[test]
fn flushall_over_admits_by_at_most_one_window() {
    let Some(server) = RedisServer::start() else { return };
    support::block_on_bounded(TEST_BOUND, async {
        let window = Duration::from_secs(2);
        let max = 30;
        let l =
            limiter(&server.url(), config(8, Some((max, window))), Duration::from_secs(3)).await;
        let port = server.port();
        let flush = move || {
            support::command(port, &["FLUSHALL"]).expect("FLUSHALL");
        };
        let (records, errors) = load_with_fault(
            &l,
            8,
            Duration::from_millis(3_000),
            Duration::from_millis(2),
            Duration::from_millis(700),
            flush,
        )
        .await;
        let w = u64::try_from(window.as_micros()).expect("µs");
        let busiest = log::busiest_window(&records, w, |_| 1);
        let over = busiest.peak.saturating_sub(max);
        let store_errors = errors.iter().filter(|e| e.starts_with("store: ")).count();
        let resets = l.state_resets();
        println!(
            "FLUSHALL mid-run (state lost): busiest 2 s window held {} admissions against a \
             limit of {max}: over-admission {over} (bound: one window, {max}); {} admitted in \
             all, {store_errors} store errors; the limiter reported {resets} state reset(s)",
            busiest.peak,
            records.len()
        );
        assert!(resets >= 1, "the state loss was not reported (state_resets() = 0)");
        assert!(busiest.peak <= 2 * max, "over-admitted by more than one window: {}", busiest.peak);
        assert!(
            over > 0,
            "a state loss that changed nothing: is the FLUSHALL reaching the server?"
        );
    });
}
