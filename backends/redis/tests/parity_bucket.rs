//! Parity of the buckets: the Redis bucket's scripts (`gcra_reserve`, `gcra_cancel`, on a
//! test clock in nanoseconds) and tollgate's in-process `TokenBucket` make the same decisions,
//! with the same waits, over random sequences of calls: tries, bounded and unbounded
//! reservations, several per call (as the line sends them), more than the burst, and
//! cancellations of the latest call and of older ones.
//!
//! "The same wait" allows the in-process bucket's rounding: it counts in fixed-point token
//! units (`TokenBucket::fractional_bits` bits), the scripts in exact fractions, so a wait may
//! differ by a few units of `2^-bits` of a token (nanoseconds at these rates), and a decision
//! may differ only where the wait is that close to the bound.

mod support;

use core::time::Duration;

use tollgate::bucket::Reservation;
use tollgate::{Error, Instant, Rate, TokenBucket};
use tollgate_redis::testing::{BucketDecision, ParityBucket};

/// What the in-process bucket decides for one ask at `now`, and the reservation if any.
fn core_decide(
    bucket: &TokenBucket,
    k: u64,
    max_wait: Option<u64>,
    now: Instant,
) -> (BucketDecision, Option<Reservation>) {
    let after = |at: Instant| at.saturating_duration_since(now).as_nanos() as u64;
    let result = match max_wait {
        Some(0) => match bucket.try_acquire_at(k, now) {
            Ok(()) => return (BucketDecision::Reserved(0), None),
            Err(Error::RateLimited(r)) => {
                return (BucketDecision::Refused(after(r.ready_at())), None);
            }
            Err(e) => Err(e),
        },
        Some(w) => bucket.reserve_within_at(k, now, Duration::from_nanos(w)),
        None => bucket.reserve_at(k, now),
    };
    match result {
        Ok(r) => (BucketDecision::Reserved(after(r.ready_at())), Some(r)),
        Err(Error::MaxWaitExceeded { ready_at }) => {
            (BucketDecision::Refused(after(ready_at)), None)
        }
        Err(Error::InsufficientCapacity { .. }) => (BucketDecision::Never, None),
        Err(e) => panic!("unexpected: {e:?}"),
    }
}

/// Whether the two decisions agree, up to `slack` ns of rounding (see the module doc).
fn agree(redis: BucketDecision, core: BucketDecision, max_wait: Option<u64>, slack: u64) -> bool {
    use BucketDecision::{Never, Refused, Reserved};
    let near = |a: u64, b: u64| a.abs_diff(b) <= slack;
    match (redis, core) {
        (Never, Never) => true,
        (Reserved(a), Reserved(b)) | (Refused(a), Refused(b)) => near(a, b),
        // Only on the bound itself: one side's wait just within it, the other's just beyond.
        (Reserved(a), Refused(b)) | (Refused(b), Reserved(a)) => {
            max_wait.is_some_and(|w| near(a, w) && near(b, w))
        }
        _ => false,
    }
}

/// `steps` random calls on both buckets; panics at the first difference.
fn compare(url: &str, key: &str, rate: Rate, burst: u64, seed: u64, steps: usize) -> [usize; 4] {
    let mut rng = fastrand::Rng::with_seed(seed);
    let redis = ParityBucket::new(url, key, rate, burst).expect("parity bucket");
    let core = TokenBucket::new(rate, burst);
    let token_ns = (rate.period().as_nanos() as u64 / rate.count()).max(1);
    // A few units of the core's fixed point, in ns (at least 1 ns: waits are whole ns).
    let slack = ((8 * token_ns) >> core.fractional_bits().min(63)).max(1);
    let mut now = 1_000_000_000_u64; // 1 s: Redis's state starts empty, as the core's
    // The single-ask calls still held (name, reservation), latest last; cleared by any
    // successful cancel (afterwards the core would let an older one be undone, which the
    // scripts never do: they undo the latest call only, so the test asks only that).
    let mut held: Vec<(String, Reservation)> = Vec::new();
    let mut seen = [0_usize; 4]; // reserved now, reserved with a wait, refused, cancelled
    for step in 0..steps {
        now += match rng.u8(0..10) {
            0 => token_ns * burst, // the bucket refills
            1..=3 => 0,
            _ => rng.u64(0..=2 * token_ns),
        };
        let at = Instant::from_nanos(now);
        if rng.u8(0..6) == 0 && !held.is_empty() {
            // Cancel the latest held call, or an older one (which must fail in both).
            let i = if rng.bool() { held.len() - 1 } else { rng.usize(0..held.len()) };
            let (name, reservation) = held.remove(i);
            let n = reservation.tokens();
            let by_core = core.cancel(reservation);
            let by_redis = redis.cancel(n, &name, at);
            assert_eq!(by_redis, by_core, "seed {seed} step {step}: cancel {name} of {n} at {now}");
            if by_core {
                seen[3] += 1;
                held.clear();
            }
            continue;
        }
        let asks: Vec<(u64, Option<u64>)> = (0..rng.usize(1..=4))
            .map(|_| {
                let k = if rng.u8(0..20) == 0 { burst + 1 } else { rng.u64(1..=burst) };
                let max_wait = match rng.u8(0..3) {
                    0 => Some(0),
                    1 => Some(rng.u64(0..=token_ns * burst)),
                    _ => None,
                };
                (k, max_wait)
            })
            .collect();
        let name = format!("c{step}");
        let by_redis = redis.reserve(&asks, &name, None, at);
        let mut reservations = Vec::new();
        for (j, &(k, max_wait)) in asks.iter().enumerate() {
            let (decision, reservation) = core_decide(&core, k, max_wait, at);
            assert!(
                agree(by_redis[j], decision, max_wait, slack),
                "seed {seed} step {step} ask {j} of {asks:?} at {now} ns ({rate:?}, burst \
                 {burst}): redis {:?}, in-process {decision:?} (slack {slack} ns)",
                by_redis[j]
            );
            match decision {
                BucketDecision::Reserved(0) => seen[0] += 1,
                BucketDecision::Reserved(_) => seen[1] += 1,
                _ => seen[2] += 1,
            }
            reservations.extend(reservation);
        }
        if reservations.is_empty() {
            continue;
        }
        // A call that reserved is the latest now: only a single ask's call is a cancellation
        // both sides can name; a multi-ask call ends every older hold's chance.
        if asks.len() == 1 && reservations.len() == 1 {
            held.push((name, reservations.pop().expect("one")));
        } else {
            held.clear();
        }
    }
    seen
}

#[test]
fn the_redis_bucket_decides_as_the_in_process_one() {
    let Some(server) = support::RedisServer::start() else { return };
    let url = server.url();
    let cases = [
        (Rate::per_second(10), 5),
        (Rate::per_second(1_000), 1),
        (Rate::per_minute(7), 3),
        (Rate::new(3, Duration::from_millis(700)), 4),
        (Rate::per_second(123_457), 64),
    ];
    let mut total = [0_usize; 4];
    for (i, &(rate, burst)) in cases.iter().enumerate() {
        for seed in 0..4_u64 {
            let key = format!("{{parity}}:b{i}:{seed}");
            let seen = compare(&url, &key, rate, burst, seed * 7 + i as u64, 400);
            for (t, s) in total.iter_mut().zip(seen) {
                *t += s;
            }
        }
    }
    // Every kind of decision happened, so the comparison covered them.
    assert!(total.iter().all(|&n| n >= 20), "decisions seen: {total:?}");
    println!("reserved now / with a wait / refused / cancelled: {total:?}");
}
