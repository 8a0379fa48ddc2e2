//! The main job: an orchestrator sending thousands of LLM requests through a
//! `ModelRateLimiter` to a simulated provider that answers 429 on any violation.
//!
//! Three models with different binding limits (TPM, RPM, parallel requests) receive more
//! demand than they can take for ten simulated minutes. The provider enforces the same limits
//! over a true sliding 60-second window and counts every violation. Time is tokio's paused
//! clock, so ten minutes pass in a few seconds of real time. Requests still queued at the end
//! are abandoned (their futures dropped), which must leak nothing.
//!
//! Run: `cargo run --example llm_orchestrator` (exit code 1 on any 429).

use core::cell::{Cell, RefCell};
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use tokio::time::Instant;
use tollgate_tokio::{ModelRateLimiter, RateLimitConfig};

const RUN: Duration = Duration::from_secs(600);
const WINDOW: Duration = Duration::from_secs(60);

/// One model's limits and the shape of its traffic.
struct Workload {
    name: &'static str,
    limits: RateLimitConfig,
    /// Mean gap between arrivals.
    arrival_gap: Duration,
    /// Estimated tokens: uniform in this range; actual usage is 55–100 % of the estimate.
    estimate: (u64, u64),
    /// Provider latency: uniform in this range.
    latency: (Duration, Duration),
}

fn workloads() -> Vec<Workload> {
    vec![
        // TPM binds: 30 000 tokens/min at ~1 500 tokens per request ≈ 20-35 requests/min.
        Workload {
            name: "gpt-4o",
            limits: RateLimitConfig {
                rpm: 500,
                tpm: 30_000,
                max_parallel_requests: 8,
                ..Default::default()
            },
            arrival_gap: Duration::from_millis(1_200),
            estimate: (500, 2_500),
            latency: (Duration::from_millis(800), Duration::from_secs(6)),
        },
        // RPM binds: 300/min with plenty of parallelism and tokens.
        Workload {
            name: "gpt-4o-mini",
            limits: RateLimitConfig {
                rpm: 300,
                tpm: 1_000_000,
                max_parallel_requests: 20,
                ..Default::default()
            },
            arrival_gap: Duration::from_millis(150),
            estimate: (100, 600),
            latency: (Duration::from_millis(300), Duration::from_secs(3)),
        },
        // Parallel requests bind: 4 at a time with 1–3 s latency ≈ 120/min.
        Workload {
            name: "claude-haiku",
            limits: RateLimitConfig {
                rpm: 1_000,
                tpm: 500_000,
                max_parallel_requests: 4,
                ..Default::default()
            },
            arrival_gap: Duration::from_millis(350),
            estimate: (200, 1_200),
            latency: (Duration::from_secs(1), Duration::from_secs(3)),
        },
    ]
}

/// SplitMix64: a tiny deterministic generator, so every run is identical.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn duration(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        Duration::from_nanos(self.between(lo.as_nanos() as u64, hi.as_nanos() as u64))
    }
}

/// A provider that enforces RPM, TPM and parallel limits over a true sliding window, counting
/// a request's estimate when it arrives and correcting it to the actual count when it ends.
#[derive(Default)]
struct Provider {
    models: BTreeMap<&'static str, ProviderModel>,
}

#[derive(Default)]
struct ProviderModel {
    limits: RateLimitConfig,
    /// (request id, arrival, tokens charged) of every request in the last minute, oldest first.
    recent: VecDeque<(u64, Instant, u64)>,
    in_flight: u32,
    // Figures for the report.
    requests: u64,
    tokens: u64,
    violations: u64,
    peak_parallel: u32,
    busy_slot_time: Duration,
    last_change: Option<Instant>,
}

impl ProviderModel {
    /// Integrates slots in use over time, for the parallel-limit utilization.
    fn account_busy_time(&mut self, now: Instant) {
        if let Some(last) = self.last_change {
            self.busy_slot_time += (now - last) * self.in_flight;
        }
        self.last_change = Some(now);
    }

