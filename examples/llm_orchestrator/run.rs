//! One run of the job: every workload's requests (and, if asked, a neighbour on the same API
//! key that started a minute earlier) against a fresh provider and a fresh limiter, with or
//! without feedback, until every request has been served — each 429 is retried — or a cap
//! where whatever is left is abandoned (dropped mid-wait or mid-call, which must leak nothing).

use core::cell::{Cell, RefCell};
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use tokio::time::Instant;
use tollgate_tokio::RateLimitConfig;

use super::client::{self, Limiter};
use super::provider::{Ask, Binding, Client, Model, Quota, Served, Style, WINDOW};
use super::wire::WALL_AT_START;

/// How long the job's requests keep arriving.
pub const ARRIVALS: Duration = Duration::from_secs(600);
/// When a run gives up on what is left.
const CAP: Duration = Duration::from_secs(3_600);
/// How far ahead of the job the neighbour starts: a full window, so the job's first minute
/// already finds the neighbour's share used.
const LEAD: Duration = WINDOW;

/// One model: its limits at the provider and in the limiter, and the shape of its traffic.
pub struct Workload {
    pub name: &'static str,
    pub style: Style,
    pub quota: Quota,
    pub binding: Binding,
    pub limits: RateLimitConfig,
    /// Mean gap between arrivals (uniform in 0 to twice this).
    pub arrival_gap: Duration,
    /// Prompt tokens, uniform in this range.
    pub input: (u64, u64),
    /// `max_tokens`, uniform in this range.
    pub max_output: (u64, u64),
    /// What a request really produces, in percent of its `max_tokens`, uniform.
    pub output_pct: (u64, u64),
    /// Provider latency, uniform in this range.
    pub latency: (Duration, Duration),
    /// The other client on the same key: one request of this size every `gap`.
    pub neighbour: NeighbourLoad,
}

/// The neighbour's steady traffic on one model.
#[derive(Clone, Copy)]
pub struct NeighbourLoad {
    pub gap: Duration,
    pub ask: Ask,
    pub output: u64,
    pub latency: Duration,
}

impl NeighbourLoad {
    /// Its use of the binding limit per window.
    pub fn per_window(&self, binding: Binding) -> u64 {
        let each = binding.weight(self.ask.input + self.output, self.output);
        each * WINDOW.as_millis() as u64 / self.gap.as_millis() as u64
    }
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub neighbour: bool,
    pub feedback: bool,
}

/// One request of the job, drawn before the run so every run gets the same traffic.
#[derive(Clone, Copy)]
struct Job {
    at: Duration,
    ask: Ask,
    output: u64,
    latency: Duration,
}

/// One model's figures from one run.
pub struct ModelRun {
    pub binding: Binding,
    pub limit: u64,
    pub offered: usize,
    /// What of it was admitted while more kept arriving (the first [`ARRIVALS`]).
    pub job_busy: Served,
    pub neighbour: Served,
    /// When each of the job's 429s came, since the job's start.
    pub job_429s: Vec<Duration>,
    /// Cooldowns the job's 429s started (a 429 inside a running cooldown extends it).
    pub cooldowns: u32,
    /// From the job's start to its last request's end.
    pub total: Duration,
    /// The least time the capacity the neighbour leaves allows (see [`ideal`]).
    pub ideal: Duration,
    /// Each second (since the job's start, negative during the neighbour's lead): the
    /// neighbour's and the job's use of the binding limit in the window ending then.
    pub series: Vec<(f64, u64, u64)>,
}

/// A whole run's figures.
pub struct Report {
    pub setup: Setup,
    pub models: Vec<ModelRun>,
    pub real: Duration,
    pub abandoned: usize,
    pub leaked: u64,
    /// Admissions by the limiter that never reached the provider (must be 0).
    pub unaccounted: u64,
}

/// SplitMix64: a tiny deterministic generator, so every run offers the same traffic. (The
/// figures still move by a 429 or a second between runs: the limiter's one-second slots are
/// aligned on the tokio adapter's clock origin, which it takes from the real clock.)
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn duration(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        Duration::from_nanos(self.between((lo.as_nanos() as u64, hi.as_nanos() as u64)))
    }
}

