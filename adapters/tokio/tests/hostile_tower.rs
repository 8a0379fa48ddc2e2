//! Hostile use of the tower layer on a real multi-thread tokio runtime with the real clock.
//! Needs the `tower` feature; deliberately not gated with `#![cfg(feature = "tower")]` (which
//! would make a plain `cargo test` run zero tests here and look green): the test command must
//! enable the feature.
//!
//! - Clones of one `RateLimit` service, callers giving up on `ready()` after random timeouts
//!   and dropping their clone (a client that disconnects): invariants 7 and 8 at the inner
//!   service.
//! - Invariant 9, no banking: tokens a clone holds while its inner service is not ready, or
//!   while its caller sits on a ready service, must not be spent later all at once: the calls
//!   passed to the inner service in any interval d are ≤ burst + rate·d.

mod support;

use core::convert::Infallible;
use core::future::{Future, Ready, ready};
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::Arc;

use support::{AdmissionLog, Limits, Rng};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep, sleep, sleep_until, timeout};
use tollgate_tokio::{Rate, RateLimitLayer};
use tower::{Layer, Service, ServiceExt};

const RATE: u32 = 200;
const TASKS: u64 = 50;
const STORM: Duration = Duration::from_millis(2_500);

/// An inner service that logs every call it is passed, and is ready only from `ready_at` on.
struct Inner {
    log: Arc<AdmissionLog>,
    ready_at: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Inner {
    fn new(log: &Arc<AdmissionLog>, ready_at: Instant) -> Self {
        Self { log: Arc::clone(log), ready_at, sleep: None }
    }
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        Self { log: Arc::clone(&self.log), ready_at: self.ready_at, sleep: None }
    }
}

impl Service<()> for Inner {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if Instant::now() >= self.ready_at {
            return Poll::Ready(Ok(()));
        }
        let at = self.ready_at;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(sleep_until(at)));
        sleep.as_mut().poll(cx).map(Ok)
    }

    fn call(&mut self, (): ()) -> Self::Future {
        self.log.record(1);
        ready(Ok(()))
    }
}

async fn stop(tasks: Vec<JoinHandle<()>>) {
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        if let Err(e) = t.await {
            assert!(e.is_cancelled(), "a task panicked: {e}");
        }
    }
}

/// Clones under a timeout storm: each attempt takes `ready()` under a random 1–50 ms timeout;
/// on timeout the caller drops its clone (disconnects) two times in three and starts over with a
/// fresh clone, else keeps waiting on the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_that_give_up_keep_the_rate() {
    let log = Arc::new(AdmissionLog::new());
    let layer = RateLimitLayer::new(Rate::per_second(RATE), 2);
    let service = layer.layer(Inner::new(&log, Instant::now()));
    let mut rng = Rng::new(21);
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (service, mut rng) = (service.clone(), rng.fork(i));
            tokio::spawn(async move {
                let mut mine = service.clone();
                loop {
                    match timeout(rng.millis(1, 50), mine.ready()).await {
                        Ok(Ok(ready)) => {
                            let _ = ready.call(()).await;
                        }
                        Ok(Err(e)) => panic!("the service failed: {e}"),
                        Err(_) if rng.chance(2, 3) => mine = service.clone(),
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    sleep(STORM.saturating_sub(log.start().elapsed())).await;
    stop(tasks).await;
    let limits = Limits::new(RATE, 2);
    let start = Instant::now();
    let mut lone = service.clone();
    let waited = match timeout(Duration::from_secs(1), lone.ready()).await {
        Ok(Ok(ready)) => {
            let _ = ready.call(()).await;
            Some(start.elapsed())
        }
        Ok(Err(e)) => panic!("the service failed: {e}"),
        Err(_) => None,
    };
    eprintln!(
        "tower storm: {} calls in {STORM:?}, lone caller {waited:?}",
        log.tokens_until(STORM)
    );
    support::check_invariant_7("tower storm", &log.entries(), limits);
    support::check_throughput("tower storm", &log, STORM, limits);
    support::check_lone_caller("tower storm", waited, limits);
}

/// Invariant 9: ten clones on 1/s burst 1 whose inner service becomes ready only at 1.5 s. The
/// clones wait in `poll_ready` meanwhile; none may bank the tokens of the idle 1.5 s and pass
/// calls on together when the inner service wakes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_banking_while_the_inner_service_is_not_ready() {
    let log = Arc::new(AdmissionLog::new());
    let wakes = Instant::now() + Duration::from_millis(1_500);
    let service = RateLimitLayer::new(Rate::per_second(1), 1).layer(Inner::new(&log, wakes));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let mut mine = service.clone();
            tokio::spawn(async move {
                loop {
                    let ready = mine.ready().await.unwrap();
                    let _ = ready.call(()).await;
                }
            })
        })
        .collect();
    sleep_until(wakes + Duration::from_millis(1_700)).await;
    stop(tasks).await;
    let entries = log.entries();
    eprintln!("no banking (inner not ready): calls at {entries:?}");
    assert!(!entries.is_empty(), "no call reached the inner service");
    support::check_invariant_7("no banking (inner not ready)", &entries, Limits::new(1, 1));
}

