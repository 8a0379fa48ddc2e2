//! Property tests of [`TokenBucket`] against a naive reference: an admission log checked
//! interval by interval with exact integer arithmetic.
//!
//! Each case builds a bucket from a random rate (1 to 10^9 per 1 ns to 1 day, plus the edge
//! rates one per day and `u32::MAX` per second) and burst, then runs a random sequence of clock
//! moves (forwards, backwards, to the ends of the `u64` range) and operations (try, reserve,
//! cancel the last reservation, peek, availability). After every step it checks:
//!
//! - **rate bound**: over any interval `[a, b]` of the admission log, admitted tokens
//!   ≤ burst + rate·(b − a) + 2^(1 − fractional_bits) (exact: everything is scaled by
//!   `period · 2^bits` and compared as `u128`, no floating point);
//! - **exact ready instants**: a refused `try_acquire` reports `ready_at` such that a peek one
//!   nanosecond earlier fails and a try at `ready_at` succeeds;
//! - **exact cancel**: cancelling the most recent reservation succeeds iff nothing was taken
//!   after it, and then restores exactly the availability seen before it was made;
//! - **no panic** for any input: `n = 0`, `n > burst`, `n = u64::MAX`, a clock that steps
//!   backwards, instants near `u64::MAX`.
#![cfg(not(miri))]

use core::time::Duration;

use proptest::prelude::*;
use tollgate::bucket::Reservation;
use tollgate::{Error, Instant, Rate, TokenBucket};

const DAY_NANOS: u64 = 86_400 * 1_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    /// Move the clock forward (saturating at `u64::MAX`).
    Advance(u64),
    /// Move the clock backward (saturating at 0).
    StepBack(u64),
    /// Jump to an absolute instant (used for the ends of the range).
    Set(u64),
    /// `try_acquire_at(n, now)`; on refusal with `follow`, check `ready_at` and go there.
    Try { n: u64, follow: bool },
    /// `reserve_at(n, now)`.
    Reserve(u64),
    /// Cancel the most recent reservation, if it has not been cancelled yet.
    CancelLast,
    /// `peek_at(n, now)` and `available_at(now)`.
    Peek(u64),
}

fn rate_strategy() -> impl Strategy<Value = Rate> {
    prop_oneof![
        // Buckets refuse more than 8 tokens per nanosecond; stay within that.
        6 => (1u64..=1_000_000_000, 1u64..=DAY_NANOS).prop_map(|(count, period)| {
            Rate::new(count.min(8 * period), Duration::from_nanos(period))
        }),
        // Slow rates with round periods, where the fixed point has the most fractional bits.
        2 => (1u64..=1_000, prop::sample::select(vec![1_000_000_000u64, 60_000_000_000, DAY_NANOS]))
            .prop_map(|(count, period)| Rate::new(count, Duration::from_nanos(period))),
        1 => Just(Rate::per_day(1)),
        1 => Just(Rate::per_second(u32::MAX)),
        1 => Just(Rate::per_second(1_000_000_000)),
    ]
}

fn burst_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 1u64..=16,
        3 => 1u64..=100_000,
        1 => 1u64..=(1 << 40),
    ]
}

/// Token counts: mostly small, sometimes the whole burst, above it, 0 or `u64::MAX`.
/// Values are relative to the burst (`burst_fraction` in thousandths) so they fit any bucket.
#[derive(Debug, Clone, Copy)]
enum Amount {
    Small(u64),
    OfBurst(u64),
    Exact(u64),
}

fn amount_strategy() -> impl Strategy<Value = Amount> {
    prop_oneof![
        8 => (0u64..=4).prop_map(Amount::Small),
        4 => (0u64..=1_000).prop_map(Amount::OfBurst),
        1 => Just(Amount::OfBurst(1_001)), // just above the burst
        1 => Just(Amount::Exact(0)),
        1 => Just(Amount::Exact(u64::MAX)),
        1 => any::<u64>().prop_map(Amount::Exact),
    ]
}

