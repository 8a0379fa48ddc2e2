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

/// Whether the bucket is in debt (its TAT ahead of now), found without taking anything: a
/// try of the whole `burst` is refused (a full bucket would admit it).
async fn in_debt(b: &RateLimiter, burst: u64) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), b.try_acquire_n(burst)).await {
        Ok(Err(Error::Limit(tollgate::Error::RateLimited(_)))) => true,
        Ok(Ok(())) => false,
        other => panic!("reading the bucket: {other:?}"),
    }
}

/// The bucket `name`'s TAT in µs of the server's clock, as the script stores it (`tat`; at
/// 1 000 a second a token is 1 000 µs exactly and `rem` stays 0).
fn tat_us(server: &support::RedisServer, name: &str) -> i64 {
    let key = format!("{{tg:unread:b={name}}}:b");
    let field = |f: &str| {
        let reply = server.command(&["HGET", &key, f]);
        // A bulk string: `$<len>\r\n<digits>\r\n`.
        reply.lines().nth(1).and_then(|l| l.trim().parse::<i64>().ok())
    };
    assert_eq!(field("rem").unwrap_or(0), 0, "a remainder at 1 000 a second");
    field("tat").expect("the bucket's TAT")
}

/// A shared call holding an admitted try whose caller never reads it, ahead of the head of
/// this process's waiters (a reservation that waits, read): the head's place counts the try's
/// tokens. They are given back as far as that lets nobody in sooner than had the try never
/// asked (`Fates::settle`, `src/bucket/line.rs`); before, nothing was given back, and they
/// lapsed (consumed, admitted to nobody; under-admission): 15–211 tokens of about 1 500 in
/// eight runs (1–14 %). A bucket kept in debt by a crowd of tries (cancelled within 200 µs)
/// and unbounded acquires (never cancelled): the tokens it consumed over the run, from its
/// TAT in Redis at the start and the end (it never fills, so its TAT moves only by reservations and
/// give-backs), against the tokens callers read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_answers_ahead_of_a_waiting_head_give_their_tokens_back() {
    crowd_in_debt("lapse", false).await;
}

/// As above, the heads' acquires raced against timers of 0–3 ms too, so that some are
/// cancelled during their sleep or their call. Measured, not judged (the figure depends on
/// the run; never over-admission, which is checked). A call can be undone only once: while a
/// head shared its call with admissions ahead of it, a head cancelled in its sleep after its
/// call gave back the unread ahead of it found the call undone already, and its tokens lapsed
/// (consumed, admitted to nobody): 44–116 tokens of about 1 500 (3–8 %; 47–84 before the
/// unread ahead of a head came back at all; in two runs with every give-back logged, 73 and
/// 98 such pairs). Keeping the unread's tokens for the head (given back with its own if it is
/// cancelled, alone when it goes) measured 12–55, but then lost 8–28 in the crowd above:
/// given back at the head's wake, they lose the race with the call already out. Now a head
/// leads its call (`Batched::leads`): 7–32 in five runs (0.5–2.1 %), from cancellations no
/// undo can take back (a reservation of someone else after the cancelled one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_head_cancelled_in_its_sleep_lapses_measured() {
    crowd_in_debt("lapse-cancel", true).await;
}

/// The crowd of the two tests above, on the bucket `name`; `cancel_heads`: the acquires raced
/// against timers as well (and the lapse only printed).
async fn crowd_in_debt(name: &str, cancel_heads: bool) {
    let Some(server) = support::RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let (rate, burst) = (1_000_u32, 200_u64);
    let b = RateLimiter::new(store.clone(), "unread", name, Rate::per_second(rate), burst)
        .expect("bucket");
    // In debt from the start: the whole burst taken.
    let probe =
        RateLimiter::new(store, "unread", name, Rate::per_second(rate), burst).expect("bucket");
    tokio::time::timeout(Duration::from_secs(2), probe.acquire_n(burst))
        .await
        .expect("bounded")
        .expect("the burst");
    let tat0 = tat_us(&server, name);
    let run = Duration::from_millis(1_500);
    let start = Instant::now();
    let (read, cancelled) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let heads_cancelled = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..36_u64 {
        let (b, read, cancelled) = (b.clone(), read.clone(), cancelled.clone());
        let heads_cancelled = heads_cancelled.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0_u64;
            while start.elapsed() < run {
                i += 1;
                if t < 4 {
                    // The heads: unbounded acquires, cancelled (during their sleep, or before
                    // it) only if `cancel_heads`.
                    let bound = Duration::from_micros((t * 37 + i * 53) % 3_000);
                    tokio::select! {
                        r = b.acquire() => {
                            r.expect("acquire");
                            read.fetch_add(1, Ordering::Relaxed);
                        }
                        () = tokio::time::sleep(bound), if cancel_heads => {
                            heads_cancelled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
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
    let tat1 = tat_us(&server, name);
    assert!(in_debt(&probe, burst).await, "the bucket filled: the measurement is void");
    // Consumed tokens: how far the TAT moved, a token a millisecond.
    let consumed = (tat1 - tat0) / 1_000;
    let read = read.load(Ordering::Relaxed) as i64;
    println!(
        "{name}: a crowd in debt, {} tries and {} acquires cancelled: {read} tokens read by \
         callers, {consumed} consumed in Redis: {} lapsed ({:.2} % of those consumed)",
        cancelled.load(Ordering::Relaxed),
        heads_cancelled.load(Ordering::Relaxed),
        consumed - read,
        100.0 * (consumed - read) as f64 / consumed.max(1) as f64
    );
    assert!(cancelled.load(Ordering::Relaxed) > 1_000, "the timers cancelled too few to tell");
    assert!(consumed >= read, "more read ({read}) than consumed ({consumed})");
    if !cancel_heads {
        assert_eq!(consumed, read, "tokens consumed in Redis against tokens callers read");
    }
}
