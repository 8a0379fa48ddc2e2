//! Draining to a provider's "remaining" when another client shares the key, on a manual clock
//! against a small exact provider (a 60 s log of every request, a 429 on any excess, headers
//! on every answer). The pattern this guards against: a drain charged as one lump leaves the
//! local window all at once a window later, while the neighbour's requests it stood for have
//! been replaced one by one — so once a window the limiter saw room the neighbour had
//! already retaken, and a request paid for it with a 429.

use core::time::Duration;
use std::collections::VecDeque;

use tollgate::model::ModelPermit;
use tollgate::provider::{HeaderReport, Observed, Provider, Quota, Throttled};
use tollgate::{Instant, ManualClock, ModelRateLimiter, RateLimitConfig};

const WINDOW: Duration = Duration::from_secs(60);

/// A provider's exact request log for one model.
struct Exact {
    rpm: u64,
    /// Arrival instants in the last window.
    log: VecDeque<Instant>,
}

impl Exact {
    fn prune(&mut self, now: Instant) {
        while self.log.front().is_some_and(|&at| now - at >= WINDOW) {
            self.log.pop_front();
        }
    }

    /// A request arrives: admitted, or the 429's wait (until room comes back).
    fn begin(&mut self, now: Instant) -> Result<(), Duration> {
        self.prune(now);
        if (self.log.len() as u64) < self.rpm {
            self.log.push_back(now);
            Ok(())
        } else {
            Err((self.log[0] + WINDOW) - now)
        }
    }

    /// The headers of an answer at `now`: the limit, what is left, and when the count is back
    /// to the limit (the newest entry leaves).
    fn report(&mut self, now: Instant) -> HeaderReport {
        self.prune(now);
        let mut report = HeaderReport::empty(Provider::OpenAi);
        report.observed.push(Observed {
            window: Some(WINDOW),
            limit: Some(self.rpm),
            remaining: Some(self.rpm - self.log.len() as u64),
            reset_after: self.log.back().map(|&at| (at + WINDOW) - now),
            ..Observed::new(Quota::Requests)
        });
        report
    }
}

/// The job's 429s over `windows` windows of traffic: it always has more to send, at most
/// `parallel` at a time, each answered after `latency`; a neighbour sends one request every
/// `gap` and started a window earlier. Every answer's headers are observed; every 429 is
/// reported through the permit (a cooldown).
fn job_429s(
    rpm: u32,
    parallel: u32,
    arrival: Duration,
    latency: (u64, u64),
    gap: Duration,
    windows: u32,
) -> usize {
    let config = RateLimitConfig {
        rpm,
        tpm: 1_000_000,
        max_parallel_requests: parallel,
        ..Default::default()
    };
    let l = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config).unwrap();
    // Far from the clock's epoch, and off any slot boundary.
    let start = Instant::from_secs(1_000) + Duration::from_millis(337);
    let mut provider = Exact { rpm: u64::from(rpm), log: VecDeque::new() };
    let mut next_neighbour = start - WINDOW;
    let step = Duration::from_millis(10);
    let mut now = next_neighbour;
    let mut in_flight: VecDeque<(Instant, ModelPermit<'_, ManualClock>)> = VecDeque::new();
    let mut rejected = 0;
    let (mut backlog, mut next_arrival, mut draw) = (0u32, start, 0u64);
    let end = start + WINDOW * windows;
    while now < end {
        while next_neighbour <= now {
            let _ = provider.begin(next_neighbour);
            next_neighbour = next_neighbour + gap;
        }
        if now >= start {
            l.timer().set(now);
            while in_flight.front().is_some_and(|&(at, _)| at <= now) {
                let (_, permit) = in_flight.pop_front().unwrap();
                l.observe("m", &provider.report(now)).unwrap();
                permit.settle(1);
            }
            while next_arrival <= now {
                backlog += 1;
                next_arrival = next_arrival + arrival;
            }
            while backlog > 0 {
                let Ok(permit) = l.try_acquire("m", 1) else { break };
                match provider.begin(now) {
                    Ok(()) => {
                        backlog -= 1;
                        // Latencies spread over the range by a fixed stride (no randomness).
                        draw = (draw + 7_919) % (latency.1 - latency.0 + 1);
                        let done = now + Duration::from_millis(latency.0 + draw);
                        let i = in_flight.partition_point(|(at, _)| *at <= done);
                        in_flight.insert(i, (done, permit));
                    }
                    Err(wait) => {
                        rejected += 1;
                        l.observe("m", &provider.report(now)).unwrap();
                        permit.throttled(&Throttled::RetryLater { after: Some(wait) });
                    }
                }
            }
        }
        now = now + step;
    }
    eprintln!("{rejected} × 429 to the job in {windows} windows");
    rejected
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The main job's gpt-4o-mini: 300 RPM, the neighbour 75 of them, the job up to 20 in flight
/// with latencies from 0.3 s to 3 s and 400 requests a minute arriving. With the drain as one
/// lump: 25 × 429 in 10 windows.
#[test]
#[cfg_attr(miri, ignore)] // ten simulated windows of traffic: minutes under miri; no unsafe of its own
fn a_steady_neighbour_costs_no_429_with_many_in_flight_and_spread_latencies() {
    let n = job_429s(300, 20, ms(150), (300, 3_000), ms(800), 10);
    assert_eq!(n, 0, "{n} × 429 in 10 windows");
}

#[test]
#[cfg_attr(miri, ignore)] // ten simulated windows of traffic: minutes under miri; no unsafe of its own
fn a_steady_neighbour_costs_no_429_once_its_share_is_known() {
    // 60 RPM; the neighbour takes 15 of them (one every 4 s). The job keeps 5 in flight at
    // most, so its first requests, before any answer, fit what the neighbour leaves. (The
    // drain as one lump: 39 × 429 in 10 windows.)
    let n = job_429s(60, 5, ms(700), (700, 700), Duration::from_secs(4), 10);
    assert_eq!(n, 0, "{n} × 429 in 10 windows");
}

#[test]
#[cfg_attr(miri, ignore)] // ten simulated windows of traffic: minutes under miri; no unsafe of its own
fn a_neighbour_whose_share_steps_up_and_down_costs_no_429() {
    // 7.5 of the neighbour's requests per window: its share steps between 7 and 8 as its
    // requests come and go, and no header announces the step up before it happens. Holding
    // the highest share reported until that report's reset covers it. (Holding the latest
    // share only: 9 × 429 in 10 windows; the drain as one lump: 26.)
    let n = job_429s(30, 4, ms(1_300), (1_300, 1_300), Duration::from_secs(8), 10);
    assert_eq!(n, 0, "{n} × 429 in 10 windows");
}