impl Amount {
    fn resolve(self, burst: u64) -> u64 {
        match self {
            Amount::Small(n) => n,
            Amount::OfBurst(1_001) => burst + 1,
            Amount::OfBurst(per_mille) => (burst as u128 * per_mille as u128 / 1_000).max(1) as u64,
            Amount::Exact(n) => n,
        }
    }
}

/// Clock moves in nanoseconds, or in whole periods of the rate (`Periods`), so both the
/// sub-token and the many-token scales are exercised whatever the rate.
#[derive(Debug, Clone, Copy)]
enum Step {
    Nanos(u64),
    Periods { num: u64, den: u64 },
}

impl Step {
    fn resolve(self, rate: Rate) -> u64 {
        match self {
            Step::Nanos(n) => n,
            Step::Periods { num, den } => {
                let p = rate.period().as_nanos();
                (p * num as u128 / (den as u128 * rate.count() as u128)).min(u64::MAX as u128)
                    as u64
            }
        }
    }
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u64..=1_000).prop_map(Step::Nanos),
        1 => any::<u64>().prop_map(Step::Nanos),
        // `num/den` token intervals: fractions of one token up to a few bursts' worth.
        6 => (0u64..=64, 1u64..=8).prop_map(|(num, den)| Step::Periods { num, den }),
    ]
}

#[derive(Debug, Clone)]
enum RawOp {
    Advance(Step),
    StepBack(Step),
    SetNearMax(u64),
    SetLow(u64),
    Try(Amount, bool),
    Reserve(Amount),
    CancelLast,
    Peek(Amount),
}

fn raw_op_strategy() -> impl Strategy<Value = RawOp> {
    prop_oneof![
        8 => step_strategy().prop_map(RawOp::Advance),
        1 => step_strategy().prop_map(RawOp::StepBack),
        1 => (0u64..=1_000_000).prop_map(RawOp::SetNearMax),
        1 => (0u64..=1_000_000_000).prop_map(RawOp::SetLow),
        8 => (amount_strategy(), any::<bool>()).prop_map(|(a, f)| RawOp::Try(a, f)),
        4 => amount_strategy().prop_map(RawOp::Reserve),
        2 => Just(RawOp::CancelLast),
        2 => amount_strategy().prop_map(RawOp::Peek),
    ]
}

fn resolve_ops(raw: &[RawOp], rate: Rate, burst: u64) -> Vec<Op> {
    raw.iter()
        .map(|op| match *op {
            RawOp::Advance(s) => Op::Advance(s.resolve(rate)),
            RawOp::StepBack(s) => Op::StepBack(s.resolve(rate)),
            RawOp::SetNearMax(back) => Op::Set(u64::MAX - back),
            RawOp::SetLow(t) => Op::Set(t),
            RawOp::Try(a, follow) => Op::Try { n: a.resolve(burst), follow },
            RawOp::Reserve(a) => Op::Reserve(a.resolve(burst)),
            RawOp::CancelLast => Op::CancelLast,
            RawOp::Peek(a) => Op::Peek(a.resolve(burst)),
        })
        .collect()
}

/// One admission: the instant its holder may proceed, how many tokens, and whether it was a
/// reservation queued for later (`ready_at > now`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Admission {
    at: u64,
    tokens: u64,
    queued: bool,
}

/// The naive reference: every admission so far.
#[derive(Debug, Default)]
struct Log {
    entries: Vec<Admission>,
}

