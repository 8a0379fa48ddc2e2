//! `TokioTimer::tsc()` (feature `quanta`): the time-stamp counter on tokio's scale, on real
//! multi-thread runtimes and the real clock. Reads track tokio's clock; conversions to and from
//! tokio instants are taken at the moment; a crowd of tasks racing timeouts around `acquire`
//! keeps the rate and gets it (nothing early, nothing lost); the HTTP layer on it answers 429
//! with the right `Retry-After`; and on a paused runtime, which it does not follow, a wait
//! still ends once real time reaches it.

use core::net::SocketAddr;
use core::time::Duration;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use tollgate_tokio::http::{HttpRateLimitLayer, PeerIp};
use tollgate_tokio::{AsyncRateLimiter, Clock, Instant, Rate, TokioTimer};
use tower::{Layer, ServiceExt, service_fn};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

fn gap(a: Instant, b: Instant) -> Duration {
    if a >= b { a - b } else { b - a }
}

#[test]
fn reads_real_time_on_the_scale_of_tokios_clock() {
    runtime().block_on(async {
        let (tsc, tokio_clock) = (TokioTimer::tsc(), TokioTimer::new());
        assert!(tsc.is_tsc() && !tokio_clock.is_tsc());
        let (a, b) = (tsc.now(), tokio_clock.now());
        assert!(gap(a, b) < Duration::from_millis(20), "{a:?} against {b:?}");
        std::thread::sleep(Duration::from_millis(200));
        let (da, db) = (tsc.now() - a, tokio_clock.now() - b);
        assert!(da >= Duration::from_millis(200), "the counter moved {da:?} in 200 ms");
        // The two clocks keep together: parts per million apart, plus the reads' own gap.
        assert!(gap(a + da, b + db) < Duration::from_millis(20), "{da:?} against {db:?}");
        let mut last = tsc.now();
        for _ in 0..100_000 {
            let t = tsc.now();
            assert!(t >= last, "stepped back from {last:?} to {t:?}");
            last = t;
        }
    });
}

#[test]
fn conversions_to_and_from_tokio_are_taken_at_the_moment() {
    runtime().block_on(async {
        let tsc = TokioTimer::tsc();
        let ahead = tsc.now() + Duration::from_millis(50);
        let there = tsc.to_tokio(ahead);
        let left = there - tokio::time::Instant::now();
        assert!(
            left <= Duration::from_millis(50) && left > Duration::from_millis(45),
            "50 ms ahead on the counter is {left:?} ahead on tokio's clock"
        );
        assert!(gap(tsc.from_tokio(there), ahead) < Duration::from_millis(1));
        let behind = tsc.now().saturating_sub(Duration::from_millis(30));
        let back = tokio::time::Instant::now() - tsc.to_tokio(behind);
        assert!(back >= Duration::from_millis(29) && back < Duration::from_millis(35), "{back:?}");
        // Far away either way: no panic.
        let _ = tsc.to_tokio(Instant::MAX);
        let _ = tsc.to_tokio(Instant::ZERO);
        // A wait on tokio's timer to a counter instant ends at it on the counter (tokio's
        // timer has millisecond granularity; the upper bound leaves room for a busy machine,
        // not for a wrong conversion: twice the wait would be 400 ms).
        let start = tsc.now();
        tollgate_tokio::Timer::sleep_until(&tsc, start + Duration::from_millis(200)).await;
        let slept = tsc.now() - start;
        assert!(
            slept >= Duration::from_millis(199) && slept < Duration::from_millis(300),
            "a 200 ms sleep on the counter took {slept:?} on it"
        );
    });
}

