//! Cancellation is free for the Redis bucket's tries too (DESIGN.md invariant 8; issue 10,
//! "cancellation costs nothing"): a try whose caller is cancelled after the shared call's
//! answer was sent but before the caller read it keeps no tokens. Many tasks race tries against
//! timers of 0–200 µs on a multi-thread runtime with the real clock; then the bucket's state in
//! Redis (what is left of its burst) must say that exactly the tokens of the tries whose callers
//! read an admission were consumed (`cargo test -p tollgate-redis --test bucket_unread --
//! --nocapture`).

mod support;

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use tollgate::{Clock, Rate};
use tollgate_redis::{Error, RateLimiter, RedisStore};

/// A burst no run empties, refilled one token a minute: over the run the bucket's state is
/// (nearly) the count of tokens consumed.
const BURST: u64 = 1_000_000;
const REFILL: Duration = Duration::from_secs(60);

/// How many tokens are left in `b`, found without taking any: the wait a refused try of the
/// whole burst reports, in refill periods (rounded down: refill since the last call makes part
/// of a token).
async fn left(b: &RateLimiter) -> u64 {
    match b.try_acquire_n(BURST).await {
        Ok(()) => BURST,
        Err(Error::Limit(tollgate::Error::RateLimited(refusal))) => {
            let wait = refusal.ready_at().saturating_duration_since(b.timer().now());
            let short = wait.as_nanos().div_ceil(REFILL.as_nanos());
            BURST - u64::try_from(short).expect("tokens")
        }
        Err(e) => panic!("reading the bucket: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tries_cancelled_before_they_read_their_answer_keep_no_tokens() {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let b = RateLimiter::new(store, "unread", "bucket", Rate::new(1, REFILL), BURST).unwrap();
    let run = Duration::from_millis(1_500);
    let start = Instant::now();
    let (admitted, tries, cancelled) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for t in 0..64_u64 {
        let (b, admitted, tries, cancelled) =
            (b.clone(), admitted.clone(), tries.clone(), cancelled.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0_u64;
            while start.elapsed() < run {
                i += 1;
                tries.fetch_add(1, Ordering::Relaxed);
                let k = 1 + (t + i) % 3;
                let bound = Duration::from_micros((t * 37 + i * 53) % 200);
                tokio::select! {
                    r = b.try_acquire_n(k) => match r {
                        Ok(()) => { admitted.fetch_add(k, Ordering::Relaxed); }
                        Err(e) => panic!("a try with room in the burst: {e:?}"),
                    },
                    () = tokio::time::sleep(bound) => { cancelled.fetch_add(1, Ordering::Relaxed); }
                }
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(run * 4, task).await.expect("a task hung").expect("task");
    }
    // The give-backs of the last cancelled tries go through the janitor.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admitted = admitted.load(Ordering::Relaxed);
    let consumed = BURST - left(&b).await;
    println!(
        "{} tries of 1–3 tokens, {} cancelled by their timers: {admitted} tokens admitted to \
         callers that read their answer, {consumed} consumed in Redis ({} kept by nobody)",
        tries.load(Ordering::Relaxed),
        cancelled.load(Ordering::Relaxed),
        consumed as i64 - admitted as i64
    );
    assert!(cancelled.load(Ordering::Relaxed) > 100, "the timers cancelled too few to tell");
    assert!(admitted > 1_000, "too few admitted to tell");
    assert!(consumed < BURST / 2, "the run nearly emptied the burst: the check would be void");
    assert_eq!(consumed, admitted, "tokens consumed in Redis against tokens callers got");
}

/// The bucket's lead (TAT - now) in µs, found without taking anything: the wait a refused try
/// of the whole `burst` reports. Only while the bucket is in debt (its lead above zero):
/// a full bucket would admit it.
async fn lead_us(b: &RateLimiter, burst: u64) -> (Instant, u64) {
    let at = Instant::now();
    match tokio::time::timeout(Duration::from_secs(2), b.try_acquire_n(burst)).await {
        Ok(Err(Error::Limit(tollgate::Error::RateLimited(refusal)))) => {
            let wait = refusal.ready_at().saturating_duration_since(b.timer().now());
            (at, u64::try_from(wait.as_micros()).expect("µs"))
        }
        other => panic!("reading the bucket's lead: {other:?}"),
    }
}

/// A shared call holding an admitted try whose caller never reads it, ahead of the head of
/// this process's waiters (a reservation that waits, read): the head's place counts the try's
/// tokens. They are given back as far as that lets nobody in sooner than had the try never
/// asked (`Fates::settle`, `src/bucket/line.rs`); before, nothing was given back, and they
/// lapsed (consumed, admitted to nobody; under-admission): 15–211 tokens of about 1 500 in
/// eight runs (1–14 %). A bucket kept in debt by a crowd of tries (cancelled within 200 µs)
/// and unbounded acquires (never cancelled): the tokens it consumed over the run, from its
/// lead at the start and the end (it never fills, so its TAT moves only by reservations and
/// give-backs), against the tokens callers read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_answers_ahead_of_a_waiting_head_give_their_tokens_back() {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let (rate, burst) = (1_000_u32, 200_u64);
    let b = RateLimiter::new(store.clone(), "unread", "lapse", Rate::per_second(rate), burst)
        .expect("bucket");
    // In debt from the start: the whole burst taken.
    let probe =
        RateLimiter::new(store, "unread", "lapse", Rate::per_second(rate), burst).expect("bucket");
    tokio::time::timeout(Duration::from_secs(2), probe.acquire_n(burst))
        .await
        .expect("bounded")
        .expect("the burst");
    let (t0, lead0) = lead_us(&probe, burst).await;
    let run = Duration::from_millis(1_500);
    let start = Instant::now();
    let (read, cancelled) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for t in 0..36_u64 {
        let (b, read, cancelled) = (b.clone(), read.clone(), cancelled.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0_u64;
            while start.elapsed() < run {
                i += 1;
                if t < 4 {
                    // The heads: unbounded acquires, never cancelled.
                    b.acquire().await.expect("acquire");
                    read.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let k = 1 + (t + i) % 3;
                let bound = Duration::from_micros((t * 37 + i * 53) % 200);
                tokio::select! {
                    r = b.try_acquire_n(k) => match r {
                        Ok(()) => { read.fetch_add(k, Ordering::Relaxed); }
                        Err(Error::Limit(tollgate::Error::RateLimited(_))) => {}
                        Err(e) => panic!("{e:?}"),
                    },
                    () = tokio::time::sleep(bound) => { cancelled.fetch_add(1, Ordering::Relaxed); }
                }
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(run * 4, task).await.expect("a task hung").expect("task");
    }
    // The last give-backs go through the janitor; the bucket stays in debt meanwhile.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (t1, lead1) = lead_us(&probe, burst).await;
    // TAT = at + lead; consumed tokens = ΔTAT / period (1 ms).
    let tat = |at: Instant, lead: u64| at.duration_since(t0).as_micros() as i64 + lead as i64;
    let consumed_us = tat(t1, lead1) - tat(t0, lead0);
    let consumed = (consumed_us as f64 / (1e6 / f64::from(rate))).round() as i64;
    let read = read.load(Ordering::Relaxed) as i64;
    println!(
        "a crowd in debt, {} tries cancelled: {read} tokens read by callers, {consumed} consumed \
         in Redis: {} lapsed ({:.2} % of those consumed)",
        cancelled.load(Ordering::Relaxed),
        consumed - read,
        100.0 * (consumed - read) as f64 / consumed.max(1) as f64
    );
    assert!(lead1 > 0, "the bucket filled: the measurement is void");
    assert!(cancelled.load(Ordering::Relaxed) > 1_000, "the timers cancelled too few to tell");
    // The lead's reading is good to a round trip (a fraction of a token) either way.
    assert!(consumed >= read - 1, "more read ({read}) than consumed ({consumed})");
    assert!(consumed <= read + 1, "{} tokens consumed, admitted to nobody", consumed - read);
}
