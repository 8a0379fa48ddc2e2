//! Property tests of `SlidingWindow` against a naive sliding log of every admission.
//!
//! The log answers the exact questions ("how much was admitted in (t - W, t]?", "when would
//! `n` more fit?"); the window must never admit more than the log allows (safety) and never
//! make a request wait a whole slot longer than the log would (liveness).
#![cfg(not(miri))] // proptest is far too slow under miri; the unit tests cover miri.

use core::time::Duration;

use proptest::prelude::*;
use tollgate::window::SlotId;
use tollgate::{Error, Instant, Refusal, SlidingWindow};

#[derive(Debug, Clone)]
enum Op {
    /// Move the caller's clock forward by `dt` ns (or back, when `back`), then try to add `n`.
    TryAdd { dt: u64, back: bool, n: u64 },
    /// Add `n` unconditionally (a settle that exceeded its estimate).
    Force { dt: u64, n: u64 },
    /// Settle the `pick`-th logged admission to an amount derived from `to`.
    Adjust { dt: u64, pick: usize, to: u64 },
}

#[derive(Debug)]
struct Entry {
    t: u64,
    amount: u64,
    slot: SlotId,
}

/// The reference: every admission with its time, kept in time order.
struct Log {
    window: u64,
    limit: u64,
    entries: Vec<Entry>,
}

impl Log {
    /// Index of the first entry inside (t - W, t].
    fn recent(&self, t: u64) -> usize {
        self.entries.partition_point(|e| e.t + self.window <= t)
    }

    /// Exact sliding sum over (t - W, t]; every entry is at or before the latest instant.
    fn sum_in(&self, t: u64) -> u64 {
        self.entries[self.recent(t)..].iter().map(|e| e.amount).sum()
    }

    /// Sum of the entries at or after `from`.
    fn sum_since(&self, from: u64) -> u64 {
        self.entries.iter().filter(|e| e.t >= from).map(|e| e.amount).sum()
    }

    /// The exact earliest instant >= `now` at which `n` more fit if nothing else is added.
    fn earliest(&self, n: u64, now: u64) -> u64 {
        let recent = &self.entries[self.recent(now)..];
        let mut left: u64 = recent.iter().map(|e| e.amount).sum();
        if left + n <= self.limit {
            return now;
        }
        // The window sum only drops when an entry leaves, at its time + W.
        for (i, e) in recent.iter().enumerate() {
            left -= e.amount;
            let last_at_this_time = recent.get(i + 1).is_none_or(|next| next.t != e.t);
            if last_at_this_time && left + n <= self.limit {
                return e.t + self.window;
            }
        }
        unreachable!("n <= limit fits in an empty window")
    }
}

fn run<const SLOTS: usize>(
    window: u64,
    limit: u64,
    start: u64,
    overcharge: bool,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut w: SlidingWindow<SLOTS> = SlidingWindow::new(Duration::from_nanos(window), limit);
    let s = w.slot_length().as_nanos() as u64;
    prop_assert!(s as u128 * (SLOTS as u128 - 1) >= window as u128);
    let mut log = Log { window, limit, entries: Vec::new() };
    let mut clock = start;
    let mut latest = 0u64;

    for op in ops {
        let dt = match *op {
            Op::TryAdd { dt, .. } | Op::Force { dt, .. } | Op::Adjust { dt, .. } => dt,
        };
        clock = match *op {
            Op::TryAdd { back: true, .. } => clock.saturating_sub(dt),
            _ => clock + dt,
        };
        let now = Instant::from_nanos(clock);
        // The window treats an earlier `now` as the latest seen; so does the log.
        latest = latest.max(clock);
        let eff = latest;

        match *op {
            Op::TryAdd { n, .. } => {
                if n > limit {
                    let e = Error::InsufficientCapacity { requested: n, capacity: limit };
                    prop_assert_eq!(w.earliest_fit_at(n, now), Err(e));
                    prop_assert_eq!(w.try_add_at(n, now), Err(e));
                    continue;
                }
                let naive = log.earliest(n, eff);
                let fit = w.earliest_fit_at(n, now).unwrap().as_nanos();
                // Safety: never earlier than the exact log allows.
                prop_assert!(fit >= naive, "fit {} before naive {}", fit, naive);
                // Liveness: less than one slot later than the exact log.
                prop_assert!(fit < naive + s, "fit {} vs naive {} (slot {})", fit, naive, s);
                // Exactness for the conservative rule.
                prop_assert!(w.clone().fits_at(n, Instant::from_nanos(fit)));
                if fit > eff {
                    prop_assert!(!w.clone().fits_at(n, Instant::from_nanos(fit - 1)));
                }
                match w.try_add_at(n, now) {
                    Ok(slot) => {
                        prop_assert_eq!(fit, eff);
                        // Invariant at admission: what the window holds, plus n, fits.
                        prop_assert!(log.sum_in(eff) + n <= limit);
                        log.entries.push(Entry { t: eff, amount: n, slot });
                    }
                    Err(err) => {
                        prop_assert!(fit > eff);
                        prop_assert_eq!(
                            err,
                            Error::RateLimited(Refusal::at(Instant::from_nanos(fit)))
                        );
                    }
                }
            }
            Op::Force { n, .. } => {
                let slot = w.add_at(n, now);
                log.entries.push(Entry { t: eff, amount: n, slot });
            }
            Op::Adjust { pick, to, .. } => {
                // With nothing logged yet, the used-count check below still moves the clock.
                if !log.entries.is_empty() {
                    let i = pick % log.entries.len();
                    let from = log.entries[i].amount;
                    let to = if overcharge { to % (2 * limit + 1) } else { to % (from + 1) };
                    w.adjust_at(log.entries[i].slot, from, to, now);
                    log.entries[i].amount = to;
                }
            }
        }

        // The conservative count holds everything in the true window, and nothing older
        // than one slot before it.
        let used = w.used_at(now);
        let exact = log.sum_in(eff);
        let upper = log.sum_since((eff + 2).saturating_sub(window + s));
        prop_assert!(exact <= used && used <= upper, "{} <= {} <= {}", exact, used, upper);
    }

    // Without over-charges, no half-open window [t, t + W) ever held more than the limit.
    if !overcharge {
        for (i, first) in log.entries.iter().enumerate() {
            let held: u64 = log.entries[i..]
                .iter()
                .take_while(|e| e.t < first.t + window)
                .map(|e| e.amount)
                .sum();
            prop_assert!(held <= limit, "[{}, +{}) held {} > {}", first.t, window, held, limit);
        }
    }
    Ok(())
}

