//! Loom models of the model limiter: a settle that refunds tokens while a request is deciding to
//! sleep for window room must wake it, in every interleaving (issue 8).
//!
//! The clock is a `ManualClock` that never moves, so the refund is the *only* thing that can
//! admit the waiting request: a lost wake-up leaves its thread parked forever, which loom
//! reports as a deadlock.
//!
//! `RUSTFLAGS="--cfg tollgate_loom" cargo test -p tollgate --test loom_model --release`
//! (add `-- --nocapture --test-threads 1` to see how many executions each model explored).
#![cfg(tollgate_loom)]

mod loom_support;

use loom_support::{block_on, model, poll_once};
use std::sync::Arc;

use loom::thread;
use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};

type Limiter = ModelRateLimiter<Arc<ManualClock>>;

fn limiter(tpm: u64) -> Arc<Limiter> {
    let config = RateLimitConfig { rpm: 100, tpm, max_parallel_requests: 4, ..Default::default() };
    Arc::new(
        ModelRateLimiter::with_timer(
            [("m", config.clone())],
            config.clone(),
            Arc::new(ManualClock::new()),
        )
        .unwrap(),
    )
}

/// One request holds 900 of 1000 tokens; another asks for 500 on one thread while the first
/// settles at 100 on another. Whether the settle lands before the admission check, between
/// the check and the waiter's registration, or after it sleeps, the request is admitted.
#[test]
fn a_refund_racing_the_admission_check_is_never_lost() {
    model("admit-vs-settle", || {
        let l = limiter(1_000);
        let big = block_on(l.clone().acquire_owned("m", 900)).unwrap();
        let waiter = {
            let l = l.clone();
            thread::spawn(move || block_on(l.acquire_owned("m", 500)).unwrap().settle(500))
        };
        let settler = thread::spawn(move || big.settle(100));
        settler.join().unwrap();
        waiter.join().unwrap();
        let s = l.stats()["m"].clone();
        assert_eq!((s.tokens.used, s.requests.used, s.active.used), (600, 2, 0));
    });
}

/// The FIFO queue behind the sleeper: two requests wait (500 at the gate's head, 400 behind
/// it) while the 900-token holder settles at 100. Both fit after the refund, and both must be
/// admitted without the clock moving: the head because the refund wakes it, the second because
/// the head's admission opens the gate.
#[test]
fn a_refund_racing_the_check_admits_the_queue_behind_the_sleeper() {
    model("admit-vs-settle-queue", || {
        let l = limiter(1_000);
        let big = block_on(l.clone().acquire_owned("m", 900)).unwrap();
        let first = {
            let l = l.clone();
            thread::spawn(move || drop(block_on(l.acquire_owned("m", 500)).unwrap()))
        };
        let second = {
            let l = l.clone();
            thread::spawn(move || drop(block_on(l.acquire_owned("m", 400)).unwrap()))
        };
        big.settle(100);
        first.join().unwrap();
        second.join().unwrap();
        let s = l.stats()["m"].clone();
        assert_eq!((s.tokens.used, s.requests.used, s.active.used), (1_000, 3, 0));
    });
}

/// Invariant 4 under the same race: a request sleeping for window room (holding the gate and a
/// parallel slot) is cancelled on one thread while the holder settles on another. Whatever
/// the order, nothing leaks: no slot, no request, no tokens of the cancelled one, and the next
/// request is admitted at once.
#[test]
fn a_request_cancelled_while_a_refund_lands_leaves_nothing_behind() {
    model("cancel-vs-settle", || {
        let l = limiter(1_000);
        let big = block_on(l.clone().acquire_owned("m", 900)).unwrap();
        let mut waiting = Box::pin(l.clone().acquire_owned("m", 500));
        assert!(poll_once(waiting.as_mut()).is_pending());
        let settler = thread::spawn(move || big.settle(100));
        drop(waiting);
        settler.join().unwrap();
        let s = l.stats()["m"].clone();
        assert_eq!((s.tokens.used, s.requests.used, s.active.used), (100, 1, 0));
        block_on(l.clone().acquire_owned("m", 900)).unwrap().settle(900);
        assert_eq!(l.stats()["m"].active.used, 0);
    });
}
