//! `KeyedRateLimiter` on a manual clock: one bucket per key, borrowed lookups, per-key FIFO
//! waits that cost nothing to cancel, exact eviction (memory returns to nothing and returning
//! keys are decided as by a fresh limiter), and the key cap's policy.

use core::net::{IpAddr, Ipv4Addr};
use core::pin::pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::Arc;

use futures_util::task::noop_waker;
use tollgate::keyed::KeyedRateLimiter;
use tollgate::{Clock, Error, Instant, ManualClock, Rate, Refusal};

fn poll<F: Future>(f: core::pin::Pin<&mut F>) -> Poll<F::Output> {
    let waker = noop_waker();
    f.poll(&mut Context::from_waker(&waker))
}

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

type Shared = Arc<ManualClock>;

fn shared_clock() -> Shared {
    Arc::new(ManualClock::new())
}

/// One key per second with room for `burst`, in one shard holding at most `max_keys` keys.
fn capped(clock: &Shared, burst: u64, max_keys: usize) -> KeyedRateLimiter<u64, Shared> {
    KeyedRateLimiter::builder(Rate::per_second(1), burst)
        .shards(1)
        .max_keys(max_keys)
        .build_with_timer(Arc::clone(clock))
        .unwrap()
}

#[test]
fn each_key_has_its_own_bucket_and_lazy_refusals() {
    let clock = ManualClock::new();
    let l: KeyedRateLimiter<u64, _> = KeyedRateLimiter::with_timer(Rate::per_second(2), 2, &clock);
    assert_eq!(l.try_acquire(&1), Ok(()));
    assert_eq!(l.try_acquire(&1), Ok(()));
    let Err(Error::RateLimited(refusal)) = l.try_acquire(&1) else { panic!("not refused") };
    assert_eq!(refusal.ready_at(), Instant::from_millis(500));
    assert_eq!(refusal.retry_after(clock.now()), Duration::from_millis(500));
    assert_eq!(l.try_acquire_n(&2, 2), Ok(()));
    assert_eq!(l.available(&1), 0);
    assert_eq!(l.available(&3), 2);
    assert_eq!(
        l.try_acquire_n(&3, 3),
        Err(Error::InsufficientCapacity { requested: 3, capacity: 2 })
    );
    clock.set(Instant::from_millis(500));
    assert_eq!(l.try_acquire(&1), Ok(()));
    assert_eq!(l.len(), 2, "a refusal or an oversized request remembers nothing");
}

#[test]
fn string_keys_are_asked_with_str_and_other_key_types_work() {
    let clock = ManualClock::new();
    let l: KeyedRateLimiter<String, _> =
        KeyedRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
    assert_eq!(l.try_acquire("key-a"), Ok(()));
    assert!(l.try_acquire(&String::from("key-a")).is_err());
    assert_eq!(l.try_acquire_n("key-b", 0), Ok(()));
    assert_eq!(l.len(), 1, "taking nothing remembers nothing");

    let ips: KeyedRateLimiter<IpAddr, _> =
        KeyedRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
    let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(ips.try_acquire(&a), Ok(()));
    assert!(ips.try_acquire(&a).is_err());
    let tuples: KeyedRateLimiter<(IpAddr, u16), _> =
        KeyedRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
    assert_eq!(tuples.try_acquire(&(a, 80)), Ok(()));
    assert_eq!(tuples.try_acquire(&(a, 443)), Ok(()));
}