impl Log {
    /// Checks the rate bound over every interval `[a, b]` whose ends are admission instants,
    /// exactly: `sum ≤ burst + count·d/period + 2/2^bits`, multiplied through by
    /// `period·2^bits`, where `d = b − a`.
    ///
    /// If the interval holds a queued reservation, `d = b − a + 1 ns`: its `ready_at` is the
    /// exact GCRA instant rounded *up* to a whole nanosecond, so its tokens were due up to 1 ns
    /// before `a`. That is invisible for rates below one token per nanosecond (`rate·1 ns` is
    /// below the fixed-point slack), but at `u32::MAX` per second two queued reservations can
    /// share a nanosecond that holds `burst + 4` tokens' worth of GCRA time.
    fn check_rate_bound(&self, rate: Rate, burst: u64, bits: u32) -> Result<(), TestCaseError> {
        let mut by_time = self.entries.clone();
        by_time.sort_unstable();
        // Merge equal instants: an interval includes every admission at its ends.
        let mut times: Vec<u64> = Vec::new();
        let mut tokens: Vec<u128> = vec![0];
        let mut queued: Vec<u32> = vec![0];
        for e in by_time {
            if times.last() != Some(&e.at) {
                times.push(e.at);
                tokens.push(*tokens.last().unwrap());
                queued.push(*queued.last().unwrap());
            }
            *tokens.last_mut().unwrap() += e.tokens as u128;
            *queued.last_mut().unwrap() += u32::from(e.queued);
        }
        let period = rate.period().as_nanos();
        let count = rate.count() as u128;
        let scale = 1u128 << bits;
        for i in 0..times.len() {
            for j in i..times.len() {
                let sum = tokens[j + 1] - tokens[i];
                if sum <= burst as u128 {
                    continue;
                }
                let rounding = u128::from(queued[j + 1] > queued[i]);
                let d = (times[j] - times[i]) as u128 + rounding;
                // Bucket invariants keep these within u128: count·2^bits ≤ period/8 (or
                // bits = 0), period < 2^47 and burst·2^bits < 2^61; checked anyway.
                let lhs =
                    (sum - burst as u128).checked_mul(period).and_then(|x| x.checked_mul(scale));
                let rhs = count
                    .checked_mul(scale)
                    .and_then(|x| x.checked_mul(d))
                    .and_then(|x| x.checked_add(2 * period));
                let (Some(lhs), Some(rhs)) = (lhs, rhs) else {
                    return Err(TestCaseError::fail("reference arithmetic overflowed u128"));
                };
                prop_assert!(
                    lhs <= rhs,
                    "{sum} tokens admitted in [{}, {}] ns: more than burst {burst} + {rate:?}·{d} ns \
                     + 2^(1-{bits})",
                    times[i],
                    times[j],
                );
            }
        }
        Ok(())
    }
}

/// Availability as seen at `t`, precisely enough to tell two bucket states apart: whole tokens
/// available, and when one token and the whole burst become available.
type Probe = (u64, Result<(), Error>, Result<(), Error>);

fn probe(bucket: &TokenBucket, t: Instant) -> Probe {
    (bucket.available_at(t), bucket.peek_at(1, t), bucket.peek_at(bucket.burst(), t))
}

/// Instants at which availability is compared before a reservation and after its cancel:
/// the reservation instant and a few token intervals after it.
fn probe_times(rate: Rate, at: u64) -> [Instant; 4] {
    let token = Step::Periods { num: 1, den: 1 }.resolve(rate);
    let half = Step::Periods { num: 1, den: 2 }.resolve(rate);
    [
        Instant::from_nanos(at),
        Instant::from_nanos(at.saturating_add(half)),
        Instant::from_nanos(at.saturating_add(token)),
        Instant::from_nanos(at.saturating_add(token.saturating_mul(3))),
    ]
}

struct Pending {
    reservation: Reservation,
    /// Index of its entry in the log (removed if the cancel succeeds).
    log_index: usize,
    /// Whether any tokens were taken or reserved after it (then cancel must fail).
    superseded: bool,
    before: Vec<Probe>,
    probe_at: [Instant; 4],
}

