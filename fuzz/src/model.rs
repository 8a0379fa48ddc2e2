//! `model` target: a `ModelRateLimiter` over a `ManualClock`, driven by a single-threaded
//! `LocalPool` (`run_until_stalled` after every operation, so only woken tasks are polled and
//! a lost wake-up shows up as a request that never resolves).
//!
//! Input: 1–3 named configs plus the default (any of them may contain zeros: construction
//! must then fail, never panic), model names (empty, long, unicode, duplicates), and a
//! sequence of operations: start an acquire (plain or with a max wait; estimate anywhere from
//! 0 past `tpm` to `u64::MAX`), settle or drop a held permit (actual anywhere, `u64::MAX`
//! included), cancel a pending acquire (dropping its future), move the clock (forwards, by
//! years, backwards, to the end of its range, to the next sleeper's deadline), read stats.
//!
//! Checked (ARCHITECTURE.md invariants):
//! - 1 RPM: among admissions of a model whose clock readings are within 60 s of each other —
//!   and with no backwards clock step between them, after which the limiter rightly counts
//!   time from the latest instant it saw — at most `rpm`;
//! - 2 TPM: at each admission, its estimate plus what the earlier such admissions are charged
//!   (settled amount if settled by then, else the estimate) ≤ `tpm` (skipped for a model once
//!   its charges could have saturated a `u64` counter);
//! - 3 in flight (admitted and not ended) ≤ `max_parallel_requests`; `stats().active` within
//!   `[held permits, max_parallel_requests]`; `stats().requests.used ≤ rpm`;
//! - 4 at the end, with every permit dropped and every acquire resolved or cancelled,
//!   `active == 0` for every model;
//! - 5 `InsufficientCapacity` exactly when `estimated > tpm`, and at the first poll; a plain
//!   acquire never fails otherwise; `MaxWaitExceeded` only with a max wait;
//! - nothing hangs: once every permit is released, advancing the clock to each next deadline
//!   resolves every pending acquire (unless the clock is at the end of its range).

use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::{Poll, Waker};
use core::time::Duration;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::string::String;
use std::sync::Arc;
use std::vec::Vec;

use arbitrary::{Arbitrary, Unstructured};
use futures_executor::LocalPool;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::task::LocalSpawnExt;
use tollgate::{Clock, Error, Instant, ManualClock, ModelRateLimiter, RateLimitConfig};

const WINDOW: u64 = 60_000_000_000;
const YEAR: u64 = 365 * 86_400_000_000_000;
/// Keep each run small: tasks are cheap, but the checks scan the admission log.
const MAX_MODEL_OPS: usize = 128;

type Lim = ModelRateLimiter<Arc<ManualClock>>;