/// The exactness claim: a limiter that forgets refilled keys (at random moments, by both
/// eviction paths) answers every request exactly as one per-key `TokenBucket` does, and once
/// load stops and time passes it holds nothing.
#[test]
#[cfg_attr(miri, ignore)] // thousands of steps: minutes under miri
fn eviction_changes_no_decision_and_memory_returns_to_nothing() {
    let clock = ManualClock::new();
    let l: KeyedRateLimiter<u32, _> = KeyedRateLimiter::with_timer(Rate::per_second(10), 3, &clock);
    let mut reference = std::collections::HashMap::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for step in 0..20_000u64 {
        let r = next();
        clock.advance(Duration::from_micros(r % 20_000));
        let key = (r >> 20) as u32 % 500;
        let n = (r >> 40) % 4;
        if r % 997 == 0 {
            l.retain_recent();
        }
        let now = clock.now();
        let bucket = reference
            .entry(key)
            .or_insert_with(|| tollgate::TokenBucket::new(Rate::per_second(10), 3));
        let want = bucket.try_acquire_at(n, now).map_err(|e| match e {
            Error::RateLimited(r) => Error::RateLimited(Refusal::at(r.ready_at())),
            e => e,
        });
        let got = l.try_acquire_n(&key, n).map_err(|e| match e {
            Error::RateLimited(r) => Error::RateLimited(Refusal::at(r.ready_at())),
            e => e,
        });
        assert_eq!(got, want, "step {step}: key {key}, n {n} at {now:?}");
    }
    assert!(l.len() <= 500);
    // Load stops; after the longest refill (burst / rate) everything can go.
    clock.advance(Duration::from_millis(300));
    l.retain_recent();
    assert_eq!(l.len(), 0);
    l.shrink_to_fit();
    assert_eq!(l.table_bytes(), 0, "an empty limiter allocates nothing");
    // Returning keys are decided as by a fresh limiter.
    let fresh: KeyedRateLimiter<u32, _> =
        KeyedRateLimiter::with_timer(Rate::per_second(10), 3, &clock);
    for key in 0..500 {
        for n in [1, 2, 1] {
            assert_eq!(l.try_acquire_n(&key, n), fresh.try_acquire_n(&key, n), "key {key}");
        }
    }
}

/// Without `retain_recent`: operations forget refilled keys by themselves, a few at a time —
/// every eighth operation on a known key, and every new key.
#[test]
#[cfg_attr(miri, ignore)] // thousands of steps: minutes under miri
fn eviction_is_incremental() {
    let clock = ManualClock::new();
    let one_shard = || -> KeyedRateLimiter<u64, &ManualClock> {
        KeyedRateLimiter::builder(Rate::per_second(1), 1)
            .shards(1)
            .build_with_timer(&clock)
            .unwrap()
    };
    // Known keys only: 1 000 keys in a table of at most 2 048 buckets, two looked at every
    // eighth operation.
    let l = one_shard();
    for key in 0..1_000 {
        l.try_acquire(&key).unwrap();
    }
    assert_eq!(l.len(), 1_000);
    clock.advance(Duration::from_secs(1));
    for _ in 0..8 * 1_024 {
        clock.advance(Duration::from_secs(1));
        l.try_acquire(&0).unwrap();
    }
    assert!(l.len() <= 1, "{} keys left", l.len());
    // New keys only: each new key looks at two buckets (or the table sweeps before growing).
    let l = one_shard();
    for key in 0..500 {
        l.try_acquire(&key).unwrap();
    }
    clock.advance(Duration::from_secs(1));
    for key in 0..512 {
        l.try_acquire(&(10_000 + key)).unwrap();
    }
    assert_eq!(l.len(), 512, "only the new keys are live");
}

#[test]
fn waits_are_fifo_per_key_and_do_not_block_other_keys() {
    let clock = shared_clock();
    let l: KeyedRateLimiter<u64, Shared> =
        KeyedRateLimiter::with_timer(Rate::per_second(1), 1, Arc::clone(&clock));
    l.try_acquire(&1).unwrap();
    let mut a = pin!(l.acquire_n(&1, 1));
    let mut b = pin!(l.acquire_n(&1, 1));
    assert!(poll(a.as_mut()).is_pending());
    assert!(poll(b.as_mut()).is_pending());
    assert_eq!(l.waiters(&1), 2);
    // Key 1's line refuses newcomers; key 2 is not affected.
    assert_eq!(l.try_acquire(&1), Err(Error::RateLimited(Refusal::at(secs(3)))));
    assert_eq!(l.try_acquire(&2), Ok(()));
    clock.set(secs(1));
    assert!(poll(b.as_mut()).is_pending(), "b overtook a");
    assert_eq!(poll(a.as_mut()), Poll::Ready(Ok(())));
    clock.set(secs(2));
    assert_eq!(poll(b.as_mut()), Poll::Ready(Ok(())));
    assert_eq!(l.waiters(&1), 0);
}

