//! `window` target: `SlidingWindow<8>` and `SlidingWindow<61>` with an arbitrary window and
//! limit under try_add / add / adjust / earliest_fit_at / used / set_limit and clock moves
//! (forwards, backwards, by years, to the end of the range).
//!
//! The reference is a log of every charge (at the window's clamped instant, the latest seen)
//! with its current amount. Checked:
//! - never panics, never over/underflows (the harness builds with overflow checks);
//! - `try_add_at(n)` succeeds exactly when `n ≤ limit` and the conservative count plus `n` fits;
//!   after a success the count is `before + n ≤ limit`; a refusal changes no count;
//!   `InsufficientCapacity` exactly when `n > limit`;
//! - the conservative count covers every charge in the true window `(t − W, t]` and nothing
//!   older than one slot before it; in particular, at every `try_add` admission the charges in
//!   the true window plus `n` are ≤ limit (so try_add never lets any true window exceed it);
//! - `earliest_fit_at` / a refusal's `ready_at` is exact (fits there, not 1 ns before) and at most
//!   one slot later than the exact answer from the log;
//! - an `adjust` that changes nothing happens only to a slot whose charges have all left the
//!   true window.
//!
//! Once any count could have saturated at `u64::MAX` (charges summing past it) or an adjust
//! was given a `from` that is not the charge's amount, the log no longer mirrors the counters:
//! the log-based checks stop, the rest go on.

use core::time::Duration;

use crate::AmountIn;
use arbitrary::{Arbitrary, Unstructured};
use tollgate::window::SlotId;
use tollgate::{Error, Instant, SlidingWindow};

use crate::MAX_OPS;