fn run(rate: Rate, burst: u64, start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let bucket = TokenBucket::new(rate, burst);
    let bits = bucket.fractional_bits();
    let mut now = start;
    // The latest instant the bucket has been shown: earlier ones mean the clock stepped back.
    let mut latest = start;
    let mut log = Log::default();
    let mut pending: Option<Pending> = None;
    // Something was taken: any pending reservation is no longer the most recent.
    let took = |pending: &mut Option<Pending>| {
        if let Some(p) = pending {
            p.superseded = true;
        }
    };

    for op in ops {
        latest = latest.max(now);
        match *op {
            Op::Advance(d) => now = now.saturating_add(d),
            Op::StepBack(d) => now = now.saturating_sub(d),
            Op::Set(t) => now = t,
            Op::Try { n, follow } => match bucket.try_acquire_at(n, Instant::from_nanos(now)) {
                Ok(()) => {
                    prop_assert!(n <= burst);
                    if n > 0 {
                        log.entries.push(Admission { at: now, tokens: n, queued: false });
                        took(&mut pending);
                    }
                }
                Err(Error::InsufficientCapacity { requested, capacity }) => {
                    prop_assert!(n > burst);
                    prop_assert_eq!((requested, capacity), (n, burst));
                }
                Err(Error::RateLimited(refusal)) => {
                    let ready_at = refusal.ready_at();
                    prop_assert!(n > 0 && n <= burst);
                    // `Instant::MAX` doubles as "not within the clock's range".
                    prop_assert!(
                        ready_at.as_nanos() > now || ready_at == Instant::MAX,
                        "ready_at {ready_at:?} <= now {now}"
                    );
                    // `Instant::MAX` means "not within the clock's range": nothing to follow.
                    if follow && ready_at != Instant::MAX {
                        let before = Instant::from_nanos(ready_at.as_nanos() - 1);
                        prop_assert!(
                            bucket.peek_at(n, before).is_err(),
                            "peek of {n} succeeded 1 ns before the reported {ready_at:?}"
                        );
                        prop_assert_eq!(
                            bucket.try_acquire_at(n, ready_at),
                            Ok(()),
                            "try of {} failed at the reported {:?}",
                            n,
                            ready_at
                        );
                        now = ready_at.as_nanos();
                        log.entries.push(Admission { at: now, tokens: n, queued: false });
                        took(&mut pending);
                    }
                }
                Err(e) => prop_assert!(false, "unexpected error from try_acquire: {e:?}"),
            },
            Op::Reserve(n) => {
                let at = Instant::from_nanos(now);
                let probe_at = probe_times(rate, now);
                let before: Vec<_> = probe_at.iter().map(|&t| probe(&bucket, t)).collect();
                match bucket.reserve_at(n, at) {
                    Ok(r) => {
                        prop_assert!(n <= burst);
                        prop_assert_eq!(r.tokens(), n);
                        prop_assert!(r.ready_at() >= at);
                        if n > 0 {
                            took(&mut pending);
                        }
                        // A holder whose instant is past the clock's range never proceeds.
                        let log_index = log.entries.len();
                        if n > 0 && r.ready_at() != Instant::MAX {
                            log.entries.push(Admission {
                                at: r.ready_at().as_nanos(),
                                tokens: n,
                                queued: r.ready_at() > at,
                            });
                        }
                        pending = Some(Pending {
                            reservation: r,
                            log_index,
                            superseded: false,
                            before,
                            probe_at,
                        });
                    }
                    Err(Error::InsufficientCapacity { requested, capacity }) => {
                        prop_assert!(n > burst);
                        prop_assert_eq!((requested, capacity), (n, burst));
                    }
                    // The queue reaches past the horizon (2^62 token units): refused whole.
                    Err(Error::MaxWaitExceeded { .. }) => {
                        prop_assert!(n <= burst);
                        // Even `n == 0` is refused when the clock stepped back so far that the
                        // bucket's lead over it passes the horizon (`reserve_before_at` checks the
                        // horizon before the `cost == 0` shortcut). Never on a forward clock.
                        prop_assert!(n > 0 || now < latest, "reserve(0) refused at {now}");
                        let after: Vec<_> = probe_at.iter().map(|&t| probe(&bucket, t)).collect();
                        prop_assert_eq!(&before, &after, "a refused reserve changed the bucket");
                    }
                    Err(e) => prop_assert!(false, "unexpected error from reserve: {e:?}"),
                }
            }
            Op::CancelLast => {
                if let Some(p) = pending.take() {
                    let tokens = p.reservation.tokens();
                    let logged = tokens > 0 && p.reservation.ready_at() != Instant::MAX;
                    let undone = bucket.cancel(p.reservation);
                    prop_assert_eq!(
                        undone,
                        tokens == 0 || !p.superseded,
                        "cancel of the most recent reservation (superseded: {})",
                        p.superseded
                    );
                    // A zero-token reservation holds nothing: "undoing" it after others took
                    // tokens restores nothing either.
                    if undone && !p.superseded {
                        let after: Vec<_> = p.probe_at.iter().map(|&t| probe(&bucket, t)).collect();
                        prop_assert_eq!(&p.before, &after, "cancel did not restore availability");
                        if logged {
                            log.entries.remove(p.log_index);
                        }
                    }
                }
            }
            Op::Peek(n) => {
                let at = Instant::from_nanos(now);
                let available = bucket.available_at(at);
                prop_assert!(available <= burst);
                match bucket.peek_at(n, at) {
                    Ok(()) => prop_assert!(n <= burst),
                    Err(Error::InsufficientCapacity { .. }) => prop_assert!(n > burst),
                    Err(Error::RateLimited(refusal)) => {
                        let ready_at = refusal.ready_at();
                        prop_assert!(n > 0 && n <= burst);
                        prop_assert!(ready_at.as_nanos() > now || ready_at == Instant::MAX);
                    }
                    Err(e) => prop_assert!(false, "unexpected error from peek: {e:?}"),
                }
                // Peek and try agree with availability in whole tokens.
                if n <= available {
                    prop_assert_eq!(bucket.peek_at(n, at), Ok(()));
                }
            }
        }
        log.check_rate_bound(rate, burst, bits)?;
    }
    Ok(())
}

