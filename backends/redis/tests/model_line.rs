//! The Redis model limiter under a crowd, as a hostile user runs it: many tasks on a
//! multi-thread runtime with the real clock, tries and acquires raced against timers that may
//! cancel them anywhere (in the model's line, in flight, queued), permits held, settled,
//! dropped or settled under a timer; checked from an admission log in server time against
//! every limit in every window, against the parallel cap at every instant, for leaked slots
//! and for throughput. And the sharing of concurrent calls (`src/model/line.rs`), and a dead
//! server answering everyone in the line by the deadline.

mod support;

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tollgate::RateLimitConfig;
use tollgate::model::Limit;
use tollgate_redis::{ModelRateLimiter, RedisStore, StoreError};

/// The tests of this file one at a time: the crowd's throughput is measured, and the other
/// test's own crowd would take the CPU from it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Requests per window, tokens per window, the window, parallel requests.
const RPW: u64 = 100;
const TPW: u64 = 3_000;
const WINDOW: Duration = Duration::from_secs(1);
const PARALLEL: u32 = 6;

fn crowd_config() -> RateLimitConfig {
    RateLimitConfig {
        // rpm and tpm out of the way; the limits that bind are the 1 s windows below.
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: PARALLEL,
        limits: vec![
            Limit::requests("rps", RPW, WINDOW).with_slots(10),
            Limit::tokens("tps", TPW, WINDOW).with_slots(10),
        ],
        ..Default::default()
    }
}