#[derive(Arbitrary, Debug, Clone)]
enum NameIn {
    Empty,
    Short(u8),
    Text(String),
    Long { len: u16, c: char },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum RpmIn {
    Zero,
    Small(u8),
    Any(u32),
    Max,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum TpmIn {
    Zero,
    Small(u16),
    Medium(u32),
    Any(u64),
    Max,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ParIn {
    Zero,
    Small(u8),
    Any(u32),
    Max,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct ConfigIn {
    rpm: RpmIn,
    tpm: TpmIn,
    par: ParIn,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum TokensIn {
    Zero,
    Small(u16),
    PerMilleOfTpm(u16),
    Tpm,
    TpmPlusOne,
    Max,
    Any(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum WaitIn {
    Millis(u16),
    Secs(u16),
    Zero,
    Max,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum StepIn {
    Millis(u16),
    Secs(u16),
    Minutes(u8),
    Years(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum OpIn {
    Acquire {
        model: u8,
        est: TokensIn,
        wait: Option<WaitIn>,
    },
    /// Settle (with `Some`) or drop a held permit.
    Release {
        pick: u8,
        actual: Option<TokensIn>,
    },
    Cancel {
        pick: u8,
    },
    Forward(StepIn),
    Back(StepIn),
    SetNearMax(u32),
    SetLow(u64),
    NextDeadline,
    Stats,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    Pending,
    Held,
    Failed(Error),
    Ended,
    Cancelled,
}

#[derive(Debug, Clone, Copy)]
enum Cmd {
    Settle(u64),
    Drop,
}

/// What the harness and one acquire task share.
struct Shared {
    status: Cell<Status>,
    cmd: Cell<Option<Cmd>>,
    waker: RefCell<Option<Waker>>,
}

impl Shared {
    fn send(&self, cmd: Cmd) {
        self.cmd.set(Some(cmd));
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Admitted { req: usize, at: Instant, segment: u32 },
    Ended { req: usize, charge: u64 },
}

struct Req {
    name: usize,
    est: u64,
    cfg: RateLimitConfig,
    within: bool,
    shared: Rc<Shared>,
    abort: AbortHandle,
    /// (event index, clock reading, clock segment) of its admission.
    admitted: Option<(usize, Instant, u32)>,
    /// The current charge and the event index from which it holds.
    charge: u64,
    settled: Option<(usize, u64)>,
}

/// Runs one model-limiter case.
pub fn run_model(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
}

fn name_of(n: &NameIn) -> String {
    match n {
        NameIn::Empty => String::new(),
        NameIn::Short(k) => format!("m{}", k % 4),
        NameIn::Text(s) => s.clone(),
        NameIn::Long { len, c } => core::iter::repeat_n(*c, *len as usize % 5_000).collect(),
    }
}

fn config_of(c: ConfigIn) -> RateLimitConfig {
    RateLimitConfig {
        rpm: match c.rpm {
            RpmIn::Zero => 0,
            RpmIn::Small(n) => 1 + n as u32 % 8,
            RpmIn::Any(n) => n,
            RpmIn::Max => u32::MAX,
        },
        tpm: match c.tpm {
            TpmIn::Zero => 0,
            TpmIn::Small(n) => n as u64,
            TpmIn::Medium(n) => n as u64,
            TpmIn::Any(n) => n,
            TpmIn::Max => u64::MAX,
        },
        max_parallel_requests: match c.par {
            ParIn::Zero => 0,
            ParIn::Small(n) => 1 + n as u32 % 4,
            ParIn::Any(n) => n % 100_000, // 0 sometimes: invalid
            ParIn::Max => u32::MAX,
        },
        ..Default::default()
    }
}

fn valid(c: &RateLimitConfig) -> bool {
    c.rpm > 0 && c.tpm > 0 && c.max_parallel_requests > 0
}

fn tokens_of(t: TokensIn, tpm: u64) -> u64 {
    match t {
        TokensIn::Zero => 0,
        TokensIn::Small(n) => n as u64,
        TokensIn::PerMilleOfTpm(pm) => (tpm as u128 * (pm % 1001) as u128 / 1000) as u64,
        TokensIn::Tpm => tpm,
        TokensIn::TpmPlusOne => tpm.saturating_add(1),
        TokensIn::Max => u64::MAX,
        TokensIn::Any(n) => n,
    }
}

fn wait_of(w: WaitIn) -> Duration {
    match w {
        WaitIn::Millis(n) => Duration::from_millis(n as u64),
        WaitIn::Secs(n) => Duration::from_secs(n as u64),
        WaitIn::Zero => Duration::ZERO,
        WaitIn::Max => Duration::MAX,
    }
}

fn step_of(s: StepIn) -> u64 {
    match s {
        StepIn::Millis(n) => n as u64 * 1_000_000,
        StepIn::Secs(n) => n as u64 * 1_000_000_000,
        StepIn::Minutes(n) => n as u64 * 60_000_000_000,
        StepIn::Years(y) => (y as u64 % 128) * YEAR,
        StepIn::Any(n) => n,
    }
}

struct Harness {
    pool: LocalPool,
    clock: Arc<ManualClock>,
    limiter: Rc<Lim>,
    names: Vec<String>,
    /// The config each name runs under (later duplicates win, as in a map).
    configs: Vec<RateLimitConfig>,
    reqs: Vec<Req>,
    log: Rc<RefCell<Vec<Event>>>,
    /// Events already checked.
    seen: usize,
    /// Bumped whenever the clock is set backwards.
    segment: Rc<Cell<u32>>,
    /// Admitted and not yet ended, per name.
    in_flight: Vec<u64>,
    /// Sum of every charge ever made per name (u128): past `u64::MAX` a counter may saturate.
    charged_ever: Vec<u128>,
    /// At teardown: tasks drop their permit as soon as they are admitted.
    auto_drop: Rc<Cell<bool>>,
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let default_cfg = config_of(u.arbitrary()?);
    let n_models = u.int_in_range(1..=3)?;
    let mut named: Vec<(String, RateLimitConfig)> = Vec::new();
    for _ in 0..n_models {
        let name = name_of(&u.arbitrary()?);
        named.push((name, config_of(u.arbitrary()?)));
    }
    let clock = Arc::new(ManualClock::starting_at(Instant::from_nanos(
        u.arbitrary::<u32>()? as u64 * 1_000_000,
    )));
    let built =
        ModelRateLimiter::with_timer(named.iter().cloned(), default_cfg.clone(), clock.clone());
    let all_valid = valid(&default_cfg) && named.iter().all(|(_, c)| valid(c));
    let limiter = match built {
        Ok(l) => {
            assert!(all_valid, "accepted an invalid config: {default_cfg:?} {named:?}");
            l
        }
        Err(e) => {
            assert!(!all_valid, "rejected valid configs: {e}");
            return Ok(());
        }
    };

    // Names in play: the configured ones, plus up to two unknown ones (default config).
    let mut names: Vec<String> = Vec::new();
    let mut configs: Vec<RateLimitConfig> = Vec::new();
    let mut map: BTreeMap<String, RateLimitConfig> = BTreeMap::new();
    for (name, cfg) in &named {
        map.insert(name.clone(), cfg.clone());
    }
    for (name, _) in &named {
        if !names.contains(name) {
            names.push(name.clone());
            configs.push(map[name].clone());
        }
    }
    for _ in 0..u.int_in_range(0..=2)? {
        let name = name_of(&u.arbitrary()?);
        if !names.contains(&name) {
            configs.push(map.get(&name).unwrap_or(&default_cfg).clone());
            names.push(name);
        }
    }
    for (name, cfg) in names.iter().zip(&configs) {
        assert_eq!(limiter.config(name), *cfg, "config of {name:?}");
    }
    let stats = limiter.stats();
    for (name, _) in &named {
        assert!(stats.contains_key(name), "stats() misses configured model {name:?}");
    }

    let k = names.len();
    if crate::debug() {
        eprintln!(
            "model: default {default_cfg:?}, named {named:?}, names {names:?}, clock {:?}",
            clock.now()
        );
    }
    let mut h = Harness {
        pool: LocalPool::new(),
        clock,
        limiter: Rc::new(limiter),
        names,
        configs,
        reqs: Vec::new(),
        log: Rc::new(RefCell::new(Vec::new())),
        seen: 0,
        segment: Rc::new(Cell::new(0)),
        in_flight: vec![0; k],
        charged_ever: vec![0; k],
        auto_drop: Rc::new(Cell::new(false)),
    };

    for _ in 0..MAX_MODEL_OPS {
        if u.is_empty() {
            break;
        }
        let op: OpIn = u.arbitrary()?;
        if crate::debug() {
            eprintln!("op: {op:?}");
        }
        h.apply(op);
        h.stall();
        h.check_stats();
    }
    h.teardown();
    Ok(())
}

impl Harness {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn set_clock(&mut self, t: Instant) {
        if t < self.now() {
            self.segment.set(self.segment.get() + 1);
        }
        self.clock.set(t);
    }

    fn apply(&mut self, op: OpIn) {
        match op {
            OpIn::Acquire { model, est, wait } => {
                let name = model as usize % self.names.len();
                let cfg = self.configs[name].clone();
                let est = tokens_of(est, cfg.tpm);
                self.start(name, est, wait.map(wait_of));
            }
            OpIn::Release { pick, actual } => {
                let held: Vec<usize> = (0..self.reqs.len())
                    .filter(|&i| self.reqs[i].shared.status.get() == Status::Held)
                    .collect();
                if held.is_empty() {
                    return;
                }
                let r = &self.reqs[held[pick as usize % held.len()]];
                let cmd = match actual {
                    Some(a) => Cmd::Settle(tokens_of(a, r.cfg.tpm)),
                    None => Cmd::Drop,
                };
                r.shared.send(cmd);
            }
            OpIn::Cancel { pick } => {
                let pending: Vec<usize> = (0..self.reqs.len())
                    .filter(|&i| self.reqs[i].shared.status.get() == Status::Pending)
                    .collect();
                if pending.is_empty() {
                    return;
                }
                self.reqs[pending[pick as usize % pending.len()]].abort.abort();
            }
            OpIn::Forward(s) => self.clock.advance(Duration::from_nanos(step_of(s))),
            OpIn::Back(s) => {
                let t = Instant::from_nanos(self.now().as_nanos().saturating_sub(step_of(s)));
                self.set_clock(t);
            }
            OpIn::SetNearMax(back) => self.set_clock(Instant::from_nanos(u64::MAX - back as u64)),
            OpIn::SetLow(x) => self.set_clock(Instant::from_nanos(x % (1 << 50))),
            OpIn::NextDeadline => {
                self.clock.advance_to_next_deadline();
            }
            OpIn::Stats => {
                let stats = self.limiter.stats();
                for name in &self.names {
                    // Every model used so far is listed (and configured ones always are).
                    let used = self.reqs.iter().any(|r| &self.names[r.name] == name);
                    assert!(!used || stats.contains_key(name), "stats() misses {name:?}");
                }
            }
        }
    }

    fn start(&mut self, name: usize, est: u64, wait: Option<Duration>) {
        let shared = Rc::new(Shared {
            status: Cell::new(Status::Pending),
            cmd: Cell::new(None),
            waker: RefCell::new(None),
        });
        let req = self.reqs.len();
        let (abort, reg) = AbortHandle::new_pair();
        let (limiter, clock, log, segment, auto_drop, sh) = (
            self.limiter.clone(),
            self.clock.clone(),
            self.log.clone(),
            self.segment.clone(),
            self.auto_drop.clone(),
            shared.clone(),
        );
        let model = self.names[name].clone();
        let task = async move {
            let res = match wait {
                None => limiter.acquire(&model, est).await,
                Some(w) => limiter.acquire_within(&model, est, w).await,
            };
            let permit = match res {
                Ok(p) => p,
                Err(e) => {
                    sh.status.set(Status::Failed(e));
                    return;
                }
            };
            assert_eq!(permit.estimated_tokens(), est);
            log.borrow_mut().push(Event::Admitted { req, at: clock.now(), segment: segment.get() });
            sh.status.set(Status::Held);
            let cmd = poll_fn(|cx| {
                if auto_drop.get() {
                    return Poll::Ready(Cmd::Drop);
                }
                match sh.cmd.take() {
                    Some(c) => Poll::Ready(c),
                    None => {
                        *sh.waker.borrow_mut() = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            })
            .await;
            let charge = match cmd {
                Cmd::Settle(a) => {
                    permit.settle(a);
                    a
                }
                Cmd::Drop => {
                    drop(permit);
                    est
                }
            };
            log.borrow_mut().push(Event::Ended { req, charge });
            sh.status.set(Status::Ended);
        };
        let sh = shared.clone();
        let wrapped = async move {
            if Abortable::new(task, reg).await.is_err() {
                // Aborted: the acquire future (or a held permit) was dropped.
                match sh.status.get() {
                    Status::Pending => sh.status.set(Status::Cancelled),
                    s => panic!("aborted a request in state {s:?}"),
                }
            }
        };
        self.pool.spawner().spawn_local(wrapped).expect("spawn");
        self.reqs.push(Req {
            name,
            est,
            cfg: self.configs[name].clone(),
            within: wait.is_some(),
            shared,
            abort,
            admitted: None,
            charge: est,
            settled: None,
        });
        self.stall();
        // Invariant 5: a request that can never fit fails at its first poll.
        let r = &self.reqs[req];
        if est > r.cfg.tpm {
            assert_eq!(
                r.shared.status.get(),
                Status::Failed(Error::InsufficientCapacity { requested: est, capacity: r.cfg.tpm }),
                "estimate {est} > tpm {} did not fail at once",
                r.cfg.tpm
            );
        }
    }

    /// Runs every woken task until all are stuck, then checks the new events.
    fn stall(&mut self) {
        self.pool.run_until_stalled();
        self.check_events();
        for r in &self.reqs {
            if let Status::Failed(e) = r.shared.status.get() {
                match e {
                    Error::InsufficientCapacity { requested, capacity } => {
                        assert!(
                            r.est > r.cfg.tpm,
                            "estimate {} <= tpm {} refused",
                            r.est,
                            r.cfg.tpm
                        );
                        assert_eq!((requested, capacity), (r.est, r.cfg.tpm));
                    }
                    Error::MaxWaitExceeded { ready_at } => {
                        // A plain acquire fails only for "never": room only after the end of
                        // the clock.
                        assert!(
                            r.within || ready_at == Instant::MAX,
                            "a plain acquire failed with {e:?}"
                        );
                        assert!(r.est <= r.cfg.tpm);
                    }
                    other => panic!("unexpected acquire error {other:?}"),
                }
            }
        }
    }

    fn check_events(&mut self) {
        let events: Vec<Event> = self.log.borrow()[self.seen..].to_vec();
        for (off, e) in events.into_iter().enumerate() {
            let idx = self.seen + off;
            match e {
                Event::Admitted { req, at, segment } => {
                    let name = self.reqs[req].name;
                    let cfg = self.reqs[req].cfg.clone();
                    let est = self.reqs[req].est;
                    assert!(est <= cfg.tpm);
                    self.in_flight[name] += 1;
                    assert!(
                        self.in_flight[name] <= cfg.max_parallel_requests as u64,
                        "{} in flight > max_parallel_requests {}",
                        self.in_flight[name],
                        cfg.max_parallel_requests
                    );
                    // Admissions of the same model within 60 s before, in the same segment.
                    let mut count: u64 = 1;
                    let mut charged: u128 = 0;
                    for r in &self.reqs {
                        let Some((_, u, seg)) = r.admitted else {
                            continue;
                        };
                        if r.name != name || seg != segment || u > at {
                            continue;
                        }
                        if at.as_nanos() - u.as_nanos() >= WINDOW {
                            continue;
                        }
                        count += 1;
                        charged += match r.settled {
                            Some((_, c)) => c as u128,
                            None => r.est as u128,
                        };
                    }
                    assert!(
                        count <= cfg.rpm as u64,
                        "rpm: {count} admissions within 60 s of {at:?}, rpm {}",
                        cfg.rpm
                    );
                    self.charged_ever[name] += est as u128;
                    if self.charged_ever[name] <= u64::MAX as u128 {
                        assert!(
                            charged + est as u128 <= cfg.tpm as u128,
                            "tpm: {charged} charged + {est} estimated > tpm {} at {at:?}",
                            cfg.tpm
                        );
                    }
                    self.reqs[req].admitted = Some((idx, at, segment));
                }
                Event::Ended { req, charge } => {
                    let name = self.reqs[req].name;
                    self.in_flight[name] -= 1;
                    let r = &mut self.reqs[req];
                    self.charged_ever[name] += charge as u128;
                    r.charge = charge;
                    r.settled = Some((idx, charge));
                }
            }
        }
        self.seen = self.log.borrow().len();
    }

    fn check_stats(&self) {
        let stats = self.limiter.stats();
        for (i, name) in self.names.iter().enumerate() {
            let Some(s) = stats.get(name) else { continue };
            let cfg = &self.configs[i];
            assert_eq!(s.active.limit, cfg.max_parallel_requests as u64);
            assert_eq!(s.requests.limit, cfg.rpm as u64);
            assert_eq!(s.tokens.limit, cfg.tpm);
            assert!(s.active.used <= s.active.limit, "active {}", s.active);
            assert!(
                s.active.used >= self.in_flight[i],
                "active {} below the {} permits held",
                s.active,
                self.in_flight[i]
            );
            assert!(s.requests.used <= s.requests.limit, "requests {}", s.requests);
        }
    }

    fn pending(&self) -> usize {
        self.reqs.iter().filter(|r| r.shared.status.get() == Status::Pending).count()
    }

    fn teardown(&mut self) {
        // Release every permit, and have every later admission release at once.
        self.auto_drop.set(true);
        for r in &self.reqs {
            if r.shared.status.get() == Status::Held {
                r.shared.send(Cmd::Drop);
            }
        }
        self.stall();
        // Nothing hangs: with nothing held, moving the clock to each next deadline resolves
        // every pending acquire. Near the end of the clock's range windows never empty
        // before it ends, so there only cancellation is checked.
        if self.now().as_nanos() < u64::MAX - 10 * YEAR {
            let mut steps = 0;
            while self.pending() > 0 {
                steps += 1;
                assert!(steps < 100_000, "acquires still pending after {steps} clock moves");
                let moved = self.clock.advance_to_next_deadline();
                self.stall();
                assert!(
                    moved || self.pending() == 0,
                    "{} acquires pending with nobody sleeping: a lost wake-up",
                    self.pending()
                );
            }
        }
        for r in &self.reqs {
            r.abort.abort();
        }
        self.stall();
        for r in &self.reqs {
            let s = r.shared.status.get();
            assert!(
                matches!(s, Status::Ended | Status::Failed(_) | Status::Cancelled),
                "request left in state {s:?}"
            );
        }
        // Invariant 4: nothing leaks.
        for (name, s) in self.limiter.stats() {
            assert_eq!(s.active.used, 0, "model {name:?} still has {} active", s.active);
        }
        assert!(self.in_flight.iter().all(|&n| n == 0));
    }
}
