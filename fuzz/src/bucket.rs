//! `bucket` target: a `TokenBucket` with an arbitrary rate and burst under an arbitrary
//! sequence of try / reserve / reserve-within / cancel / peek / available and clock moves.
//!
//! Checked:
//! - never panics (the harness builds with overflow checks);
//! - **rate bound** (ARCHITECTURE.md invariant 7): over any interval `[a, b]` of the admission log,
//!   admitted ≤ burst + rate·(b − a) + 2^(1 − fractional_bits), in exact 256-bit integer
//!   arithmetic, with `b − a` widened by 1 ns when the interval holds a queued reservation
//!   (its `ready_at` is the GCRA instant rounded *up* to a nanosecond, as in
//!   `tests/bucket_props.rs`). The log is checked across clock steps backwards too: GCRA's
//!   theoretical arrival time never decreases (except by an exact cancel, whose admission
//!   leaves the log), so the bound holds whatever order the admissions happened in; this is
//!   stronger than checking monotone-clock segments only;
//! - a refusal (try, reserve-within) writes nothing: `available_at` and `peek_at` answer the
//!   same before and after it;
//! - `try_acquire_at(n)` succeeds exactly when `1 ≤ n ≤ available_at(now)` (or `n == 0`), and
//!   agrees with a `peek_at` just before it; `InsufficientCapacity` exactly when `n > burst`;
//! - a refused try's `ready_at` is exact: a peek there succeeds, one nanosecond earlier fails;
//! - cancel succeeds exactly for the most recent live reservation (nothing taken after it), and
//!   then the bucket is indistinguishable from one that replays the log without it.

use core::time::Duration;

use crate::AmountIn;
use arbitrary::{Arbitrary, Unstructured};
use tollgate::bucket::Reservation;
use tollgate::{Error, Instant, Rate, TokenBucket};

use crate::MAX_OPS;
use crate::u256::U256;