#[test]
fn a_cancelled_wait_costs_nothing_and_the_key_is_forgotten_after() {
    let clock = shared_clock();
    let l: KeyedRateLimiter<u64, Shared> =
        KeyedRateLimiter::with_timer(Rate::per_second(1), 1, Arc::clone(&clock));
    l.try_acquire(&7).unwrap();
    {
        let mut w = Box::pin(l.acquire(&7));
        assert!(poll(w.as_mut()).is_pending());
        clock.set(Instant::from_millis(500));
        assert!(poll(w.as_mut()).is_pending());
    } // dropped: the reservation for 1 s goes back
    clock.set(secs(1));
    assert_eq!(l.try_acquire(&7), Ok(()), "the cancelled wait kept its token");
    clock.set(secs(2));
    l.retain_recent();
    assert_eq!(l.len(), 0, "a key nobody holds any more is forgotten once refilled");
}

#[test]
fn bounded_waits_refuse_up_front_and_take_nothing() {
    let clock = shared_clock();
    let l: KeyedRateLimiter<u64, Shared> =
        KeyedRateLimiter::with_timer(Rate::per_second(1), 1, Arc::clone(&clock));
    assert_eq!(poll(pin!(l.acquire_within(&1, Duration::ZERO))), Poll::Ready(Ok(())));
    assert_eq!(
        poll(pin!(l.acquire_within(&1, Duration::from_millis(500)))),
        Poll::Ready(Err(Error::MaxWaitExceeded { ready_at: secs(1) }))
    );
    assert_eq!(
        poll(pin!(l.acquire_n_within(&1, 2, Duration::from_secs(9)))),
        Poll::Ready(Err(Error::InsufficientCapacity { requested: 2, capacity: 1 }))
    );
    let mut fits = pin!(l.acquire_before(&1, secs(1)));
    assert!(poll(fits.as_mut()).is_pending());
    clock.set(secs(1));
    assert_eq!(poll(fits.as_mut()), Poll::Ready(Ok(())));
    assert_eq!(l.waiters(&1), 0);
    assert_eq!(
        poll(pin!(l.acquire_n_before(&1, 1, Instant::from_millis(1_999)))),
        Poll::Ready(Err(Error::MaxWaitExceeded { ready_at: secs(2) }))
    );
}

#[test]
fn owned_waits_are_static() {
    fn assert_static<X: 'static + Send>(_: &X) {}
    let clock = shared_clock();
    let l: Arc<KeyedRateLimiter<String, Shared>> =
        Arc::new(KeyedRateLimiter::with_timer(Rate::per_second(1), 1, Arc::clone(&clock)));
    l.try_acquire("k").unwrap();
    let mut w = Box::pin(Arc::clone(&l).acquire_n_owned("k".to_owned(), 1));
    assert_static(&w);
    assert!(poll(w.as_mut()).is_pending());
    let mut bounded = Box::pin(Arc::clone(&l).acquire_within_owned("k".to_owned(), Duration::ZERO));
    assert!(matches!(poll(bounded.as_mut()), Poll::Ready(Err(Error::MaxWaitExceeded { .. }))));
    clock.set(secs(1));
    assert_eq!(poll(w.as_mut()), Poll::Ready(Ok(())));
    drop((w, bounded));
    assert_eq!(Arc::strong_count(&l), 1);
    let mut plain = Box::pin(Arc::clone(&l).acquire_owned("other".to_owned()));
    assert_eq!(poll(plain.as_mut()), Poll::Ready(()));
}

/// The cap's policy: a full shard refuses new keys until the earliest instant one of its keys
/// could be forgotten; keys already held are served as usual; `acquire` waits for room.
#[test]
fn a_key_cap_refuses_new_keys_until_one_refills() {
    let clock = shared_clock();
    let l = capped(&clock, 2, 3);
    l.try_acquire_n(&1, 2).unwrap(); // full again at 2 s
    clock.set(Instant::from_millis(500));
    l.try_acquire(&2).unwrap(); // full again at 1.5 s
    l.try_acquire(&3).unwrap(); // full again at 1.5 s
    assert_eq!(
        l.try_acquire(&4),
        Err(Error::RateLimited(Refusal::at(Instant::from_millis(1_500))))
    );
    assert_eq!(l.try_acquire(&2), Ok(()), "held keys are still served");
    let mut waiting = pin!(l.acquire(&5));
    assert!(poll(waiting.as_mut()).is_pending());
    clock.set(secs(2));
    assert_eq!(l.try_acquire(&4), Ok(()), "key 1 refilled: room for a new key");
    assert_eq!(poll(waiting.as_mut()), Poll::Ready(()));
    assert_eq!(l.len(), 3);
}

