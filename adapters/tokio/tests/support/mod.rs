//! Shared by the hostile tests (tokio, smol, std threads): a seeded RNG, an admission log of
//! real instants, and checkers for ARCHITECTURE.md's invariants 7 and 8 on that log.
//!
//! Runtime-free (std only) so that the smol and std test crates include it by path.
#![allow(dead_code)] // each test binary uses a different part

use core::time::Duration;
use std::sync::Mutex;
use std::time::Instant;

/// A tiny xorshift64* generator: deterministic per seed, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Never zero (xorshift's fixed point); spread small seeds apart.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den < num
    }

    /// A random duration of `lo..=hi` milliseconds, at microsecond resolution.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(self.range(lo * 1_000, hi * 1_000))
    }

    /// A fresh generator for task `i` of this one's seed.
    pub fn fork(&mut self, i: u64) -> Rng {
        Rng::new(self.next_u64() ^ i)
    }
}

/// Admissions as (time since the log's start, tokens), recorded by the caller right after its
/// acquire returned. The recorded instant is therefore never before the limiter's decision,
/// and later than it by the task's wake-up latency.
#[derive(Debug)]
pub struct AdmissionLog {
    start: Instant,
    entries: Mutex<Vec<(Duration, u64)>>,
}

impl AdmissionLog {
    pub fn new() -> Self {
        Self { start: Instant::now(), entries: Mutex::new(Vec::new()) }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn record(&self, tokens: u64) {
        let at = self.start.elapsed();
        self.entries.lock().unwrap().push((at, tokens));
    }

    /// Records an admission at a known instant (e.g. a model permit's `admitted_at`).
    pub fn record_at(&self, at: Instant, tokens: u64) {
        let at = at.saturating_duration_since(self.start);
        self.entries.lock().unwrap().push((at, tokens));
    }

    /// The entries, sorted by instant.
    pub fn entries(&self) -> Vec<(Duration, u64)> {
        let mut e = self.entries.lock().unwrap().clone();
        e.sort();
        e
    }

    /// Tokens admitted in `[0, until]`.
    pub fn tokens_until(&self, until: Duration) -> u64 {
        self.entries().iter().filter(|(t, _)| *t <= until).map(|(_, n)| n).sum()
    }

    pub fn total(&self) -> u64 {
        self.entries().iter().map(|(_, n)| n).sum()
    }
}

/// How late a recorded admission may be against the limiter's own decision, for the purpose of
/// the window check: the wake-up latency of a task (tokio's timer wheel has 1 ms ticks and fires
/// at or after the tick; then the worker must be scheduled) on a loaded 2-core machine with two
/// test binaries' worth of threads. Two admissions whose lags differ by `L` look `L` closer
/// together than they were, so the check allows `rate · RECORDING_LAG` extra tokens. 20 ms is
/// generous (typical lags are well under 1 ms) but stays far below what a real over-admission
/// (a lost reservation, a doubled token, a queue that lets everyone through) produces.
pub const RECORDING_LAG: Duration = Duration::from_millis(20);

/// A token bucket's limits: `burst` at once, `per_second` tokens a second.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_second: f64,
    pub burst: u64,
    /// The recording lag the window check allows for (see [`RECORDING_LAG`]).
    pub lag: Duration,
}

impl Limits {
    pub fn new(per_second: u32, burst: u64) -> Self {
        Self { per_second: f64::from(per_second), burst, lag: RECORDING_LAG }
    }

    /// The same limits, for a log whose recording lag may reach `lag`.
    pub fn with_lag(self, lag: Duration) -> Self {
        Self { lag, ..self }
    }

    /// One emission interval (the time for one token).
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }

    /// Extra tokens the window check tolerates: the recording lag's worth. When demand exceeds
    /// the rate every window is tight against burst + rate·d, so one admission recorded `L` late
    /// shows up as rate·L tokens of excess (the check is over
    /// closed intervals, so exact GCRA spacing needs no rounding allowance: admissions at 0 and
    /// one interval later are burst 1 + rate·d = 2 tokens). At 200/s this is 4 tokens; at 1/s,
    /// 0.02, so there any second call in the same interval fails.
    pub fn slack_tokens(&self) -> f64 {
        self.per_second * self.lag.as_secs_f64()
    }
}

/// Invariant 7 on the log: in every interval `[t_i, t_j]` (the worst intervals start and end on
/// admissions), tokens admitted ≤ burst + rate·(t_j − t_i) + slack. O(n): with S the prefix sum
/// of tokens, max over i ≤ j of (S_j − S_{i−1}) − rate·(t_j − t_i) is a running minimum.
pub fn check_invariant_7(what: &str, entries: &[(Duration, u64)], limits: Limits) {
    let slack = limits.slack_tokens();
    let mut before = 0.0f64; // S_{i−1}
    let mut best = f64::INFINITY; // min over i ≤ j of S_{i−1} − rate·t_i
    let mut best_at = Duration::ZERO;
    let mut worst = (f64::NEG_INFINITY, Duration::ZERO, Duration::ZERO);
    for &(t, n) in entries {
        let ts = t.as_secs_f64();
        let start = before - limits.per_second * ts;
        if start < best {
            best = start;
            best_at = t;
        }
        before += n as f64;
        let excess = (before - limits.per_second * ts) - best - limits.burst as f64;
        if excess > worst.0 {
            worst = (excess, best_at, t);
        }
    }
    let (excess, from, to) = worst;
    assert!(
        excess <= slack,
        "{what}: invariant 7 broken: {excess:.2} tokens above burst + rate·d in [{from:?}, {to:?}] \
         (allowed slack {slack:.2} = a recording lag of {:?}; this excess would need a lag of \
         {:.1} ms; {} admissions, burst {}, {}/s)",
        limits.lag,
        excess / limits.per_second * 1e3,
        entries.len(),
        limits.burst,
        limits.per_second
    );
}

