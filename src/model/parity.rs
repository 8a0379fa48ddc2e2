//! [`check_store_parity`]: runs one seeded random sequence of the rule's operations against
//! two [`StateStore`]s with a moving clock and compares every decision — how a new store
//! (Redis, a database) proves it runs the same rule as [`MemoryStore`](super::MemoryStore).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::estimate::Estimate;
use super::limit::{Counts, Limit, LimitKind};
use super::rule::{Charge, capacity};
use super::store::StateStore;
use crate::Instant;
use crate::time::duration_to_nanos_saturating;

/// What a parity run did, so a test can check it exercised both outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParityReport {
    /// Operations run (each compared).
    pub steps: usize,
    /// Admissions granted (by both stores).
    pub admitted: usize,
    /// Admissions refused (by both stores, with the same `Wait`).
    pub refused: usize,
    /// Charges settled.
    pub settled: usize,
}

/// The first decision on which two stores differed, with the operation and both answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParityMismatch {
    /// The step (0-based) of the sequence that differed.
    pub step: usize,
    /// The operation, e.g. `admit_at(120, 61.000000000s)`.
    pub operation: String,
    /// The first store's answer.
    pub left: String,
    /// The second store's answer.
    pub right: String,
}

impl fmt::Display for ParityMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stores differ at step {}: {} gave {} and {}",
            self.step, self.operation, self.left, self.right
        )
    }
}

impl core::error::Error for ParityMismatch {}

/// splitmix64: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (near enough: modulo bias is irrelevant here).
    fn upto(&mut self, max: u64) -> u64 {
        if max == u64::MAX { self.next() } else { self.next() % (max + 1) }
    }
}

