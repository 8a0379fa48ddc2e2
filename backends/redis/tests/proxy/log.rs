//! Admission logs from many worker processes, and the invariant checks run over them.
//!
//! A worker prints one line per request it got through the limiter; the parent parses every
//! worker's lines and checks DESIGN.md's invariants 1–3 and 6 over the union, in server time.
//! The checks return what they found (the worst window, the peak overlap) so a test can print
//! what it observed, and an error naming the first violation.
#![allow(dead_code)] // each test binary uses its own part of the support code

use core::fmt;
use core::fmt::Write as _;

/// The prefix of an admission line on a worker's stdout (anything else there is ignored).
pub const PREFIX: &str = "TGREC";

/// One admitted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Which model (or scenario) of the run it belongs to.
    pub group: u32,
    /// The worker process.
    pub worker: u32,
    /// The task inside that worker.
    pub task: u32,
    /// When the task asked (µs since the epoch, read before the acquire; the host's clock, the
    /// same clock as the server's `TIME` when they share a host, as in these tests).
    pub asked_us: u64,
    /// When the request was admitted (server µs, from the permit).
    pub start_us: u64,
    /// When the task released its slot (the host's clock as `asked_us`, read before the
    /// settle: never later than the server's release, so overlaps are never undercounted).
    pub end_us: u64,
    /// Tokens it declared at admission.
    pub est: u64,
    /// Tokens it settled with (what stays charged).
    pub actual: u64,
}

impl Record {
    /// The line a worker prints for this record.
    pub fn line(&self) -> String {
        format!(
            "{PREFIX} {} {} {} {} {} {} {} {}",
            self.group,
            self.worker,
            self.task,
            self.asked_us,
            self.start_us,
            self.end_us,
            self.est,
            self.actual
        )
    }

    /// Parses a line printed by [`Record::line`]; `None` for any other line.
    pub fn parse(line: &str) -> Option<Record> {
        let mut it = line.trim().strip_prefix(PREFIX)?.split_whitespace();
        let mut next = || it.next()?.parse::<u64>().ok();
        let group = u32::try_from(next()?).ok()?;
        let worker = u32::try_from(next()?).ok()?;
        let task = u32::try_from(next()?).ok()?;
        Some(Record {
            group,
            worker,
            task,
            asked_us: next()?,
            start_us: next()?,
            end_us: next()?,
            est: next()?,
            actual: next()?,
        })
    }
}

/// What a check saw: its peak against its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peak {
    /// The highest value seen (requests or tokens in one window, or requests in flight).
    pub peak: u64,
    /// Where (server µs: the window's start, or the instant of the peak overlap).
    pub at_us: u64,
}

/// The largest count of admissions in any half-open window `[t, t + window_us)`.
///
/// The maximum is reached by a window that starts at an admission, so those are the only
/// windows to look at; `weight` says what one admission counts (1, or its tokens).
pub fn busiest_window(records: &[Record], window_us: u64, weight: impl Fn(&Record) -> u64) -> Peak {
    let mut by_start: Vec<&Record> = records.iter().collect();
    by_start.sort_by_key(|r| r.start_us);
    let (mut best, mut sum, mut hi) = (Peak { peak: 0, at_us: 0 }, 0_u64, 0_usize);
    for lo in 0..by_start.len() {
        let t = by_start[lo].start_us;
        while hi < by_start.len() && by_start[hi].start_us < t.saturating_add(window_us) {
            sum += weight(by_start[hi]);
            hi += 1;
        }
        if sum > best.peak {
            best = Peak { peak: sum, at_us: t };
        }
        sum -= weight(by_start[lo]);
    }
    best
}

/// The most requests in flight at once, from `[start_us, end_us)` intervals (a release and an
/// admission at the same instant do not overlap).
pub fn peak_parallel(records: &[Record]) -> Peak {
    let mut events: Vec<(u64, i64)> = Vec::with_capacity(records.len() * 2);
    for r in records {
        events.push((r.start_us, 1));
        events.push((r.end_us.max(r.start_us), -1));
    }
    events.sort(); // at one instant -1 sorts before +1
    let (mut now, mut best) = (0_i64, Peak { peak: 0, at_us: 0 });
    for (t, d) in events {
        now += d;
        if u64::try_from(now).unwrap_or(0) > best.peak {
            best = Peak { peak: u64::try_from(now).unwrap_or(0), at_us: t };
        }
    }
    best
}

