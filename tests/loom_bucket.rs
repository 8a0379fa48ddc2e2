//! Loom models of [`TokenBucket`]: two or three threads racing `try_acquire`, `reserve` and
//! `cancel` on one bucket at a fixed instant. Whatever the interleaving, no token is lost
//! (a success that does not count, a cancel that does not give back) or doubled (more
//! successes than the burst, a cancel that gives back twice).
//!
//! Run with
//! `RUSTFLAGS="--cfg tollgate_loom" cargo test -p tollgate --release --test loom_bucket`;
//! `LOOM_LOG=info` prints how many interleavings each model explored.
#![cfg(tollgate_loom)]

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use loom::sync::Arc;
use loom::thread;
use tollgate::{Error, Instant, Rate, Refusal, TokenBucket};

/// All operations happen at this instant; the bucket starts full.
const T0: Instant = Instant::ZERO;
/// One token per second: the token clock is exact at whole seconds, so availability at `k` s
/// tells exactly how many token units are committed.
const RATE: Rate = Rate::per_second(1);

fn secs(k: u64) -> Instant {
    Instant::from_secs(k)
}

/// Tokens committed at `T0` as the bucket reports them: `burst − available` at `T0`, plus
/// whatever is queued beyond the burst (found by when the bucket is full again).
fn committed(bucket: &TokenBucket) -> u64 {
    let burst = bucket.burst();
    // Full again after `committed` seconds: first k with available(k) == burst.
    let full_after = (0..=burst + 8).find(|&k| bucket.available_at(secs(k)) == burst).unwrap();
    // Cross-check every intermediate second: availability grows by one token a second.
    for k in 0..=full_after {
        let expected = (burst + k).saturating_sub(full_after).min(burst);
        assert_eq!(bucket.available_at(secs(k)), expected, "at {k} s");
    }
    full_after
}

/// Runs `f` under loom and reports how many interleavings it explored.
///
/// Two-thread models are explored exhaustively. Three-thread models are bounded to
/// `preemptions` (as tokio does in CI) because exhaustive runs take minutes (1.4 million
/// interleavings for `reserve_cancel_reserve_and_try`); `LOOM_MAX_PREEMPTIONS` overrides the
/// bound for every model, and `LOOM_MAX_PREEMPTIONS=1000` effectively lifts it.
fn model(name: &str, preemptions: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    // Per model, not a shared static: the test harness runs models in parallel.
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = preemptions;
    }
    let bound = builder.preemption_bound;
    let counter = runs.clone();
    builder.check(move || {
        counter.fetch_add(1, Relaxed);
        f();
    });
    let runs = runs.load(Relaxed);
    println!("{name}: {runs} interleavings explored (preemption bound {bound:?})");
}

/// The preemption bound of the three-thread models: about 5 s for all of them in release.
const THREE_THREADS: Option<usize> = Some(4);

/// Burst 2, three threads each try once at the same instant: exactly two succeed, and the
/// loser is told the instant the next token arrives.
#[test]
fn three_tries_on_a_burst_of_two() {
    model("three_tries_on_a_burst_of_two", THREE_THREADS, || {
        let bucket = Arc::new(TokenBucket::new(RATE, 2));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let bucket = bucket.clone();
                thread::spawn(move || bucket.try_acquire_at(1, T0))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 2, "{results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(*e, Error::RateLimited(Refusal::at(secs(1))));
            }
        }
        assert_eq!(committed(&bucket), 2);
    });
}

/// Burst 2: a weighted try of 2 races two tries of 1. Either the pair or both singles win,
/// never a mix that spends three tokens.
#[test]
fn weighted_try_races_two_singles() {
    model("weighted_try_races_two_singles", None, || {
        let bucket = Arc::new(TokenBucket::new(RATE, 2));
        let big = {
            let bucket = bucket.clone();
            thread::spawn(move || bucket.try_acquire_at(2, T0).is_ok())
        };
        let small = {
            let bucket = bucket.clone();
            thread::spawn(move || {
                let a = bucket.try_acquire_at(1, T0).is_ok();
                let b = bucket.try_acquire_at(1, T0).is_ok();
                u64::from(a) + u64::from(b)
            })
        };
        let big = big.join().unwrap();
        let small = small.join().unwrap();
        let spent = if big { 2 } else { 0 } + small;
        assert!(spent <= 2, "spent {spent}");
        // Someone always wins: the first CAS to land takes from a full bucket.
        assert!(spent >= 1);
        assert_eq!(committed(&bucket), spent);
    });
}

