//! Hostile use of the 429 cooldown on a real multi-thread tokio runtime with the real clock:
//! many tasks call a strict mock provider (a fixed budget per 100 ms, answering 429 with the
//! time to its next window when it is spent) through the model limiter, under timeouts and
//! `select!` around every acquire. Every 429 goes back through `permit.rate_limited`.
//!
//! Checked from the admission log (tickets taken at arrival, the permits' own `admitted_at`)
//! and the cooldowns the limiter reported:
//! - no admission lies inside a cooldown: each is no later than the cooldown's start or no
//!   earlier than its end;
//! - FIFO: admissions come in arrival order, cancelled waiters only leaving gaps — through
//!   cooldowns and out of them;
//! - in flight never exceeds `max_parallel_requests`, and nothing leaks (`active` back to 0);
//! - the cooldown works: after the first 429 of a provider window, at most the requests
//!   already in flight then can get one (one 429 never cascades through the queue).

use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::{Arc, Mutex};

use tokio::time::{sleep, timeout};
use tollgate::model::Cooldown;
use tollgate_tokio::{Instant, ModelRateLimiter, RateLimitConfig};

const TASKS: u64 = 48;
const PARALLEL: u32 = 4;
const STORM: Duration = Duration::from_millis(1_500);
/// The mock provider's budget: this many requests per window of this length.
const BUDGET: u64 = 12;
const PROVIDER_WINDOW: Duration = Duration::from_millis(100);

/// A strict provider: `BUDGET` requests per fixed window on its own clock; past that, a 429
/// with the time left in the window as `retry-after`.
struct Provider {
    start: std::time::Instant,
    state: Mutex<(u64, u64)>,
}

impl Provider {
    fn call(&self) -> Result<(), Duration> {
        let elapsed = self.start.elapsed();
        let window = (elapsed.as_nanos() / PROVIDER_WINDOW.as_nanos()) as u64;
        let mut s = self.state.lock().unwrap();
        if s.0 != window {
            *s = (window, 0);
        }
        if s.1 < BUDGET {
            s.1 += 1;
            Ok(())
        } else {
            let next = PROVIDER_WINDOW * (window as u32 + 1);
            Err(next.saturating_sub(elapsed))
        }
    }
}

#[derive(Debug, Default)]
struct Log {
    /// (ticket, admitted_at) of every admission.
    admissions: Vec<(u64, Instant)>,
    cooldowns: Vec<Cooldown>,
    /// When each request that got a 429 was admitted.
    too_many: Vec<Instant>,
}

/// Takes an arrival ticket and polls the acquire for the first time under one lock, so the
/// order of tickets is the order in which requests joined the limiter's line.
struct Arrive<F> {
    fut: Pin<Box<F>>,
    ticket: Option<u64>,
    arrivals: Arc<Mutex<u64>>,
}