fn draw(w: &Workload, rng: &mut Rng) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut at = Duration::ZERO;
    loop {
        at += rng.duration((Duration::ZERO, w.arrival_gap * 2));
        if at >= ARRIVALS {
            return jobs;
        }
        let ask = Ask { input: rng.between(w.input), max_output: rng.between(w.max_output) };
        let output = ask.max_output * rng.between(w.output_pct) / 100;
        jobs.push(Job { at, ask, output, latency: rng.duration(w.latency) });
    }
}

/// The least time in which `jobs` can all be served when `room` of the binding limit is left
/// per window: a greedy oracle that knows every request's real size, admits each one as soon
/// as it has arrived and the window has room (for output tokens, as the provider's rule: as
/// soon as the window is not full), and waits for its latency.
fn ideal(jobs: &[Job], binding: Binding, room: u64) -> Duration {
    let mut window: VecDeque<(Duration, u64)> = VecDeque::new();
    let mut used = 0;
    let mut clock = Duration::ZERO;
    let mut end = Duration::ZERO;
    for job in jobs {
        let weight = binding.weight(job.ask.input + job.output, job.output).min(room);
        clock = clock.max(job.at);
        loop {
            while window.front().is_some_and(|&(t, _)| clock >= t + WINDOW) {
                used -= window.pop_front().unwrap().1;
            }
            // Output tokens are not known at admission: the rule is only "not full yet".
            let fits = match binding {
                Binding::OutputTokens => used < room,
                _ => used + weight <= room,
            };
            if fits {
                break;
            }
            clock = window.front().unwrap().0 + WINDOW;
        }
        window.push_back((clock, weight));
        used += weight;
        end = end.max(clock + job.latency);
    }
    end
}