fn start_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..=1_000_000_000_000,
        1 => (0u64..=1_000_000).prop_map(|back| u64::MAX - back),
        1 => any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        // A few seconds by default; `PROPTEST_CASES=100000` for a soak.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(384),
        // Shrunk failures are kept next to this file and replayed first.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn bucket_matches_the_reference(
        rate in rate_strategy(),
        burst in burst_strategy(),
        start in start_strategy(),
        raw in prop::collection::vec(raw_op_strategy(), 1..120),
    ) {
        // Bursts at or above 2^61 token units are refused at construction (unit tested).
        let burst = burst.min((1 << 40) - 1);
        let ops = resolve_ops(&raw, rate, burst);
        run(rate, burst, start, &ops)?;
    }
}

/// Deterministic cases for the edges named in the issue, kept out of the random search so
/// they always run.
#[test]
fn edge_rates_at_the_ends_of_the_clock() {
    let rates =
        [Rate::per_day(1), Rate::per_second(u32::MAX), Rate::new(1, Duration::from_nanos(1))];
    for rate in rates {
        for burst in [1, 2, rate.default_burst().min(1 << 32)] {
            for start in [0, 1, u64::MAX / 2, u64::MAX - 1_000, u64::MAX - 1, u64::MAX] {
                let ops = [
                    Op::Try { n: 0, follow: true },
                    Op::Try { n: burst, follow: true },
                    Op::Try { n: 1, follow: true },
                    Op::Reserve(burst),
                    Op::Reserve(1),
                    Op::CancelLast,
                    Op::Peek(u64::MAX),
                    Op::Try { n: u64::MAX, follow: true },
                    Op::Reserve(u64::MAX),
                    Op::StepBack(u64::MAX),
                    Op::Try { n: 1, follow: true },
                    Op::Set(u64::MAX),
                    Op::Try { n: 1, follow: true },
                    Op::Reserve(burst),
                    Op::CancelLast,
                    Op::Advance(u64::MAX),
                    Op::Peek(1),
                ];
                if let Err(e) = run(rate, burst, start, &ops) {
                    panic!("{rate:?} burst {burst} start {start}: {e}");
                }
            }
        }
    }
}