/// Burst 1: one thread reserves and cancels while another tries. The cancel succeeds exactly
/// when nobody took a token after the reservation, and the bucket ends holding exactly the
/// tokens of the operations that stood.
#[test]
fn reserve_and_cancel_race_a_try() {
    model("reserve_and_cancel_race_a_try", None, || {
        let bucket = Arc::new(TokenBucket::new(RATE, 1));
        let reserver = {
            let bucket = bucket.clone();
            thread::spawn(move || {
                let r = bucket.reserve_at(1, T0).unwrap();
                let queued = r.ready_at() > T0;
                (queued, bucket.cancel(r))
            })
        };
        let trier = {
            let bucket = bucket.clone();
            thread::spawn(move || bucket.try_acquire_at(1, T0).is_ok())
        };
        let (queued, cancelled) = reserver.join().unwrap();
        let tried = trier.join().unwrap();
        // The try wins either before the reservation (which then queues) or after its cancel.
        // It can never win between the two: the reservation holds the only token. So the
        // reservation is always the most recent commitment and its cancel never loses.
        assert!(cancelled);
        if tried && !queued {
            // Try after the cancel: the token came back and was taken again, once.
            assert_eq!(bucket.available_at(T0), 0);
        }
        assert_eq!(committed(&bucket), u64::from(tried));
    });
}

/// Burst 1: two threads each reserve and then cancel. The later reservation can always be
/// undone; the earlier one only if the later was undone first. Committed tokens match.
#[test]
fn two_reserve_cancel_pairs() {
    model("two_reserve_cancel_pairs", None, || {
        let bucket = Arc::new(TokenBucket::new(RATE, 1));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let bucket = bucket.clone();
                thread::spawn(move || {
                    let r = bucket.reserve_at(1, T0).unwrap();
                    bucket.cancel(r)
                })
            })
            .collect();
        let undone: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // At least one cancel succeeds: whichever reservation is the latest when its owner
        // cancels. A failed cancel keeps its token (never over-admits).
        let kept = undone.iter().filter(|u| !**u).count() as u64;
        assert!(kept <= 1, "{undone:?}");
        assert_eq!(committed(&bucket), kept);
    });
}

/// Burst 2: three threads, one reserve+cancel, one reserve (kept), one try. The totals add
/// up whatever the order.
#[test]
fn reserve_cancel_reserve_and_try() {
    model("reserve_cancel_reserve_and_try", THREE_THREADS, || {
        let bucket = Arc::new(TokenBucket::new(RATE, 2));
        let canceller = {
            let bucket = bucket.clone();
            thread::spawn(move || {
                let r = bucket.reserve_at(1, T0).unwrap();
                bucket.cancel(r)
            })
        };
        let keeper = {
            let bucket = bucket.clone();
            thread::spawn(move || bucket.reserve_at(1, T0).unwrap().ready_at())
        };
        let trier = {
            let bucket = bucket.clone();
            thread::spawn(move || bucket.try_acquire_at(1, T0).is_ok())
        };
        let undone = canceller.join().unwrap();
        let kept_ready = keeper.join().unwrap();
        let tried = trier.join().unwrap();
        let committed_now = committed(&bucket);
        let expected = 1 + u64::from(!undone) + u64::from(tried);
        assert_eq!(committed_now, expected, "undone {undone}, tried {tried}");
        // The kept reservation is served within the tokens committed before it.
        assert!(kept_ready <= secs(committed_now.saturating_sub(1)));
    });
}