/// The hostile case: 32 tasks on 4 workers, each acquire raced against a 0–4 ms timeout (so
/// most waiters are cancelled, at every point of their wait), for 1.5 s of real time.
#[test]
fn a_crowd_racing_timeouts_keeps_the_rate_and_gets_it() {
    const RATE: u32 = 200;
    const BURST: u64 = 10;
    let run = Duration::from_millis(1_500);
    let (log, timeouts, start, end) = runtime().block_on(async {
        let tsc = TokioTimer::tsc();
        let limiter = Arc::new(AsyncRateLimiter::with_timer(Rate::per_second(RATE), BURST, tsc));
        let log = Arc::new(Mutex::new(Vec::new()));
        let start = tsc.now();
        let until = tokio::time::Instant::now() + run;
        let mut tasks = Vec::new();
        for task in 0..32_u64 {
            let (limiter, log) = (Arc::clone(&limiter), Arc::clone(&log));
            tasks.push(tokio::spawn(async move {
                let mut timeouts = 0_u64;
                let mut seed = task.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                while tokio::time::Instant::now() < until {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let bound = Duration::from_micros(seed % 4_000);
                    tokio::select! {
                        () = limiter.acquire() => log.lock().unwrap().push(tsc.now()),
                        () = tokio::time::sleep(bound) => timeouts += 1,
                    }
                }
                timeouts
            }));
        }
        let mut timeouts = 0;
        for t in tasks {
            timeouts += t.await.unwrap();
        }
        let end = tsc.now();
        let log = Arc::try_unwrap(log).unwrap().into_inner().unwrap();
        (log, timeouts, start, end)
    });
    let mut log = log;
    log.sort_unstable();
    // Never more than the burst and the rate allow in any span (2 of slack: an admission is
    // stamped when its task runs again, which may be a little after it was admitted).
    for (i, first) in log.iter().enumerate() {
        for (j, last) in log.iter().enumerate().skip(i) {
            let span = *last - *first;
            let allowed = BURST
                + u64::try_from(span.as_nanos() * u128::from(RATE) / 1_000_000_000).unwrap()
                + 2;
            let seen = u64::try_from(j - i + 1).unwrap();
            assert!(seen <= allowed, "{seen} admitted in {span:?}: at most {allowed}");
        }
    }
    let possible = BURST as f64 + (end - start).as_secs_f64() * f64::from(RATE);
    let got = log.len() as f64 / possible;
    println!(
        "TSC timer, 32 tasks racing 0–4 ms timeouts: {} admitted of {possible:.0} possible ({:.1} %), {timeouts} timeouts",
        log.len(),
        got * 100.0
    );
    assert!(timeouts > 100, "only {timeouts} waits were cancelled: the test did not race");
    assert!(got >= 0.9, "cancelled waiters cost the rate: {:.1} % of it", got * 100.0);
}

#[test]
fn the_http_layer_on_the_counter_answers_429_with_retry_after() {
    runtime().block_on(async {
        let layer =
            HttpRateLimitLayer::try_with_timer(PeerIp, Rate::per_second(1), 2, TokioTimer::tsc())
                .unwrap();
        assert!(layer.limiter().timer().is_tsc());
        let app = layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, core::convert::Infallible>(Response::new(String::new()))
        }));
        let from = || {
            let mut request = Request::new(());
            request.extensions_mut().insert("192.0.2.9:1".parse::<SocketAddr>().unwrap());
            request
        };
        for _ in 0..2 {
            assert_eq!(app.clone().oneshot(from()).await.unwrap().status(), StatusCode::OK);
        }
        let refused = app.clone().oneshot(from()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "1");
        std::thread::sleep(Duration::from_millis(1_010));
        assert_eq!(app.clone().oneshot(from()).await.unwrap().status(), StatusCode::OK);
    });
}

/// Documented: a paused runtime does not drive this clock, but a wait on it still ends, once
/// real time has reached it (its sleeps end at once, and it sleeps again).
#[tokio::test(start_paused = true)]
async fn on_a_paused_runtime_a_wait_ends_in_real_time() {
    let tsc = TokioTimer::tsc();
    let limiter = AsyncRateLimiter::with_timer(Rate::per_second(100), 1, tsc);
    limiter.acquire().await;
    let real = std::time::Instant::now();
    let start = tsc.now();
    limiter.acquire().await;
    assert!(tsc.now() - start >= Duration::from_millis(9));
    assert!(real.elapsed() < Duration::from_secs(2), "took {:?}", real.elapsed());
}