/// Runs `steps` random operations — admit, earliest, settle of an outstanding charge, usage —
/// against two stores built empty for the same `limits`, with a clock that moves by fractions
/// of a slot, by whole windows, now and then backwards and once in a while by a year, and
/// compares every answer. `seed` picks the sequence; the same seed gives the same sequence.
///
/// Estimates stay within the limits' capacity (the limiter refuses larger ones before asking a
/// store). When some limit counts input or output tokens apart, half the admissions and
/// settles go through [`admit_io_at`](StateStore::admit_io_at) and
/// [`settle_io_at`](StateStore::settle_io_at) with the tokens split at random (a store that
/// keeps the trait's default for those, which sees only totals, fails there). Charges are settled with the charge the first store returned, after checking that
/// both returned the same one.
///
/// ```
/// use core::time::Duration;
/// use tollgate::model::{Counts, Limit, MemoryStore, check_store_parity};
/// use tollgate::Rate;
///
/// let limits = [
///     Limit::requests("rpm", 5, Duration::from_secs(60)),
///     Limit::tokens("tpm", 1_000, Duration::from_secs(60)),
///     Limit::bucket("burst", Counts::Tokens, 400, Rate::per_second(20)),
/// ];
/// let (a, b) = (MemoryStore::new(&limits), MemoryStore::new(&limits));
/// let report = check_store_parity(&limits, &a, &b, 7, 2_000)?;
/// assert!(report.admitted > 0 && report.refused > 0);
/// # Ok::<_, tollgate::model::ParityMismatch>(())
/// ```
///
/// # Errors
/// The first [`ParityMismatch`].
pub fn check_store_parity<A: StateStore + ?Sized, B: StateStore + ?Sized>(
    limits: &[Limit],
    a: &A,
    b: &B,
    seed: u64,
    steps: usize,
) -> Result<ParityReport, ParityMismatch> {
    let mut rng = Rng(seed);
    let max_tokens = capacity(limits).map_or(u64::MAX / 4, |(max, _)| max);
    // The clock's grain: the finest slot or emission interval of the limits.
    let grain = limits
        .iter()
        .map(|l| match l.kind {
            LimitKind::Window { window, slots } => {
                duration_to_nanos_saturating(window) / u64::from(slots.max(1))
            }
            LimitKind::Bucket { rate } => rate.period_nanos() / rate.count().max(1),
        })
        .min()
        .unwrap_or(1)
        .max(1);
    let longest = limits
        .iter()
        .map(|l| match l.kind {
            LimitKind::Window { window, .. } => duration_to_nanos_saturating(window),
            LimitKind::Bucket { rate } => rate.period_nanos(),
        })
        .max()
        .unwrap_or(1);
    let io = limits.iter().any(|l| matches!(l.counts, Counts::InputTokens | Counts::OutputTokens));
    let mut now = rng.upto(1 << 50);
    let mut held: Vec<Charge> = Vec::new();
    let mut report = ParityReport::default();
    let (mut used_a, mut used_b) = (Vec::new(), Vec::new());

    for step in 0..steps {
        // Move the clock first; `now` can go back, the stores clamp it.
        now = match rng.upto(99) {
            0..=59 => now.saturating_add(rng.upto(grain.saturating_mul(2))),
            60..=74 => now,
            75..=89 => now.saturating_add(rng.upto(longest)),
            90..=96 => now.saturating_sub(rng.upto(grain.saturating_mul(3))),
            97..=98 => now.saturating_add(longest.saturating_mul(2)),
            _ => now.saturating_add(365 * 86_400_000_000_000),
        };
        let t = Instant::from_nanos(now);
        let tokens = match rng.upto(9) {
            0 => 0,
            1 => max_tokens,
            2..=5 => rng.upto(max_tokens.min(1 << 40) / 8),
            _ => rng.upto(max_tokens),
        };
        report.steps += 1;
        let mismatch = |operation: String, left: String, right: String| ParityMismatch {
            step,
            operation,
            left,
            right,
        };
        match rng.upto(9) {
            0..=4 => {
                let (x, y, op) = if io && rng.upto(1) == 0 {
                    let input = rng.upto(tokens);
                    let e = Estimate { input, output: tokens - input };
                    let op = format!("admit_io_at({e:?}, {t:?})");
                    (a.admit_io_at(e, t), b.admit_io_at(e, t), op)
                } else {
                    (
                        a.admit_at(tokens, t),
                        b.admit_at(tokens, t),
                        format!("admit_at({tokens}, {t:?})"),
                    )
                };
                if x != y {
                    return Err(mismatch(op, format!("{x:?}"), format!("{y:?}")));
                }
                match x {
                    Ok(charge) => {
                        report.admitted += 1;
                        held.push(charge);
                    }
                    Err(_) => report.refused += 1,
                }
            }
            5..=6 => {
                let (x, y) = (a.earliest_at(tokens, t), b.earliest_at(tokens, t));
                if x != y {
                    let op = format!("earliest_at({tokens}, {t:?})");
                    return Err(mismatch(op, format!("{x:?}"), format!("{y:?}")));
                }
            }
            7..=8 if !held.is_empty() => {
                let charge = held.swap_remove(rng.upto(held.len() as u64 - 1) as usize);
                let actual = match rng.upto(3) {
                    0 => charge.tokens,
                    1 => 0,
                    _ => rng.upto(charge.tokens.saturating_mul(2).saturating_add(8)),
                };
                if io && rng.upto(1) == 0 {
                    let input = rng.upto(actual);
                    let e = Estimate { input, output: actual - input };
                    a.settle_io_at(charge, e, t);
                    b.settle_io_at(charge, e, t);
                } else {
                    a.settle_at(charge, actual, t);
                    b.settle_at(charge, actual, t);
                }
                report.settled += 1;
            }
            _ => {}
        }
        // Usage after every operation: a settle's effect shows here.
        a.usage_at(t, &mut used_a);
        b.usage_at(t, &mut used_b);
        if used_a != used_b {
            let op = format!("usage_at({t:?})");
            return Err(mismatch(op, format!("{used_a:?}"), format!("{used_b:?}")));
        }
    }
    Ok(report)
}