/// Invariant 8's throughput half: with demand above the rate for the whole of `[0, run]`,
/// admitted tokens in that span ≥ 95 % of rate·run.
pub fn check_throughput(what: &str, log: &AdmissionLog, run: Duration, limits: Limits) {
    let admitted = log.tokens_until(run);
    let ideal = limits.per_second * run.as_secs_f64();
    let share = admitted as f64 / ideal;
    assert!(
        share >= 0.95,
        "{what}: throughput {admitted} tokens in {run:?} = {:.1} % of rate·d ({ideal:.0}); \
         invariant 8 wants ≥ 95 %",
        share * 100.0
    );
}

/// How late a lone caller may be after a storm, beyond one emission interval: the timer's 1 ms
/// tick, plus wake-up latency (see [`RECORDING_LAG`]; a lone caller's own lag is typically well
/// under a millisecond, so this is looser than it needs to be).
pub const LONE_CALLER_SLACK: Duration = Duration::from_millis(15);

/// The "after such a storm a lone caller waits at most one emission interval" half of
/// invariant 8, given how long the lone caller waited.
pub fn check_lone_caller(what: &str, waited: Option<Duration>, limits: Limits) {
    let bound = limits.interval() + LONE_CALLER_SLACK;
    match waited {
        Some(w) => assert!(
            w <= bound,
            "{what}: after the storm a lone caller waited {w:?}; invariant 8 allows one \
             emission interval ({:?}) + {LONE_CALLER_SLACK:?} timer slack",
            limits.interval()
        ),
        None => panic!(
            "{what}: after the storm a lone caller was still waiting after the test's limit; \
             invariant 8 allows one emission interval ({:?}) + {LONE_CALLER_SLACK:?}",
            limits.interval()
        ),
    }
}

/// How much later than its bound a bounded wait may return: the 1 ms timer tick plus wake-up
/// latency (see [`RECORDING_LAG`]).
pub const BOUNDED_WAIT_SLACK: Duration = Duration::from_millis(20);

/// Violations found inside storm tasks, collected rather than panicking there (a panic inside a
/// runtime worker delays every other task on it and turns one failure into a cascade of
/// timing failures).
#[derive(Debug, Default)]
pub struct Violations(Mutex<Vec<String>>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn report(&self, message: String) {
        self.0.lock().unwrap().push(message);
    }

    pub fn check(&self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.report(message());
        }
    }

    /// Panics with the count and the first few violations, if any.
    pub fn assert_none(&self, what: &str) {
        let v = self.0.lock().unwrap();
        if !v.is_empty() {
            let first: Vec<&str> = v.iter().take(5).map(String::as_str).collect();
            panic!("{what}: {} violations; first: {first:#?}", v.len());
        }
    }
}

/// Where a bounded wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounded {
    Admitted,
    /// Refused: the caller should back off before trying again (an up-front refusal returns
    /// without yielding, so a retry loop that never waits never gives its thread back).
    Refused,
    Failed,
}

/// Checks one bounded wait of `n` tokens that began at `start_lib` (the limiter's clock) and
/// took `took`: admitted within `bound` (plus [`BOUNDED_WAIT_SLACK`]) and logged, or refused
/// with a `ready_at` past the bound, up front or at its deadline. Anything else is a violation.
pub fn check_bounded_wait(
    log: &AdmissionLog,
    bad: &Violations,
    (n, bound, took, start_lib): (u64, Duration, Duration, tollgate::Instant),
    result: Result<(), tollgate::Error>,
) -> Bounded {
    match result {
        Ok(()) => {
            log.record(n);
            bad.check(took <= bound + BOUNDED_WAIT_SLACK, || {
                format!("a wait bounded by {bound:?} took {took:?}")
            });
            Bounded::Admitted
        }
        Err(e @ tollgate::Error::MaxWaitExceeded { .. }) => {
            bad.check(e.ready_at().is_some_and(|r| r > start_lib + bound), || {
                format!("refused within its bound {bound:?} from {start_lib:?}: {e:?}")
            });
            // Up front, or at its deadline: a waiter the up-front estimate let into the line can
            // still run out of time there when the line moves slower than the bucket's schedule
            // (tasks polled late on a loaded machine). Anything in between, or later, is a bug.
            let up_front = took <= BOUNDED_WAIT_SLACK;
            let at_deadline =
                took + BOUNDED_WAIT_SLACK >= bound && took <= bound + BOUNDED_WAIT_SLACK;
            bad.check(up_front || at_deadline, || {
                format!("a refusal must come up front or at its deadline; it took {took:?} (bound {bound:?})")
            });
            Bounded::Refused
        }
        Err(e) => {
            bad.report(format!("{n} tokens, within the burst, failed: {e}"));
            Bounded::Failed
        }
    }
}