    /// A request arrives: admit it and return its id, or answer 429.
    fn begin(&mut self, now: Instant, estimate: u64) -> Result<u64, ()> {
        while let Some(&(_, t, _)) = self.recent.front() {
            if now.duration_since(t) >= WINDOW {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        let tokens: u64 = self.recent.iter().map(|&(_, _, n)| n).sum();
        if self.recent.len() as u64 + 1 > self.limits.rpm as u64
            || tokens + estimate > self.limits.tpm
            || self.in_flight + 1 > self.limits.max_parallel_requests
        {
            self.violations += 1;
            return Err(());
        }
        self.account_busy_time(now);
        self.in_flight += 1;
        self.peak_parallel = self.peak_parallel.max(self.in_flight);
        self.requests += 1;
        let id = self.requests;
        self.recent.push_back((id, now, estimate));
        Ok(id)
    }

    /// A request completes having used `actual` tokens.
    fn end(&mut self, now: Instant, id: u64, actual: u64) {
        self.account_busy_time(now);
        self.in_flight -= 1;
        self.tokens += actual;
        if let Some(entry) = self.recent.iter_mut().find(|e| e.0 == id) {
            entry.2 = actual;
        }
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let workloads = workloads();
    let limiter = Rc::new(
        ModelRateLimiter::new(
            workloads.iter().map(|w| (w.name, w.limits.clone())),
            RateLimitConfig::default(),
        )
        .expect("valid limits"),
    );
    let provider = Rc::new(RefCell::new(Provider::default()));
    for w in &workloads {
        provider
            .borrow_mut()
            .models
            .insert(w.name, ProviderModel { limits: w.limits.clone(), ..Default::default() });
    }

    let start = Instant::now();
    let local = tokio::task::LocalSet::new();
    let mut rng = Rng(0x7011_6a7e);
    let mut offered = 0usize;
    // How far each request got: admitted by the limiter, and finished (settled).
    let admitted = Rc::new(Cell::new(0usize));
    let finished = Rc::new(Cell::new(0usize));
    let mut handles = Vec::new();
    for w in &workloads {
        let mut at = Duration::ZERO;
        while at < RUN {
            at += rng.duration((Duration::ZERO, w.arrival_gap * 2));
            let (est_lo, est_hi) = w.estimate;
            let estimate = rng.between(est_lo, est_hi);
            let actual = estimate * rng.between(55, 100) / 100;
            let latency = rng.duration(w.latency);
            let (limiter, provider, name) = (limiter.clone(), provider.clone(), w.name);
            let (admitted, finished) = (admitted.clone(), finished.clone());
            offered += 1;
            handles.push(local.spawn_local(async move {
                tokio::time::sleep_until(start + at).await;
                let permit = limiter.acquire(name, estimate).await.expect("fits the model's TPM");
                admitted.set(admitted.get() + 1);
                let id = provider
                    .borrow_mut()
                    .models
                    .get_mut(name)
                    .unwrap()
                    .begin(Instant::now(), estimate);
                tokio::time::sleep(latency).await;
                if let Ok(id) = id {
                    provider.borrow_mut().models.get_mut(name).unwrap().end(
                        Instant::now(),
                        id,
                        actual,
                    );
                }
                permit.settle(actual);
                finished.set(finished.get() + 1);
            }));
        }
    }

    println!(
        "tollgate llm_orchestrator: {offered} requests offered to {} models over {} simulated minutes",
        workloads.len(),
        RUN.as_secs() / 60
    );
    let progress = {
        let limiter = limiter.clone();
        local.spawn_local(async move {
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(60), Duration::from_secs(60));
            loop {
                tick.tick().await;
                let elapsed = start.elapsed().as_secs();
                let line: Vec<String> = limiter
                    .stats()
                    .iter()
                    .map(|(name, s)| {
                        format!("{name}: req {} tok {} active {}", s.requests, s.tokens, s.active)
                    })
                    .collect();
                println!("[{:>2} min] {}", elapsed / 60, line.join(" | "));
            }
        })
    };

    let real = std::time::Instant::now();
    local
        .run_until(async {
            tokio::time::sleep_until(start + RUN).await;
        })
        .await;
    // Abandon whatever is still queued or running: their futures are dropped mid-wait or
    // mid-call. Counted before the abort, so every offered request is in exactly one bucket.
    let served = finished.get();
    let in_flight = admitted.get() - served;
    let queued = offered - admitted.get();
    for h in &handles {
        h.abort();
    }
    progress.abort();
    local.run_until(tokio::task::yield_now()).await;
    drop(local);

    let p = provider.borrow();
    println!();
    println!(
        "{:<14} {:>9} {:>10} {:>5} {:>13} {:>8} {:>8} {:>8}  binding",
        "model", "requests", "tokens", "429s", "peak parallel", "rpm %", "tpm %", "par %"
    );
    let minutes = RUN.as_secs_f64() / 60.0;
    let mut violations = 0;
    let mut worst_binding: f64 = 100.0;
    for w in &workloads {
        let m = &p.models[w.name];
        violations += m.violations;
        let rpm_util = 100.0 * m.requests as f64 / (w.limits.rpm as f64 * minutes);
        let tpm_util = 100.0 * m.tokens as f64 / (w.limits.tpm as f64 * minutes);
        let par_util = 100.0 * m.busy_slot_time.as_secs_f64()
            / (w.limits.max_parallel_requests as f64 * RUN.as_secs_f64());
        let (binding, util) = [("rpm", rpm_util), ("tpm", tpm_util), ("parallel", par_util)]
            .into_iter()
            .fold(("", 0.0), |best, x| if x.1 > best.1 { x } else { best });
        worst_binding = worst_binding.min(util);
        println!(
            "{:<14} {:>9} {:>10} {:>5} {:>9}/{:<3} {:>8.1} {:>8.1} {:>8.1}  {binding} {util:.1}%",
            w.name,
            m.requests,
            m.tokens,
            m.violations,
            m.peak_parallel,
            w.limits.max_parallel_requests,
            rpm_util,
            tpm_util,
            par_util
        );
    }
    let leaked: u64 = limiter.stats().values().map(|s| s.active.used).sum();
    println!();
    println!(
        "{} simulated minutes in {:.2?} real; of {offered} offered: {served} served, \
         {in_flight} in flight and {queued} still queued at the end (both abandoned); \
         slots held after: {leaked}",
        RUN.as_secs() / 60,
        real.elapsed()
    );
    // Cross-check the limiter's side against the provider's: every admitted request reached
    // the provider exactly once (served, or answered 429).
    let reached: u64 = p.models.values().map(|m| m.requests + m.violations).sum();
    let unaccounted = reached != admitted.get() as u64;
    println!("utilization of the binding limit: worst model {worst_binding:.1}%");
    if violations > 0 || leaked > 0 || unaccounted {
        eprintln!(
            "FAILED: {violations} rate-limit violations (429s), {leaked} leaked slots, \
             {} admitted but {reached} reached the provider",
            admitted.get()
        );
        std::process::exit(1);
    }
    println!("OK: 0 violations");
}