#[test]
fn a_bad_configuration_is_a_typed_error() {
    let clock = ManualClock::new();
    let made = KeyedRateLimiter::builder(Rate::per_second(1), 0).build_with_timer::<u64, _>(&clock);
    assert!(made.is_err());
    // Found in review: a cap of 0 refused every new key forever; it is a typed error now.
    let made = KeyedRateLimiter::builder(Rate::per_second(1), 1)
        .max_keys(0)
        .build_with_timer::<u64, _>(&clock);
    assert_eq!(made.err().map(|e| e.field), Some("max_keys"));
}

/// A full shard whose only key is held by a waiting future (so it cannot go even once its
/// bucket is full) refuses a new key until a real instant ahead, never one already past: a
/// caller that sleeps until then does not spin.
#[test]
fn a_cap_refusal_is_never_in_the_past() {
    let clock = shared_clock();
    let l = capped(&clock, 1, 1);
    l.try_acquire(&1).unwrap();
    let mut held = pin!(l.acquire(&1));
    assert!(poll(held.as_mut()).is_pending()); // key 1 is busy: its future holds it
    clock.set(secs(5)); // key 1's bucket is full since 1 s, but it is still held
    assert_eq!(l.try_acquire(&2), Err(Error::RateLimited(Refusal::at(secs(6)))));
    assert_eq!(poll(held.as_mut()), Poll::Ready(()));
    assert_eq!(l.try_acquire(&2), Ok(()), "released and refilled: forgotten, room made");
}

/// Found in review: a full shard kept refusing with the instant it computed while a wait
/// still held a reservation on its key, after that wait was cancelled and gave it back. The
/// refusal must follow the key's real refill, whether the key is let go or still held.
#[test]
fn a_cap_refusal_follows_a_cancelled_wait() {
    let clock = shared_clock();
    let l = capped(&clock, 1, 1);
    l.try_acquire(&1).unwrap(); // key 1 full again at 1 s
    let mut first = Box::pin(l.acquire(&1));
    assert!(poll(first.as_mut()).is_pending()); // reserves the token of 1 s: full at 2 s
    let mut second = Box::pin(l.acquire(&1));
    assert!(poll(second.as_mut()).is_pending()); // queued behind: a reservation is to come
    assert_eq!(l.try_acquire(&2), Err(Error::RateLimited(Refusal::at(secs(2)))));
    drop(first); // gives the 1 s token back; `second` still holds the key
    clock.set(Instant::from_millis(100));
    // `second` is at the head now but only reserves when polled: key 1 is full at 1 s.
    assert_eq!(l.try_acquire(&2), Err(Error::RateLimited(Refusal::at(secs(1)))));
    drop(second); // nobody holds key 1 any more
    assert_eq!(l.try_acquire(&2), Err(Error::RateLimited(Refusal::at(secs(1)))));
    clock.set(secs(1));
    assert_eq!(l.try_acquire(&2), Ok(()), "key 1 refilled at 1 s: room for key 2");
}

/// Found in review: with a key cap, a bounded wait for a new key ignored its bound — refused
/// at once with `RateLimited` even when room came in time. It waits within the bound now, and
/// is refused up front with `MaxWaitExceeded` when room comes later.
#[test]
fn a_wait_for_room_under_a_key_cap_keeps_its_bound() {
    let clock = shared_clock();
    let l = Arc::new(capped(&clock, 1, 1));
    l.try_acquire(&1).unwrap(); // the shard is full until 1 s
    assert_eq!(
        poll(pin!(l.acquire_within(&2, Duration::from_millis(500)))),
        Poll::Ready(Err(Error::MaxWaitExceeded { ready_at: secs(1) }))
    );
    let mut fits = pin!(l.acquire_within(&2, Duration::from_secs(2)));
    assert!(poll(fits.as_mut()).is_pending(), "room comes within the bound: wait");
    let mut owned = Box::pin(Arc::clone(&l).acquire_n_owned(3, 1));
    assert!(poll(owned.as_mut()).is_pending(), "an unbounded wait waits for room too");
    clock.set(Instant::from_millis(999));
    assert!(poll(fits.as_mut()).is_pending());
    clock.set(secs(1));
    assert_eq!(poll(fits.as_mut()), Poll::Ready(Ok(())));
    // Key 2 holds the one place until 2 s; the bound was fixed at the first poll.
    assert!(poll(owned.as_mut()).is_pending());
    clock.set(secs(2));
    assert_eq!(poll(owned.as_mut()), Poll::Ready(Ok(())));
    let mut late = pin!(l.acquire_within(&4, Duration::from_millis(1_500)));
    assert!(poll(late.as_mut()).is_pending()); // room at 3 s, bound at 3.5 s
    // Someone else takes the room first: the next room (4 s) is past the bound.
    clock.set(secs(3));
    l.try_acquire(&5).unwrap();
    assert_eq!(poll(late.as_mut()), Poll::Ready(Err(Error::MaxWaitExceeded { ready_at: secs(4) })));
}