/// The most admissions (and the most final charges) of `log` within any `WINDOW`, in server
/// time: (requests, tokens).
fn busiest_window(log: &[(i64, u64)]) -> (u64, u64) {
    let w = i64::try_from(WINDOW.as_micros()).unwrap();
    let (mut most_r, mut most_t, mut lo, mut tokens) = (0, 0, 0, 0);
    for (hi, &(at, t)) in log.iter().enumerate() {
        tokens += t;
        while log[lo].0 <= at - w {
            tokens -= log[lo].1;
            lo += 1;
        }
        most_r = most_r.max((hi - lo + 1) as u64);
        most_t = most_t.max(tokens);
    }
    (most_r, most_t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crowd_with_cancellations_keeps_every_limit_and_leaks_no_slot() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let l = ModelRateLimiter::builder(store, "crowd")
        .model("m", crowd_config())
        .ticket_ttl(Duration::from_millis(300))
        .build()
        .expect("limiter");
    let run = Duration::from_millis(2_500);
    let start = Instant::now();
    // (server admission instant µs, final charge in tokens)
    let log: Arc<Mutex<Vec<(i64, u64)>>> = Arc::default();
    let (held, most_held) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (asked, timeouts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // How late a 1 ms timer fires on this runtime, all run long: the throughput is only
    // judged when the machine gave the test its cores (a build beside it makes timers late
    // by milliseconds and the bounded acquires time out; invariants are checked regardless).
    let lag = tokio::spawn(async move {
        let mut lags = Vec::new();
        while start.elapsed() < run {
            let t0 = Instant::now();
            tokio::time::sleep(Duration::from_millis(1)).await;
            lags.push(t0.elapsed().saturating_sub(Duration::from_millis(1)));
        }
        lags.sort_unstable();
        (lags[lags.len() * 9 / 10], lags[lags.len() * 99 / 100])
    });
    // How long the server takes to answer a `PING` on a connection of its own, all run long:
    // the other sign of a machine that did not give the test its cores (the server's thread
    // descheduled) that late timers do not show. A stall of the limiter's own (a waiter
    // nobody wakes) leaves it fast.
    let port = server.port();
    let pings = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("ping");
        let mut rtts = Vec::new();
        let mut buf = [0_u8; 7];
        while start.elapsed() < run {
            let t0 = Instant::now();
            conn.write_all(b"PING\r\n").await.expect("ping");
            conn.read_exact(&mut buf).await.expect("pong"); // "+PONG\r\n"
            rtts.push(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        rtts.sort_unstable();
        (rtts[rtts.len() * 9 / 10], rtts[rtts.len() * 99 / 100])
    });
    let mut tasks = Vec::new();
    for t in 0..64_u64 {
        let (l, log, held, most_held, asked, timeouts) = (
            l.clone(),
            log.clone(),
            held.clone(),
            most_held.clone(),
            asked.clone(),
            timeouts.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0_u64;
            while start.elapsed() < run {
                i += 1;
                asked.fetch_add(1, Ordering::Relaxed);
                let estimate = 5 + (t * 7 + i * 13) % 36;
                let jitter = t * 37 + i * 53;
                // A quarter each: tries raced against a timer of 0–200 µs (cancelled in the
                // line, in flight, or not at all), plain tries, acquires raced against a timer
                // of 0–3 ms (cancelled while they try, queued, or asleep), and acquires bounded
                // to 5 ms.
                let outcome = match t % 4 {
                    0 => tokio::select! {
                        r = l.try_acquire("m", estimate) => Some(r),
                        () = tokio::time::sleep(Duration::from_micros(jitter % 200)) => None,
                    },
                    1 => Some(l.try_acquire("m", estimate).await),
                    2 => tokio::select! {
                        r = l.acquire("m", estimate) => Some(r),
                        () = tokio::time::sleep(Duration::from_micros(jitter % 3_000)) => None,
                    },
                    _ => Some(l.acquire_within("m", estimate, Duration::from_millis(5)).await),
                };
                let permit = match outcome {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => {
                        // A bounded acquire whose call (or place in the line) outlives its
                        // bound, at least 10 ms, is a store timeout, as against a dead server
                        // (the degraded policy then answers; here: fail closed).
                        let slow = t % 4 == 3
                            && matches!(
                                e,
                                tollgate_redis::Error::Store(StoreError::Timeout { .. })
                            );
                        timeouts.fetch_add(u64::from(slow), Ordering::Relaxed);
                        assert!(
                            slow || matches!(
                                e.limit(),
                                Some(
                                    tollgate::Error::RateLimited(_)
                                        | tollgate::Error::MaxWaitExceeded { .. }
                                )
                            ),
                            "{e:?}"
                        );
                        // A refused caller asks again a little later, as a client would (a
                        // tighter loop measures the test's own CPU: the client runs unoptimized).
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    None => continue,
                };
                let now_held = held.fetch_add(1, Ordering::SeqCst) + 1;
                most_held.fetch_max(now_held, Ordering::SeqCst);
                let at = permit.admitted_at_server_micros().expect("counted in Redis");
                tokio::time::sleep(Duration::from_micros(jitter % 2_000)).await;
                // Never more than the estimate: the final charges then bound what the server
                // counted when it admitted each one.
                let actual = estimate - jitter % 5;
                held.fetch_sub(1, Ordering::SeqCst);
                let charged = match i % 3 {
                    0 => {
                        permit.settle(actual).await.expect("settle");
                        actual
                    }
                    1 => {
                        // Cancelled or not, the settle applies (once) with this count.
                        tokio::select! {
                            _ = permit.settle(actual) => {}
                            () = tokio::time::sleep(Duration::from_micros(jitter % 300)) => {}
                        }
                        actual
                    }
                    _ => {
                        drop(permit); // unsettled: the estimate stays charged
                        estimate
                    }
                };
                log.lock().unwrap().push((at, charged));
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t).await.expect("bounded").unwrap();
    }
    let lag = lag.await.unwrap();
    let ping = pings.await.unwrap();
    let mut log = log.lock().unwrap().clone();
    log.sort_unstable();
    let (requests, tokens) = busiest_window(&log);
    assert!(requests <= RPW, "{requests} admissions within one window of {RPW}");
    assert!(tokens <= TPW, "{tokens} tokens within one window of {TPW}");
    let most = most_held.load(Ordering::SeqCst);
    assert!(most <= PARALLEL as usize, "{most} held at once, of {PARALLEL}");
    // Every slot comes back: the releases go through the janitor, and admissions whose caller
    // was gone are given back by the line's runner.
    let deadline = Instant::now() + Duration::from_secs(5);
    let active = loop {
        let active = l.stats().await.expect("stats")["m"].active.used;
        if active == 0 || Instant::now() > deadline {
            break active;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(active, 0, "slots still held after every permit ended");
    // Throughput: the crowd always asks, so the request window binds: at most one window's
    // worth in each of the run's windows. Room that frees goes at once to every queued waiter
    // it fits (`grant` in queue.lua). Measured on a quiet machine: 69–97 % (208–291 of 300).
    // Before the grants, 36–82 %: the acquires raced against 0–3 ms timers hold the queue
    // almost all the time and are mostly cancelled there, and room went to one waiter per
    // round trip; before tries and settles shared calls and gone callers' admissions were
    // undone, 2–5 %. With a build taking the cores, timers fire milliseconds late and most
    // bounded acquires time out: 5–42 % measured, so that run only checks the invariants.
    let full = RPW as f64 * (run.as_secs_f64() / WINDOW.as_secs_f64()).ceil();
    let got = log.len() as f64;
    println!(
        "{got} admitted of {full:.0} ({requests} in the busiest window, {most} held at most) \
         from {} asks, {} bounded acquires timed out, timers {lag:?} late, PING {ping:?} \
         (p90, p99)",
        asked.load(Ordering::Relaxed),
        timeouts.load(Ordering::Relaxed)
    );
    // Whatever the machine does, the crowd is not stalled: 5 %, below the worst busy runs
    // measured (12 % in a CI run, below; once under 10 % beside another engineer's test
    // suite), at the top of what the code before shared calls and undone admissions got.
    assert!(got >= 0.05 * full, "{got} admissions of {full:.0} possible");
    // Measured: p90 2.1–2.4 ms alone (tokio's millisecond timer under this crowd), 5.4–6.3 ms
    // with two busy loops beside it; 0–74 bounded acquires timed out alone, 121–595 beside
    // the busy loops, and once in a CI run 687 with timers only 3.2 ms late (another process
    // had the server or the cores: 35 admitted). And the server's own `PING`: p90 2.6–4.2 ms
    // in runs that got 77–91 %, 5.3–6.2 ms in runs of the same code minutes later that got
    // 38–67 % with 77–138 timeouts (the server's thread and the test's four workers share
    // two cores, and the unoptimized client's CPU is what the server's thread loses). Any of
    // the three signs means the run measured the machine.
    let timed_out = timeouts.load(Ordering::Relaxed);
    if lag.0 > Duration::from_millis(4) || timed_out > 100 || ping.0 > Duration::from_millis(5) {
        println!(
            "the machine is busy (timers {:?} late, {timed_out} bounded acquires timed out, \
             PING {:?}): throughput not judged beyond the floor",
            lag.0, ping.0
        );
        return;
    }
    assert!(got >= 0.5 * full, "{got} admissions of {full:.0} possible");
}

/// The calls 64 tasks make for `each` acquire + settle pairs, back to back, on a model that
/// never refuses.
async fn calls_for_a_crowd(server: &support::RedisServer, each: usize) -> u64 {
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let unlimited = RateLimitConfig {
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: 10_000,
        ..Default::default()
    };
    let l = ModelRateLimiter::new(store, "share", [("m", unlimited.clone())], unlimited).unwrap();
    let before = server.calls_of("fcall");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    let p = l.acquire("m", 100).await.unwrap();
                    p.settle(80).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t).await.expect("bounded").unwrap();
    }
    server.calls_of("fcall") - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acquires_and_settles_share_calls() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(server) = support::RedisServer::start() else { return };
    // A call of its own each would be 2 × 64 × 50 = 6 400.
    let calls = calls_for_a_crowd(&server, 50).await;
    assert!(calls * 4 < 6_400, "3 200 acquires and settles took {calls} calls: not shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_answers_everyone_in_the_models_line_by_the_deadline() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(mut server) = support::RedisServer::start() else { return };
    let store = support::store_timing_out_after(Duration::from_millis(300), &server.url()).await;
    let l = ModelRateLimiter::new(store, "dead", [("m", crowd_config())], crowd_config()).unwrap();
    drop(l.try_acquire("m", 10).await.unwrap());
    // Everything that reaches the server from now on is held there, then the server dies.
    server.command(&["CLIENT", "PAUSE", "5000", "ALL"]);
    let start = Instant::now();
    // Tries and acquires (which try first, in the same line, while nobody of the process is
    // queued).
    let crowd: Vec<_> = (0..32)
        .map(|i| {
            let l = l.clone();
            tokio::spawn(async move {
                if i % 2 == 0 { l.try_acquire("m", 10).await } else { l.acquire("m", 10).await }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.kill();
    for t in crowd {
        let r = tokio::time::timeout(Duration::from_secs(5), t).await.expect("bounded").unwrap();
        // Fail closed: an error for each, never an admission.
        match r {
            Err(e) if e.is_store() => {}
            other => panic!("{other:?}"),
        }
    }
    // The line holds two calls at most (the one out, then the rest together), and an acquire
    // retries once under its id: a few response timeouts and the connection's own failure
    // detection.
    assert!(start.elapsed() < Duration::from_millis(2_500), "{:?}", start.elapsed());
}