const YEAR: u64 = 365 * 86_400_000_000_000;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum WindowIn {
    Nanos(u8),
    Micros(u16),
    Secs(u16),
    Minute,
    Any(u64),
    Huge { secs: u64, nanos: u32 },
    Max,
    Zero,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum LimitIn {
    Small(u8),
    Medium(u32),
    Any(u64),
    Max,
    Zero,
}

/// A clock step in nanoseconds, slots, windows or years.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum StepIn {
    Nanos(u16),
    Slots { num: u8, den: u8 },
    Windows(u8),
    Years(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum OpIn {
    Forward(StepIn),
    Back(StepIn),
    SetNearMax(u32),
    SetLow(u64),
    ToLastReady,
    TryAdd(AmountIn),
    Add(AmountIn),
    /// Settle a logged charge to a new amount (its current amount as `from`).
    Adjust {
        pick: u16,
        to: AmountIn,
    },
    /// Adjust with arbitrary `from`/`to`: legal, but the log stops mirroring the counters.
    AdjustRaw {
        pick: u16,
        from: u64,
        to: u64,
    },
    EarliestFit(AmountIn),
    Used,
    SetLimit(LimitIn),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The clamped instant it was charged at.
    t: u64,
    amount: u64,
    slot: SlotId,
    /// Its slot has left the window (an adjust of it was ignored): it never counts again.
    gone: bool,
}

/// Runs one window case.
pub fn run_window(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = (|| -> arbitrary::Result<()> {
        let wide: bool = u.arbitrary()?;
        if wide { run::<61>(&mut u) } else { run::<8>(&mut u) }
    })();
}

fn window_of(w: WindowIn) -> Duration {
    match w {
        WindowIn::Nanos(n) => Duration::from_nanos(n as u64),
        WindowIn::Micros(n) => Duration::from_micros(n as u64),
        WindowIn::Secs(n) => Duration::from_secs(n as u64),
        WindowIn::Minute => Duration::from_secs(60),
        WindowIn::Any(n) => Duration::from_nanos(n),
        WindowIn::Huge { secs, nanos } => Duration::new(secs, nanos % 1_000_000_000),
        WindowIn::Max => Duration::MAX,
        WindowIn::Zero => Duration::ZERO,
    }
}

fn limit_of(l: LimitIn) -> u64 {
    match l {
        LimitIn::Small(n) => n as u64,
        LimitIn::Medium(n) => n as u64,
        LimitIn::Any(n) => n,
        LimitIn::Max => u64::MAX,
        LimitIn::Zero => 0,
    }
}

fn step_of(s: StepIn, window: u64, slot: u64) -> u64 {
    match s {
        StepIn::Nanos(n) => n as u64,
        StepIn::Slots { num, den } => {
            (slot as u128 * num as u128 / den.max(1) as u128).min(u64::MAX as u128) as u64
        }
        StepIn::Windows(k) => window.saturating_mul(k as u64 % 8),
        StepIn::Years(y) => (y as u64 % 128) * YEAR,
        StepIn::Any(n) => n,
    }
}

struct Model {
    window: u64,
    slot: u64,
    entries: Vec<Entry>,
    /// The log no longer mirrors the counters (see the module docs).
    lost: bool,
}

impl Model {
    /// Charges in the true window `(latest − W, latest]`.
    fn in_window(&self, latest: u64) -> u128 {
        self.entries
            .iter()
            .filter(|e| !e.gone && e.t as u128 + self.window as u128 > latest as u128)
            .map(|e| e.amount as u128)
            .sum()
    }

    /// Charges the conservative count may still hold: those less than one slot older than
    /// the true window.
    fn may_count(&self, latest: u64) -> u128 {
        self.entries
            .iter()
            .filter(|e| {
                !e.gone && e.t as u128 + self.window as u128 + self.slot as u128 > latest as u128
            })
            .map(|e| e.amount as u128)
            .sum()
    }

    fn update_lost(&mut self) {
        let total: u128 = self.entries.iter().filter(|e| !e.gone).map(|e| e.amount as u128).sum();
        if total > u64::MAX as u128 {
            self.lost = true;
        }
    }

    /// The exact earliest instant `>= latest` at which `n` more fit in the true window, if
    /// nothing else is charged (`None` past the end of the clock).
    fn exact_earliest(&self, n: u64, limit: u64, latest: u64) -> Option<u64> {
        let mut recent: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| !e.gone && e.t as u128 + self.window as u128 > latest as u128)
            .collect();
        recent.sort_by_key(|e| e.t);
        let mut left: u128 = recent.iter().map(|e| e.amount as u128).sum();
        if left + n as u128 <= limit as u128 {
            return Some(latest);
        }
        for (i, e) in recent.iter().enumerate() {
            left -= e.amount as u128;
            let last_at_this_time = recent.get(i + 1).is_none_or(|next| next.t != e.t);
            if last_at_this_time && left + n as u128 <= limit as u128 {
                let at = e.t as u128 + self.window as u128;
                return (at <= u64::MAX as u128).then_some(at as u64);
            }
        }
        unreachable!("n <= limit fits in an empty window")
    }
}

fn run<const SLOTS: usize>(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let window = window_of(u.arbitrary()?);
    let mut limit = limit_of(u.arbitrary()?);
    let mut w = match SlidingWindow::<SLOTS>::try_new(window, limit) {
        Ok(w) => w,
        Err(e) => {
            assert!(window.as_nanos() == 0 || limit == 0, "valid window rejected: {e}");
            return Ok(());
        }
    };
    assert!(window.as_nanos() != 0 && limit != 0);
    let window_nanos = window.as_nanos().min(u64::MAX as u128) as u64;
    assert_eq!(w.window().as_nanos(), window_nanos as u128);
    let slot_nanos = w.slot_length().as_nanos() as u64;
    if crate::debug() {
        eprintln!("window<{SLOTS}>: {window_nanos} ns, limit {limit}, slot {slot_nanos} ns");
    }
    assert_eq!(slot_nanos, window_nanos.div_ceil(SLOTS as u64 - 1));

    let mut m = Model { window: window_nanos, slot: slot_nanos, entries: Vec::new(), lost: false };
    let mut now: u64 = u.arbitrary::<u32>()? as u64;
    let mut latest: u64 = 0;
    let mut last_ready: u64 = now;

    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let op: OpIn = u.arbitrary()?;
        if crate::debug() {
            eprintln!("op: {op:?}");
        }
        match op {
            OpIn::Forward(s) => {
                now = now.saturating_add(step_of(s, window_nanos, slot_nanos));
                continue;
            }
            OpIn::Back(s) => {
                now = now.saturating_sub(step_of(s, window_nanos, slot_nanos));
                continue;
            }
            OpIn::SetNearMax(back) => {
                now = u64::MAX - back as u64;
                continue;
            }
            OpIn::SetLow(x) => {
                now = x % (1 << 50);
                continue;
            }
            OpIn::ToLastReady => {
                now = last_ready;
                continue;
            }
            _ => {}
        }
        let t = Instant::from_nanos(now);
        let before = w.clone().used_at(t);
        latest = latest.max(now);
        match op {
            OpIn::TryAdd(a) => {
                let n = a.of(limit);
                let fits = n <= limit && before <= limit && n <= limit - before;
                let res = w.try_add_at(n, t);
                assert_eq!(res.is_ok(), fits, "try_add({n}) with {before}/{limit} used: {res:?}");
                match res {
                    Ok(slot) => {
                        let used = w.used_at(t);
                        assert_eq!(used, before + n);
                        assert!(used <= limit);
                        if !m.lost {
                            // The true window: what try_add guarantees.
                            let held = m.in_window(latest);
                            assert!(
                                held + n as u128 <= limit as u128,
                                "admitted {n} at {latest} with {held} in the true window, limit {limit}"
                            );
                        }
                        m.entries.push(Entry { t: latest, amount: n, slot, gone: false });
                    }
                    Err(Error::InsufficientCapacity { requested, capacity }) => {
                        assert!(n > limit);
                        assert_eq!((requested, capacity), (n, limit));
                        assert_eq!(w.used_at(t), before);
                    }
                    Err(Error::RateLimited(refusal)) => {
                        let ready_at = refusal.ready_at();
                        assert_eq!(w.used_at(t), before, "a refused try_add changed the count");
                        assert_eq!(w.clone().earliest_fit_at(n, t), Ok(ready_at));
                        check_ready::<SLOTS>(&w, &m, n, limit, latest, ready_at.as_nanos());
                        last_ready = ready_at.as_nanos();
                    }
                    Err(other) => panic!("unexpected error from try_add_at: {other:?}"),
                }
            }
            OpIn::Add(a) => {
                let n = a.of(limit);
                let total: u128 =
                    m.entries.iter().filter(|x| !x.gone).map(|x| x.amount as u128).sum();
                if total + n as u128 > u64::MAX as u128 {
                    m.lost = true; // a counter may saturate
                }
                let slot = w.add_at(n, t);
                assert_eq!(w.used_at(t), before.saturating_add(n));
                m.entries.push(Entry { t: latest, amount: n, slot, gone: false });
            }
            OpIn::Adjust { pick, to } => {
                if m.entries.is_empty() {
                    w.used_at(t); // the window has seen `now`, as `latest` says
                    continue;
                }
                let i = pick as usize % m.entries.len();
                let e = m.entries[i];
                let to = to.of(limit);
                let total: u128 =
                    m.entries.iter().filter(|x| !x.gone).map(|x| x.amount as u128).sum();
                if !e.gone && total - e.amount as u128 + to as u128 > u64::MAX as u128 {
                    m.lost = true; // a counter may saturate
                }
                w.adjust_at(e.slot, e.amount, to, t);
                let after = w.used_at(t);
                if !m.lost && !e.gone {
                    let applied = (before as i128) + (to as i128 - e.amount as i128);
                    if after as i128 == applied {
                        m.entries[i].amount = to;
                    } else {
                        assert_eq!(
                            after, before,
                            "adjust {} -> {to} moved the count oddly",
                            e.amount
                        );
                        // Ignored: the slot has left the window, so has every charge in it.
                        for x in m.entries.iter_mut().filter(|x| x.slot == e.slot) {
                            assert!(
                                x.t as u128 + window_nanos as u128 <= latest as u128,
                                "adjust ignored a slot still holding a charge at {} (now {latest})",
                                x.t
                            );
                            x.gone = true;
                        }
                    }
                } else if e.gone {
                    // Its slot left the window for good: the adjust must be ignored.
                    if !m.lost {
                        assert_eq!(after, before, "adjust of a slot that left the window counted");
                    }
                } else {
                    m.entries[i].amount = to;
                }
            }
            OpIn::AdjustRaw { pick, from, to } => {
                if m.entries.is_empty() {
                    w.used_at(t); // the window has seen `now`, as `latest` says
                    continue;
                }
                let e = m.entries[pick as usize % m.entries.len()];
                w.adjust_at(e.slot, from, to, t);
                let after = w.used_at(t);
                if to >= from {
                    assert!(after >= before);
                } else {
                    assert!(after <= before);
                }
                m.lost = true;
            }
            OpIn::EarliestFit(a) => {
                let n = a.of(limit);
                match w.earliest_fit_at(n, t) {
                    Ok(at) => {
                        assert!(n <= limit);
                        let at = at.as_nanos();
                        assert!(at >= latest);
                        let fits_now = w.clone().fits_at(n, t);
                        if fits_now {
                            assert_eq!(at, latest, "fits now, but earliest_fit_at says {at}");
                        } else {
                            check_ready::<SLOTS>(&w, &m, n, limit, latest, at);
                        }
                        last_ready = at;
                    }
                    Err(Error::InsufficientCapacity { .. }) => assert!(n > limit),
                    Err(other) => panic!("unexpected error from earliest_fit_at: {other:?}"),
                }
                assert_eq!(w.used_at(t), before);
            }
            OpIn::Used => {}
            OpIn::SetLimit(l) => {
                let new = limit_of(l);
                match w.set_limit(new) {
                    Ok(()) => {
                        assert!(new > 0);
                        limit = new;
                    }
                    Err(_) => assert_eq!(new, 0),
                }
                assert_eq!(w.limit(), limit);
            }
            _ => unreachable!(),
        }
        m.update_lost();
        // The conservative count covers the true window, and no more than one slot before it.
        let used = w.used_at(t);
        if !m.lost {
            let low = m.in_window(latest);
            let high = m.may_count(latest);
            assert!(
                used as u128 >= low,
                "count {used} below the {low} charged in the true window at {latest}"
            );
            assert!(
                used as u128 <= high,
                "count {used} above the {high} charged within a slot of the window at {latest}"
            );
        }
    }
    Ok(())
}

/// `ready` (> latest) is when `n` more fit: exact, and at most one slot late.
fn check_ready<const SLOTS: usize>(
    w: &SlidingWindow<SLOTS>,
    m: &Model,
    n: u64,
    limit: u64,
    latest: u64,
    ready: u64,
) {
    assert!(ready > latest || ready == u64::MAX, "ready_at {ready} not after {latest}");
    if ready < u64::MAX {
        assert!(w.clone().fits_at(n, Instant::from_nanos(ready)), "{n} does not fit at {ready}");
    }
    if ready - 1 > latest {
        assert!(
            !w.clone().fits_at(n, Instant::from_nanos(ready - 1)),
            "{n} already fits 1 ns before {ready}"
        );
    }
    if let Some(exact) = m.exact_earliest(n, limit, latest).filter(|_| !m.lost) {
        let bound = exact as u128 + m.slot as u128 - 1;
        assert!(
            ready as u128 <= bound,
            "{n} fits only at {ready}, more than a slot ({}) after the exact {exact}",
            m.slot
        );
    }
}