/// The status of a key is what the HTTP layer's `RateLimit` field reports: tokens left and
/// when the bucket is full again, for idle, busy and unseen keys.
#[test]
fn status_reads_tokens_left_and_the_refill() {
    let clock = shared_clock();
    let l: KeyedRateLimiter<u64, Shared> =
        KeyedRateLimiter::with_timer(Rate::per_second(2), 3, Arc::clone(&clock));
    l.try_acquire_n(&1, 2).unwrap();
    let s = l.status(&1);
    assert_eq!((s.available, s.full_at), (1, Instant::from_millis(1_000)));
    let s = l.status(&9);
    assert_eq!((s.available, s.full_at, s.at), (3, clock.now(), clock.now()));
    l.try_acquire(&1).unwrap();
    let mut w = Box::pin(l.acquire(&1));
    assert!(poll(w.as_mut()).is_pending()); // busy, with a reservation for 500 ms
    let s = l.status(&1);
    assert_eq!((s.available, s.full_at), (0, Instant::from_millis(2_000)));
}

/// `try_acquire_status` is `try_acquire` and then `status`, from one clock reading and one
/// lookup: what the HTTP layer reports on an admitted response. A refusal takes nothing and
/// says the same as `try_acquire`'s, for a new key, an idle one, and one someone waits on.
#[test]
fn try_acquire_status_is_the_decision_and_the_status_at_once() {
    let clock = shared_clock();
    let l: KeyedRateLimiter<u64, Shared> =
        KeyedRateLimiter::with_timer(Rate::per_second(2), 3, Arc::clone(&clock));
    clock.set(secs(10));
    // A new key, then the same key idle: 2 then 1 left, full again 0.5 s per token owed.
    let s = l.try_acquire_status(&1).unwrap();
    assert_eq!((s.available, s.full_at, s.at), (2, Instant::from_millis(10_500), secs(10)));
    clock.advance(Duration::from_millis(100));
    let s = l.try_acquire_status(&1).unwrap();
    assert_eq!((s.available, s.full_at), (1, Instant::from_millis(11_000)));
    assert_eq!(s, l.status(&1), "the status it returns is the status after the decision");
    l.try_acquire(&1).unwrap();
    // Empty: refused as `try_acquire` is, and nothing taken.
    let refused = l.try_acquire_status(&1).unwrap_err();
    assert_eq!(Err(refused), l.try_acquire(&1));
    assert_eq!(l.status(&1).available, 0);
    // Someone waits on the key: refused too (its line comes first).
    let mut w = Box::pin(l.acquire(&1));
    assert!(poll(w.as_mut()).is_pending());
    clock.advance(Duration::from_secs(5)); // a token is back, and the waiter's
    assert_eq!(l.try_acquire_status(&1).unwrap_err(), l.try_acquire(&1).unwrap_err());
    assert_eq!(poll(w.as_mut()), Poll::Ready(()));
    drop(w);
    // Let go of, the key is idle again and served with its status.
    let s = l.try_acquire_status(&1).unwrap();
    assert_eq!(s, l.status(&1));
    // Too many at once for a key cap: the same refusal as `try_acquire`.
    let capped = capped(&clock, 1, 1);
    capped.try_acquire(&1).unwrap();
    assert_eq!(capped.try_acquire_status(&2).unwrap_err(), capped.try_acquire(&2).unwrap_err());
}