/// Invariant 9: callers that hold a ready service for a long time, then call. Five clones on
/// 5/s burst 1 each wait for `ready()`, then all sit on their ready service until 1 s and call
/// together; then they go on calling as fast as they are let.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_banking_by_callers_holding_a_ready_service() {
    let log = Arc::new(AdmissionLog::new());
    let start = Instant::now();
    let service = RateLimitLayer::new(Rate::per_second(5), 1).layer(Inner::new(&log, start));
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let mut mine = service.clone();
            tokio::spawn(async move {
                let ready = mine.ready().await.unwrap();
                sleep_until(start + Duration::from_secs(1)).await;
                let _ = ready.call(()).await;
                loop {
                    let ready = mine.ready().await.unwrap();
                    let _ = ready.call(()).await;
                }
            })
        })
        .collect();
    sleep_until(start + Duration::from_millis(2_000)).await;
    stop(tasks).await;
    let entries = log.entries();
    eprintln!("no banking (held ready): calls at {entries:?}");
    support::check_invariant_7("no banking (held ready)", &entries, Limits::new(5, 1));
    // And the calls still flow at the rate afterwards: about 5 in the last second.
    let late = entries.iter().filter(|(t, _)| *t > Duration::from_millis(1_050)).count();
    assert!(late >= 3, "only {late} calls passed on after the held ones");
}

/// A hostile mix on one budget: clones that time out in `ready()`, clones that hold a ready
/// service for a random while before calling, and clones dropped while ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_holders_and_quitters_never_exceed_the_budget() {
    let log = Arc::new(AdmissionLog::new());
    let service =
        RateLimitLayer::new(Rate::per_second(RATE), 3).layer(Inner::new(&log, Instant::now()));
    let mut rng = Rng::new(22);
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (service, mut rng) = (service.clone(), rng.fork(i));
            tokio::spawn(async move {
                loop {
                    let mut mine = service.clone();
                    let Ok(Ok(ready)) = timeout(rng.millis(1, 50), mine.ready()).await else {
                        continue; // dropped while waiting
                    };
                    match rng.range(0, 2) {
                        0 => {
                            let _ = ready.call(()).await;
                        }
                        1 => {
                            sleep(rng.millis(1, 100)).await; // sits on a ready service
                            let _ = ready.call(()).await;
                        }
                        _ => {} // dropped while ready
                    }
                }
            })
        })
        .collect();
    sleep(STORM.saturating_sub(log.start().elapsed())).await;
    stop(tasks).await;
    let entries = log.entries();
    eprintln!("tower mix: {} calls in {STORM:?}", log.tokens_until(STORM));
    support::check_invariant_7("tower mix", &entries, Limits::new(RATE, 3));
    support::check_throughput("tower mix", &log, STORM, Limits::new(RATE, 3));
}