/// Pairs of grants out of arrival order: `a` asked more than `slack_us` before `b` (both in
/// server time) yet was admitted more than `slack_us` after it. The slack absorbs the time
/// between reading the clock and the acquire reaching the server.
pub fn fifo_inversions(records: &[Record], slack_us: u64) -> Vec<(Record, Record)> {
    let mut by_ask: Vec<&Record> = records.iter().collect();
    by_ask.sort_by_key(|r| r.asked_us);
    let mut out = Vec::new();
    // Walking in ask order, keep the latest start seen among requests that asked more than
    // `slack_us` earlier: any later asker that starts well before it overtook it.
    let mut latest: Option<&Record> = None;
    let mut j = 0;
    for b in &by_ask {
        while j < by_ask.len() && by_ask[j].asked_us + slack_us < b.asked_us {
            if latest.is_none_or(|l| by_ask[j].start_us > l.start_us) {
                latest = Some(by_ask[j]);
            }
            j += 1;
        }
        if let Some(a) = latest
            && a.start_us > b.start_us + slack_us
        {
            out.push((*a, **b));
        }
    }
    out
}

/// A violated limit, with the records that show it.
#[derive(Debug)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The limits a run is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The window of the request and token limits, µs.
    pub window_us: u64,
    /// Requests per window.
    pub rpm: u64,
    /// Tokens per window.
    pub tpm: u64,
    /// Requests in flight.
    pub parallel: u64,
}

/// What [`check`] observed.
#[derive(Clone, Copy, Debug)]
pub struct Observed {
    /// Admissions in the log.
    pub admitted: usize,
    /// The busiest window by requests.
    pub requests: Peak,
    /// The busiest window by settled tokens.
    pub tokens: Peak,
    /// The peak of requests in flight.
    pub parallel: Peak,
    /// Grants out of arrival order.
    pub fifo_inversions: usize,
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} admitted; busiest window {} requests, {} tokens; peak in flight {}; \
             {} FIFO inversions",
            self.admitted,
            self.requests.peak,
            self.tokens.peak,
            self.parallel.peak,
            self.fifo_inversions
        )
    }
}

/// Checks RPM, TPM (settled tokens), parallel and FIFO over the union of every worker's log.
pub fn check(
    records: &[Record],
    limits: Limits,
    fifo_slack_us: u64,
) -> Result<Observed, Violation> {
    let observed = Observed {
        admitted: records.len(),
        requests: busiest_window(records, limits.window_us, |_| 1),
        tokens: busiest_window(records, limits.window_us, |r| r.actual),
        parallel: peak_parallel(records),
        fifo_inversions: fifo_inversions(records, fifo_slack_us).len(),
    };
    let mut bad = String::new();
    if observed.requests.peak > limits.rpm {
        let _ = write!(
            bad,
            "{} requests in the window from {} µs (limit {}); ",
            observed.requests.peak, observed.requests.at_us, limits.rpm
        );
    }
    if observed.tokens.peak > limits.tpm {
        let _ = write!(
            bad,
            "{} tokens in the window from {} µs (limit {}); ",
            observed.tokens.peak, observed.tokens.at_us, limits.tpm
        );
    }
    if observed.parallel.peak > limits.parallel {
        let _ = write!(
            bad,
            "{} in flight at {} µs (limit {}); ",
            observed.parallel.peak, observed.parallel.at_us, limits.parallel
        );
    }
    if let Some((a, b)) = fifo_inversions(records, fifo_slack_us).first() {
        let _ = write!(bad, "FIFO: {a:?} asked first but started after {b:?}; ");
    }
    if bad.is_empty() { Ok(observed) } else { Err(Violation(format!("{bad}observed: {observed}"))) }
}

/// The host's clock in µs since the Unix epoch: on one host, the clock the server's `TIME`
/// reads too, so client-side instants and the permits' server instants compare directly.
pub fn wall_us() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_micros()).expect("µs fit in u64")
}

/// What admissions starting in `[from_us, to_us)` weigh together (1 each, or their tokens).
pub fn admitted_in(
    records: &[Record],
    from_us: u64,
    to_us: u64,
    weight: impl Fn(&Record) -> u64,
) -> u64 {
    records.iter().filter(|r| (from_us..to_us).contains(&r.start_us)).map(weight).sum()
}

/// The time requests spent in flight inside `[from_us, to_us)`, summed over requests (µs).
pub fn busy_in(records: &[Record], from_us: u64, to_us: u64) -> u64 {
    records.iter().map(|r| r.end_us.min(to_us).saturating_sub(r.start_us.max(from_us))).sum()
}