/// Mostly small steps around the slot length, sometimes exact boundaries, sometimes huge jumps.
fn step(window: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0..=window / 4 + 1,
        3 => 0..=2 * window,
        1 => Just(window),
        1 => 0..=1_000_000 * window,
    ]
}

fn ops(window: u64, limit: u64, overcharge: bool) -> impl Strategy<Value = Vec<Op>> {
    let try_add = (step(window), prop::bool::weighted(0.1), 0..=limit + 1)
        .prop_map(|(dt, back, n)| Op::TryAdd { dt, back, n });
    let force = (step(window), 0..=limit).prop_map(|(dt, n)| Op::Force { dt, n });
    let adjust = (step(window), any::<usize>(), any::<u64>())
        .prop_map(|(dt, pick, to)| Op::Adjust { dt, pick, to });
    let force_weight = if overcharge { 1 } else { 0 };
    prop::collection::vec(prop_oneof![8 => try_add, force_weight => force, 2 => adjust], 1..80)
}

/// Any instant, often at the very end of the clock.
fn instant() -> impl Strategy<Value = u64> {
    prop_oneof![3 => any::<u64>(), 1 => Just(u64::MAX), 1 => u64::MAX - 100..=u64::MAX]
}

/// (window ns, limit, start instant, overcharge, ops)
fn case() -> impl Strategy<Value = (u64, u64, u64, bool, Vec<Op>)> {
    (1..=3_000u64, 1..=12u64, 0..=1_000_000_000_000u64, any::<bool>()).prop_flat_map(
        |(window, limit, start, overcharge)| {
            (
                Just(window),
                Just(limit),
                Just(start),
                Just(overcharge),
                ops(window, limit, overcharge),
            )
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Shrunk failures are kept next to this file and replayed first.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn two_slots_match_the_log((window, limit, start, over, ops) in case()) {
        run::<2>(window, limit, start, over, &ops)?;
    }

    #[test]
    fn seven_slots_match_the_log((window, limit, start, over, ops) in case()) {
        run::<7>(window, limit, start, over, &ops)?;
    }

    #[test]
    fn sixty_slots_match_the_log((window, limit, start, over, ops) in case()) {
        run::<60>(window, limit, start, over, &ops)?;
    }

    /// Arbitrary instants (up to `Instant::MAX`), amounts and window lengths never panic,
    /// nor do adjusts with nonsensical amounts.
    #[test]
    fn adjust_never_panics(
        window in prop_oneof![Just(1u64), Just(4), Just(1_000_000_000), 1..=u64::MAX],
        steps in prop::collection::vec((instant(), any::<u64>(), any::<u64>(), 0..3u8), 1..50),
    ) {
        // Windows of at most 4 ns give one-nanosecond slots, whose numbers reach u64::MAX.
        let mut w: SlidingWindow<5> = SlidingWindow::new(Duration::from_nanos(window), 10);
        let mut slots = Vec::new();
        for (t, from, to, kind) in steps {
            let now = Instant::from_nanos(t);
            match kind {
                0 => slots.push(w.add_at(to, now)),
                1 => {
                    if let Ok(slot) = w.try_add_at(to % 12, now) {
                        slots.push(slot);
                    }
                }
                _ => {
                    if let Some(&slot) = slots.get(from as usize % (slots.len() + 1)) {
                        w.adjust_at(slot, from, to, now);
                    }
                }
            }
            let _ = w.used_at(now);
            let _ = w.earliest_fit_at(1, now);
        }
    }
}