/// Runs `workloads` once as `setup` says. Needs a paused tokio clock (ten minutes of traffic
/// pass in well under a second).
pub async fn run(workloads: &[Workload], setup: Setup) -> Report {
    let real = std::time::Instant::now();
    let limiter = Rc::new(
        Limiter::new(
            workloads.iter().map(|w| (w.name, w.limits.clone())),
            RateLimitConfig::default(),
        )
        .expect("valid limits"),
    );
    let t0 = Instant::now();
    let start = if setup.neighbour { t0 + LEAD } else { t0 };
    let provider: Rc<BTreeMap<&'static str, RefCell<Model>>> = Rc::new(
        workloads
            .iter()
            .map(|w| (w.name, RefCell::new(Model::new(w.style, w.quota, start, ARRIVALS))))
            .collect(),
    );
    let wall = move || WALL_AT_START + Instant::now().saturating_duration_since(start);

    let local = tokio::task::LocalSet::new();
    let mut rng = Rng(0x7011_6a7e);
    let mut handles = Vec::new();
    let admitted = Rc::new(Cell::new(0u64));
    let finished = Rc::new(Cell::new(0usize));
    let mut offered = 0;
    let mut per_model = Vec::new();
    for w in workloads {
        let jobs = draw(w, &mut rng);
        offered += jobs.len();
        let room = w.binding.limit(&w.quota)
            - if setup.neighbour { w.neighbour.per_window(w.binding) } else { 0 };
        let ideal = ideal(&jobs, w.binding, room);
        let last_end = Rc::new(Cell::new(Duration::ZERO));
        let cooldowns = Rc::new(Cell::new(0u32));
        let cooling_until = Rc::new(Cell::new(start));
        per_model.push((jobs.len(), ideal, last_end.clone(), cooldowns.clone()));
        for job in jobs {
            let (limiter, provider, admitted, finished) =
                (limiter.clone(), provider.clone(), admitted.clone(), finished.clone());
            let (last_end, cooldowns, cooling_until) =
                (last_end.clone(), cooldowns.clone(), cooling_until.clone());
            let (name, style) = (w.name, w.style);
            handles.push(local.spawn_local(async move {
                tokio::time::sleep_until(start + job.at).await;
                loop {
                    let permit = client::admit(&limiter, name, job.ask)
                        .await
                        .expect("fits the model's limits");
                    admitted.set(admitted.get() + 1);
                    let begun =
                        provider[name].borrow_mut().begin(Instant::now(), Client::Job, job.ask);
                    match begun {
                        Ok(id) => {
                            tokio::time::sleep(job.latency).await;
                            let answer = provider[name].borrow_mut().end(
                                Instant::now(),
                                Client::Job,
                                id,
                                job.ask,
                                job.output,
                            );
                            if setup.feedback {
                                let (ask, output) = (job.ask, job.output);
                                client::settle_and_observe(
                                    permit,
                                    ask,
                                    output,
                                    style,
                                    &answer,
                                    wall(),
                                );
                            } else {
                                client::settle(permit, job.ask, job.output);
                            }
                            break;
                        }
                        Err(answer) => {
                            // A cooldown episode: a 429 after the last one's wait is over.
                            let now = Instant::now();
                            if now >= cooling_until.get() {
                                cooldowns.set(cooldowns.get() + 1);
                            }
                            let wait = retry_after(&answer.headers);
                            cooling_until.set(cooling_until.get().max(now + wait));
                            if setup.feedback {
                                let report =
                                    client::observe(&limiter, name, style, &answer, wall());
                                client::rate_limited(permit, &report, &answer);
                            } else {
                                // Headers ignored: the permit is dropped (its estimate stays
                                // charged) and the request queues again at once.
                                drop(permit);
                            }
                        }
                    }
                }
                last_end.set(last_end.get().max(Instant::now() - start));
                finished.set(finished.get() + 1);
            }));
        }
        if setup.neighbour {
            let (provider, n, name) = (provider.clone(), w.neighbour, w.name);
            handles.push(local.spawn_local(async move {
                let mut tick = tokio::time::interval_at(t0, n.gap);
                loop {
                    tick.tick().await;
                    let provider = provider.clone();
                    tokio::task::spawn_local(async move {
                        let begun = provider[name].borrow_mut().begin(
                            Instant::now(),
                            Client::Neighbour,
                            n.ask,
                        );
                        if let Ok(id) = begun {
                            tokio::time::sleep(n.latency).await;
                            provider[name].borrow_mut().end(
                                Instant::now(),
                                Client::Neighbour,
                                id,
                                n.ask,
                                n.output,
                            );
                        }
                    });
                }
            }));
        }
    }

    // Sample every second until the job is done or the cap.
    let series = {
        let (provider, finished) = (provider.clone(), finished.clone());
        let bindings: Vec<_> = workloads.iter().map(|w| (w.name, w.binding)).collect();
        local
            .run_until(async move {
                let mut series: Vec<Vec<(f64, u64, u64)>> = vec![Vec::new(); bindings.len()];
                let mut tick = tokio::time::interval_at(t0, Duration::from_secs(1));
                loop {
                    let now = tick.tick().await;
                    let since = now.duration_since(t0).as_secs_f64() - (start - t0).as_secs_f64();
                    for (i, (name, binding)) in bindings.iter().enumerate() {
                        let (theirs, ours) = provider[name].borrow_mut().usage_by(now, *binding);
                        series[i].push((since, theirs, ours));
                    }
                    if finished.get() == offered || now >= start + CAP {
                        return series;
                    }
                }
            })
            .await
    };
    let abandoned = offered - finished.get();
    for h in &handles {
        h.abort();
    }
    local.run_until(tokio::task::yield_now()).await;
    drop(local);

    let leaked: u64 = limiter.stats().values().map(|s| s.active.used).sum();
    let reached: u64 = provider
        .values()
        .map(|m| {
            let m = m.borrow();
            m.job.requests + m.job.rejected
        })
        .sum();
    let models = workloads
        .iter()
        .zip(per_model)
        .zip(series)
        .map(|((w, (offered, ideal, last_end, cooldowns)), series)| {
            let m = provider[w.name].borrow();
            ModelRun {
                binding: w.binding,
                limit: w.binding.limit(&w.quota),
                offered,
                job_busy: m.job_busy.clone(),
                neighbour: m.neighbour.clone(),
                job_429s: m.job_429s.clone(),
                cooldowns: cooldowns.get(),
                total: last_end.get(),
                ideal,
                series,
            }
        })
        .collect();
    Report {
        setup,
        models,
        real: real.elapsed(),
        abandoned,
        leaked,
        unaccounted: admitted.get().abs_diff(reached),
    }
}

/// A 429's wait as the provider said it: `retry-after-ms`, else `retry-after` seconds.
fn retry_after(headers: &[(&'static str, String)]) -> Duration {
    let get = |n: &str| headers.iter().find(|h| h.0 == n).and_then(|h| h.1.parse::<u64>().ok());
    get("retry-after-ms")
        .map(Duration::from_millis)
        .or_else(|| get("retry-after").map(Duration::from_secs))
        .unwrap_or_default()
}