const DAY: u64 = 86_400_000_000_000;
const YEAR: u64 = 365 * DAY;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum CountIn {
    Small(u16),
    Any(u64),
    PerSecU32Max,
    Max,
    Zero,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum PeriodIn {
    Nanos(u16),
    Millis(u32),
    Secs(u32),
    Day,
    Any(u64),
    Huge { secs: u64, nanos: u32 },
    Max,
    Zero,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum BurstIn {
    Small(u8),
    Medium(u32),
    Any(u64),
    Default,
    Largest,
    TooLarge,
    Zero,
}

/// A clock step, in nanoseconds or in token intervals (`period / count`), so both the
/// sub-token and the many-token scales are reached whatever the rate.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum StepIn {
    Nanos(u16),
    Tokens { num: u8, den: u8 },
    Years(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum OpIn {
    Forward(StepIn),
    Back(StepIn),
    SetNearMax(u32),
    SetLow(u64),
    /// Go to the `ready_at` of the last refusal or reservation.
    ToLastReady,
    Try(AmountIn),
    Reserve(AmountIn),
    ReserveWithin(AmountIn, StepIn),
    CancelLast,
    /// Cancel some live reservation, not necessarily the last (usually refused).
    CancelAny(u8),
    Peek(AmountIn),
    Available,
}

#[derive(Debug, Clone, Copy)]
struct Admission {
    at: u64,
    tokens: u64,
    queued: bool,
    /// Reservation id, for removal on cancel.
    id: Option<u64>,
}

/// A TAT-changing operation, replayable on a fresh bucket.
#[derive(Debug, Clone, Copy)]
enum Change {
    Take {
        n: u64,
        now: u64,
    },
    /// `exposed`: it became the latest change when a later reservation was cancelled.
    Reserve {
        n: u64,
        now: u64,
        id: u64,
        exposed: bool,
    },
}

struct Live {
    id: u64,
    res: Reservation,
    /// The `now` it was made at.
    made: u64,
}

/// Runs one bucket case.
pub fn run_bucket(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
}

fn count_of(c: CountIn) -> u64 {
    match c {
        CountIn::Small(n) => n as u64,
        CountIn::Any(n) => n,
        CountIn::PerSecU32Max => u32::MAX as u64,
        CountIn::Max => u64::MAX,
        CountIn::Zero => 0,
    }
}

fn period_of(p: PeriodIn) -> Duration {
    match p {
        PeriodIn::Nanos(n) => Duration::from_nanos(n as u64),
        PeriodIn::Millis(n) => Duration::from_millis(n as u64),
        PeriodIn::Secs(n) => Duration::from_secs(n as u64),
        PeriodIn::Day => Duration::from_nanos(DAY),
        PeriodIn::Any(n) => Duration::from_nanos(n),
        PeriodIn::Huge { secs, nanos } => Duration::new(secs, nanos % 1_000_000_000),
        PeriodIn::Max => Duration::MAX,
        PeriodIn::Zero => Duration::ZERO,
    }
}

fn burst_of(b: BurstIn, rate: Rate) -> u64 {
    match b {
        BurstIn::Small(n) => n as u64,
        BurstIn::Medium(n) => n as u64,
        BurstIn::Any(n) => n,
        BurstIn::Default => rate.default_burst(),
        BurstIn::Largest => (1 << 61) - 1,
        BurstIn::TooLarge => 1 << 61,
        BurstIn::Zero => 0,
    }
}

fn step_of(s: StepIn, rate: Rate) -> u64 {
    match s {
        StepIn::Nanos(n) => n as u64,
        StepIn::Tokens { num, den } => {
            let p = rate.period().as_nanos();
            let d = (den.max(1) as u128) * rate.count() as u128;
            (p * num as u128 / d).min(u64::MAX as u128) as u64
        }
        StepIn::Years(y) => (y as u64 % 128) * YEAR,
        StepIn::Any(n) => n,
    }
}

/// What the bucket looks like at `t`, finely enough to tell two states apart.
fn probe(b: &TokenBucket, t: Instant) -> (u64, Result<(), Error>, Result<(), Error>) {
    (b.available_at(t), b.peek_at(1, t), b.peek_at(b.burst(), t))
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let count = count_of(u.arbitrary()?);
    let period = period_of(u.arbitrary()?);
    let rate = match Rate::try_new(count, period) {
        Ok(r) => r,
        Err(e) => {
            assert!(count == 0 || period.as_nanos() == 0, "valid rate rejected: {e}");
            return Ok(());
        }
    };
    assert!(count != 0 && period.as_nanos() != 0);
    let burst = burst_of(u.arbitrary()?, rate);
    let bucket = match TokenBucket::try_new(rate, burst) {
        Ok(b) => b,
        Err(e) => {
            let too_fast = count as u128 > 8 * rate.period().as_nanos();
            assert!(burst == 0 || burst >= 1 << 61 || too_fast, "valid bucket rejected: {e}");
            return Ok(());
        }
    };
    assert!(burst != 0 && burst < 1 << 61, "burst {burst} accepted");
    assert!(count as u128 <= 8 * rate.period().as_nanos(), "{rate:?} accepted");
    assert_eq!(bucket.burst(), burst);
    let bits = bucket.fractional_bits();
    if crate::debug() {
        eprintln!("bucket: {rate:?}, burst {burst}, {bits} fractional bits");
    }
    assert!(bits <= 61);

    let mut now: u64 = u.arbitrary::<u32>()? as u64 * 1_000;
    let mut last_ready: u64 = now;
    let mut log: Vec<Admission> = Vec::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut live: Vec<Live> = Vec::new();
    let mut next_id: u64 = 0;
    // The latest instant at which a cancelled reservation had been made (see CancelLast).
    let mut lift_floor: u64 = 0;
    // Whether replaying `changes` on a fresh bucket reproduces it (see CancelLast).
    let mut replay_exact = true;

    let full = probe(&bucket, Instant::from_nanos(now));
    // A fresh bucket is full at every instant.
    assert_eq!(full.0, burst);

    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let op: OpIn = u.arbitrary()?;
        if crate::debug() {
            eprintln!("op: {op:?}");
        }
        let t = Instant::from_nanos(now);
        match op {
            OpIn::Forward(s) => now = now.saturating_add(step_of(s, rate)),
            OpIn::Back(s) => now = now.saturating_sub(step_of(s, rate)),
            OpIn::SetNearMax(back) => now = u64::MAX - back as u64,
            OpIn::SetLow(x) => now = x % (1 << 50),
            OpIn::ToLastReady => now = last_ready,
            OpIn::Try(a) => {
                let n = a.of(burst);
                let before = probe(&bucket, t);
                let peek = bucket.peek_at(n, t);
                let res = bucket.try_acquire_at(n, t);
                assert_eq!(peek.is_ok(), res.is_ok(), "peek and try disagree for n={n}");
                match res {
                    Ok(()) => {
                        assert!(n <= burst);
                        if n > 0 {
                            assert!(n <= before.0, "took {n} with {} available", before.0);
                            log.push(Admission { at: now, tokens: n, queued: false, id: None });
                            replay_exact &= now >= lift_floor;
                            changes.push(Change::Take { n, now });
                        } else {
                            assert_eq!(probe(&bucket, t), before, "n = 0 changed the bucket");
                        }
                    }
                    Err(e) => {
                        assert_eq!(probe(&bucket, t), before, "a refused try wrote something");
                        match e {
                            Error::InsufficientCapacity { requested, capacity } => {
                                assert!(n > burst);
                                assert_eq!((requested, capacity), (n, burst));
                            }
                            Error::RateLimited(refusal) => {
                                let ready_at = refusal.ready_at();
                                assert!(n <= burst && n > 0);
                                assert!(n > before.0, "refused {n} with {} available", before.0);
                                let r = ready_at.as_nanos();
                                assert!(r >= now);
                                assert!(r > now || now == u64::MAX, "ready_at {r} == now");
                                if r < u64::MAX {
                                    assert!(
                                        bucket.peek_at(n, ready_at).is_ok(),
                                        "not ready at the ready_at {r} it reported"
                                    );
                                }
                                if r > now {
                                    assert!(
                                        bucket.peek_at(n, Instant::from_nanos(r - 1)).is_err(),
                                        "ready 1 ns before the reported ready_at {r}"
                                    );
                                }
                                last_ready = r;
                            }
                            other => panic!("unexpected error from try_acquire_at: {other:?}"),
                        }
                    }
                }
            }
            OpIn::Reserve(a) | OpIn::ReserveWithin(a, _) => {
                let n = a.of(burst);
                let deadline = match op {
                    OpIn::ReserveWithin(_, w) => Some(now.saturating_add(step_of(w, rate))),
                    _ => None,
                };
                let before = probe(&bucket, t);
                let res = match deadline {
                    None => bucket.reserve_at(n, t),
                    Some(d) => bucket.reserve_within_at(n, t, Duration::from_nanos(d - now)),
                };
                match res {
                    Ok(r) => {
                        assert!(n <= burst);
                        assert_eq!(r.tokens(), n);
                        let ready = r.ready_at().as_nanos();
                        assert!(ready >= now);
                        if let Some(d) = deadline {
                            assert!(ready <= d, "reserved past the deadline");
                        }
                        if ready == now && n > 0 {
                            // Ready at once: exactly when a try would have succeeded.
                            assert!(n <= before.0, "reserved {n} now with {} available", before.0);
                        }
                        if ready > now && n > 0 {
                            assert!(n > before.0, "queued {n} with {} available", before.0);
                        }
                        last_ready = ready;
                        let id = next_id;
                        next_id += 1;
                        if n > 0 {
                            // A queued reservation ready only at the end of the clock's range
                            // never runs: it is not an admission.
                            if ready < u64::MAX || ready == now {
                                log.push(Admission {
                                    at: ready,
                                    tokens: n,
                                    queued: ready > now,
                                    id: Some(id),
                                });
                            }
                            changes.push(Change::Reserve { n, now, id, exposed: false });
                            replay_exact &= now >= lift_floor;
                        } else {
                            assert_eq!(probe(&bucket, t), before, "reserving 0 changed the bucket");
                        }
                        live.push(Live { id, res: r, made: now });
                    }
                    Err(e) => {
                        assert_eq!(probe(&bucket, t), before, "a refused reserve wrote something");
                        match e {
                            Error::InsufficientCapacity { requested, capacity } => {
                                assert!(n > burst);
                                assert_eq!((requested, capacity), (n, burst));
                            }
                            Error::MaxWaitExceeded { ready_at } => {
                                assert!(n <= burst);
                                // Refused for the deadline, or (also without one) for
                                // the 2^62-unit horizon of queued reservations.
                                assert!(ready_at.as_nanos() >= now);
                                last_ready = ready_at.as_nanos();
                            }
                            other => panic!("unexpected error from reserve: {other:?}"),
                        }
                    }
                }
            }
            OpIn::CancelLast | OpIn::CancelAny(_) => {
                if live.is_empty() {
                    continue;
                }
                let i = match op {
                    OpIn::CancelAny(k) => k as usize % live.len(),
                    _ => live.len() - 1,
                };
                let Live { id, res, made } = live.remove(i);
                let n = res.tokens();
                let (top, exposed) = match changes.last() {
                    Some(Change::Reserve { id: top, exposed, .. }) => (*top == id, *exposed),
                    _ => (false, false),
                };
                let before = probe(&bucket, t);
                let ok = bucket.cancel(res);
                // Undoing the latest change is exact, except that undoing a reservation made
                // while the bucket was (partly) full restores `max(tat, clock)`, not `tat`:
                // the reservation below it then no longer matches and stays spent. Harmless:
                // its tokens had refilled by then anyway.
                if n == 0 || (top && !exposed) {
                    assert!(ok, "cancel of the latest reservation {id} ({n} tokens) refused");
                }
                if !top && n > 0 {
                    assert!(
                        !ok,
                        "cancel of reservation {id} moved later changes {:?}",
                        changes.last()
                    );
                }
                if !ok {
                    assert_eq!(probe(&bucket, t), before, "a refused cancel wrote something");
                }
                if ok && n > 0 {
                    changes.pop();
                    if let Some(Change::Reserve { exposed, .. }) = changes.last_mut() {
                        *exposed = true;
                    }
                    log.retain(|a| a.id != Some(id));
                    // The bucket must now be exactly the one that never saw the reservation.
                    let replay = TokenBucket::try_new(rate, burst).expect("same config");
                    for c in &changes {
                        match *c {
                            Change::Take { n, now } => replay
                                .try_acquire_at(n, Instant::from_nanos(now))
                                .expect("replayed take"),
                            Change::Reserve { n, now, .. } => {
                                let _ = replay
                                    .reserve_at(n, Instant::from_nanos(now))
                                    .expect("replayed reservation");
                            }
                        }
                    }
                    // Probed from the instant the reservation was made on: undoing it leaves
                    // the theoretical arrival time at least the token clock of that instant
                    // (`max(tat, clock) + n - n`), which only matters to a clock that has
                    // since stepped back before it, and only makes the bucket stricter there.
                    // Every earlier exact cancel did the same, hence the high-water mark. A
                    // change made (on a stepped-back clock) before that mark carries the
                    // difference forward: from then on the replay is no reference.
                    lift_floor = lift_floor.max(made);
                    if !replay_exact {
                        continue;
                    }
                    for probe_at in [now, last_ready, now.saturating_add(1 << 40)] {
                        let at = Instant::from_nanos(probe_at.max(lift_floor));
                        assert_eq!(
                            probe(&bucket, at),
                            probe(&replay, at),
                            "cancel did not restore the bucket (probe at {probe_at})"
                        );
                    }
                }
            }
            OpIn::Peek(a) => {
                let n = a.of(burst);
                let avail = bucket.available_at(t);
                assert!(avail <= burst);
                match bucket.peek_at(n, t) {
                    Ok(()) => assert!(n <= avail || n == 0, "peek ok for {n} > available {avail}"),
                    Err(Error::InsufficientCapacity { .. }) => assert!(n > burst),
                    Err(Error::RateLimited(refusal)) => {
                        let ready_at = refusal.ready_at();
                        assert!(n > avail && n <= burst);
                        assert!(ready_at.as_nanos() >= now);
                    }
                    Err(other) => panic!("unexpected error from peek_at: {other:?}"),
                }
            }
            OpIn::Available => {
                let avail = bucket.available_at(t);
                assert!(avail <= burst);
                // Availability never decreases as time goes on (nothing taken meanwhile).
                let later = bucket.available_at(Instant::from_nanos(now.saturating_add(1 << 30)));
                assert!(later >= avail);
            }
        }
    }
    check_rate_bound(&log, rate, burst, bits);
    Ok(())
}

/// `admitted ≤ burst + count·d/period + 2/2^bits` over every interval `[a, b]` of the log,
/// multiplied through by `period·2^bits`.
fn check_rate_bound(log: &[Admission], rate: Rate, burst: u64, bits: u32) {
    let mut by_time: Vec<(u64, u64, bool)> =
        log.iter().map(|a| (a.at, a.tokens, a.queued)).collect();
    by_time.sort_unstable();
    // Merge equal instants: an interval includes every admission at its ends.
    let mut times: Vec<u64> = Vec::new();
    let mut tokens: Vec<u128> = vec![0];
    let mut queued: Vec<u32> = vec![0];
    for (at, n, q) in by_time {
        if times.last() != Some(&at) {
            times.push(at);
            tokens.push(*tokens.last().unwrap());
            queued.push(*queued.last().unwrap());
        }
        *tokens.last_mut().unwrap() += n as u128;
        *queued.last_mut().unwrap() += u32::from(q);
    }
    let period = rate.period().as_nanos() as u64; // saturated at u64::MAX like the bucket's
    let count = rate.count();
    let slack = U256::from_u128(2 * period as u128);
    for i in 0..times.len() {
        for j in i..times.len() {
            let sum = tokens[j + 1] - tokens[i];
            if sum <= burst as u128 {
                continue;
            }
            let rounding = u128::from(queued[j + 1] > queued[i]);
            let d = (times[j] - times[i]) as u128 + rounding;
            let lhs = U256::from_u128(sum - burst as u128).mul_u64(period).shl(bits);
            let rhs = U256::from_u128(d).mul_u64(count).shl(bits).add(slack);
            assert!(
                lhs <= rhs,
                "{sum} tokens admitted in [{}, {}] ns: more than burst {burst} + {count}/{period} ns · \
                 {d} ns + 2^(1-{bits})",
                times[i],
                times[j],
            );
        }
    }
}