impl<F: Future> Future for Arrive<F> {
    type Output = (u64, F::Output);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let ticket = match this.ticket {
            Some(t) => t,
            None => {
                let mut next = this.arrivals.lock().unwrap();
                let t = *next;
                *next += 1;
                this.ticket = Some(t);
                if let Poll::Ready(out) = this.fut.as_mut().poll(cx) {
                    return Poll::Ready((t, out));
                }
                return Poll::Pending;
            }
        };
        this.fut.as_mut().poll(cx).map(|out| (ticket, out))
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(miri, ignore)] // real threads and a real clock, for a second or more
async fn a_429_cooldown_holds_the_queue_in_fifo_order_and_admits_nothing_inside_it() {
    // Local limits far above the provider's: only the provider's 429s pace the run.
    let config = RateLimitConfig {
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: PARALLEL,
        ..Default::default()
    };
    let limiter = Arc::new(ModelRateLimiter::new([("m", config.clone())], config).unwrap());
    let provider =
        Arc::new(Provider { start: std::time::Instant::now(), state: Mutex::new((0, 0)) });
    let log = Arc::new(Mutex::new(Log::default()));
    let arrivals = Arc::new(Mutex::new(0u64));
    let in_flight = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (limiter, provider, log, arrivals) =
                (limiter.clone(), provider.clone(), log.clone(), arrivals.clone());
            let (in_flight, max_in_flight, stop) =
                (in_flight.clone(), max_in_flight.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i + 1).wrapping_mul(0x2545_f491));
                while !stop.load(Ordering::SeqCst) {
                    let acquire = Arrive {
                        fut: Box::pin(limiter.acquire("m", 100)),
                        ticket: None,
                        arrivals: arrivals.clone(),
                    };
                    // Give up after 5–200 ms, as a client with a deadline would.
                    let patience = Duration::from_millis(5 + rng.below(196));
                    let (ticket, permit) = tokio::select! {
                        got = acquire => got,
                        () = sleep(patience) => continue,
                    };
                    let permit = permit.expect("nothing here can fail");
                    let at = permit.admitted_at();
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max_in_flight.fetch_max(now, Ordering::SeqCst);
                    log.lock().unwrap().admissions.push((ticket, at));
                    // The call: a little latency, then the provider's answer.
                    sleep(Duration::from_micros(200 + rng.below(1_500))).await;
                    let answer = provider.call();
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    match answer {
                        Ok(()) => permit.settle(90),
                        Err(retry_after) => {
                            let cooldown = permit.rate_limited(retry_after);
                            let mut log = log.lock().unwrap();
                            log.cooldowns.push(cooldown);
                            log.too_many.push(at);
                        }
                    }
                }
            })
        })
        .collect();
    sleep(STORM).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        timeout(Duration::from_secs(5), t).await.expect("a task hung").expect("a task panicked");
    }

    let log = log.lock().unwrap();
    let admissions = &log.admissions;
    assert!(!log.cooldowns.is_empty(), "the provider never said 429: the test proves nothing");
    assert!(admissions.len() as u64 > 5 * BUDGET, "only {} admissions", admissions.len());

    // No admission inside a cooldown.
    for c in &log.cooldowns {
        for &(ticket, at) in admissions {
            assert!(
                at <= c.from || at >= c.until,
                "request {ticket} admitted at {at:?}, inside the cooldown {:?}..{:?}",
                c.from,
                c.until
            );
        }
    }

    // FIFO: in the order of admission, tickets only ever grow.
    let mut by_time = admissions.clone();
    by_time.sort_by_key(|&(ticket, at)| (at, ticket));
    for pair in by_time.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "request {} (arrived later) admitted before request {}",
            pair[0].0,
            pair[1].0
        );
    }

    // The cap, and nothing leaked.
    assert!(max_in_flight.load(Ordering::SeqCst) <= u64::from(PARALLEL));
    assert_eq!(limiter.stats()["m"].active.used, 0);

    // One 429 never cascades: each cooldown that a 429 started (extended) is followed, inside
    // it, only by the 429s of requests admitted before it began (at most the others in flight).
    let mut starts: Vec<&Cooldown> = log.cooldowns.iter().filter(|c| c.extended).collect();
    starts.sort_by_key(|c| c.from);
    for c in &starts {
        let cascaded =
            log.too_many.iter().filter(|&&admitted| admitted > c.from && admitted < c.until);
        assert_eq!(cascaded.count(), 0, "a request admitted inside a cooldown got a 429");
    }
    let per_cooldown = log.too_many.len() as f64 / starts.len() as f64;
    eprintln!(
        "{} admissions, {} × 429 in {} cooldowns ({per_cooldown:.2} per cooldown), max {} in flight, \
         {:.0} successful calls/s (the provider allows {:.0}/s)",
        admissions.len(),
        log.too_many.len(),
        starts.len(),
        max_in_flight.load(Ordering::SeqCst),
        (admissions.len() - log.too_many.len()) as f64 / STORM.as_secs_f64(),
        BUDGET as f64 / PROVIDER_WINDOW.as_secs_f64(),
    );
    assert!(
        per_cooldown <= f64::from(PARALLEL),
        "{per_cooldown} × 429 per cooldown: more than the requests in flight"
    );
}
