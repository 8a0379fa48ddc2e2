//! Parity: the Redis scripts of the admission rule (on a test clock) and tollgate's
//! `MemoryStore` make identical decisions over random operation sequences: admits, earliest
//! instants, settles (refunds and excesses, late ones included) and usage, with a clock that
//! moves by parts of a slot, by whole windows, and now and then backwards. Then the same with
//! several operations decided in ONE script call at one instant (admit then settle of that
//! admission, two settles in one slot, settles after the state was lost, reads right after an
//! admit), against `MemoryStore` doing them one by one: state carried between the operations
//! of one call must be what a fresh call would read.

mod support;

use core::time::Duration;

use tollgate::model::{Charge, Counts, Estimate, Limit, LimitKind, MemoryStore, StateStore, Wait};
use tollgate::{Instant, Rate};
use tollgate_redis::testing::{Drain, ParityStore, RuleAnswer, RuleOp};

/// Seeded operation picker (fastrand's wyrand: small, seedable, reproducible per seed).
struct Rng(fastrand::Rng);

impl Rng {
    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        self.0.u64(0..=max)
    }

    /// A fair coin.
    fn bool(&mut self) -> bool {
        self.0.bool()
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// The finest step of the limits' clocks: a slot, or one token's time.
fn grain(limits: &[Limit]) -> u64 {
    limits
        .iter()
        .map(|l| match l.kind {
            LimitKind::Window { window, slots } => nanos(window) / u64::from(slots),
            LimitKind::Bucket { rate } => nanos(rate.period()) / rate.count(),
        })
        .min()
        .unwrap()
        .max(1)
}

/// The longest memory of the limits: a window, or the time a full bucket takes to drain.
fn longest(limits: &[Limit]) -> u64 {
    limits
        .iter()
        .map(|l| match l.kind {
            LimitKind::Window { window, .. } => nanos(window),
            LimitKind::Bucket { rate } => nanos(rate.period()) * l.max / rate.count(),
        })
        .max()
        .unwrap()
}

/// Runs `steps` random operations on both stores and panics at the first difference.
fn compare(
    limits: &[Limit],
    a: &dyn StateStore,
    b: &dyn StateStore,
    seed: u64,
    steps: usize,
) -> (usize, usize) {
    let mut rng = Rng(fastrand::Rng::with_seed(seed));
    let cap =
        limits.iter().filter(|l| l.counts == Counts::Tokens).map(|l| l.max).min().unwrap_or(1_000);
    let grain = grain(limits);
    let longest = longest(limits);
    let mut now = rng.upto(1 << 40);
    let mut held: Vec<Charge> = Vec::new();
    let (mut admitted, mut refused) = (0, 0);
    let (mut ua, mut ub) = (Vec::new(), Vec::new());
    for step in 0..steps {
        now = match rng.upto(99) {
            0..=59 => now + rng.upto(grain * 2),
            60..=74 => now,
            75..=89 => now + rng.upto(longest),
            90..=96 => now.saturating_sub(rng.upto(grain * 3)),
            _ => now + longest * 2,
        };
        assert!(now < 1 << 51, "the test clock must stay exact in Lua");
        let t = Instant::from_nanos(now);
        let tokens = match rng.upto(9) {
            0 => 0,
            1 => cap,
            2..=5 => rng.upto(cap / 8),
            _ => rng.upto(cap),
        };
        let ctx = |op: &str| format!("seed {seed} step {step}: {op} at {now} ns");
        match rng.upto(9) {
            0..=4 => {
                let (x, y) = (a.admit_at(tokens, t), b.admit_at(tokens, t));
                assert_eq!(x, y, "{}", ctx(&format!("admit_at({tokens})")));
                match x {
                    Ok(c) => {
                        admitted += 1;
                        held.push(c);
                    }
                    Err(_) => refused += 1,
                }
            }
            5..=6 => {
                let (x, y) = (a.earliest_at(tokens, t), b.earliest_at(tokens, t));
                assert_eq!(x, y, "{}", ctx(&format!("earliest_at({tokens})")));
            }
            7..=8 if !held.is_empty() => {
                let c = held.swap_remove(rng.upto(held.len() as u64 - 1) as usize);
                let actual = match rng.upto(3) {
                    0 => c.tokens,
                    1 => 0,
                    _ => rng.upto(c.tokens * 2 + 8),
                };
                a.settle_at(c, actual, t);
                b.settle_at(c, actual, t);
            }
            _ => {}
        }
        a.usage_at(t, &mut ua);
        b.usage_at(t, &mut ub);
        assert_eq!(ua, ub, "{}", ctx("usage_at"));
    }
    (admitted, refused)
}

fn configs() -> Vec<(&'static str, Vec<Limit>)> {
    vec![
        (
            "rpm and tpm",
            vec![
                Limit::requests("rpm", 5, Duration::from_secs(60)),
                Limit::tokens("tpm", 1_000, Duration::from_secs(60)),
            ],
        ),
        (
            "short odd windows",
            vec![
                Limit::requests("r", 3, Duration::from_nanos(1_000_003)).with_slots(7),
                Limit::tokens("t", 500, Duration::from_millis(10)).with_slots(3),
                Limit::tokens("t2", 900, Duration::from_nanos(999)).with_slots(1),
            ],
        ),
        (
            "buckets",
            vec![
                Limit::bucket("rb", Counts::Requests, 3, Rate::new(2, Duration::from_nanos(7_000))),
                Limit::bucket(
                    "tb",
                    Counts::Tokens,
                    400,
                    Rate::new(1_000, Duration::from_micros(3)),
                ),
            ],
        ),
        (
            "mixed",
            vec![
                Limit::requests("rpm", 20, Duration::from_secs(60)),
                Limit::tokens("tpm", 3_000, Duration::from_secs(60)),
                Limit::requests("rph", 50, Duration::from_secs(3_600)).with_slots(24),
                Limit::bucket("burst", Counts::Tokens, 800, Rate::per_second(40)),
            ],
        ),
    ]
}

#[test]
fn scripts_decide_as_the_memory_store() {
    let Some(server) = support::RedisServer::start() else { return };
    let (mut total_admitted, mut total_refused) = (0, 0);
    for (ci, (name, limits)) in configs().into_iter().enumerate() {
        for seed in 0..4u64 {
            let key = format!("{{parity:{ci}:{seed}}}:s");
            let redis = ParityStore::new(&server.url(), &key, &limits).expect("parity store");
            let memory = MemoryStore::new(&limits);
            let (a, r) = compare(&limits, &memory, &redis, seed * 7 + ci as u64, 600);
            assert!(
                a > 0 && r > 0,
                "{name}, seed {seed}: {a} admitted, {r} refused: both outcomes must be exercised"
            );
            total_admitted += a;
            total_refused += r;
        }
    }
    eprintln!("parity: {total_admitted} admissions, {total_refused} refusals, identical");
}

/// Limits on input and output tokens apart, beside totals and requests.
fn io_configs() -> Vec<(&'static str, Vec<Limit>)> {
    let minute = Duration::from_secs(60);
    vec![
        (
            "input and output windows",
            vec![
                Limit::requests("rpm", 8, minute),
                Limit::window("itpm", Counts::InputTokens, 900, minute),
                Limit::window("otpm", Counts::OutputTokens, 400, minute).with_slots(6),
            ],
        ),
        (
            "all four, windows and buckets",
            vec![
                Limit::tokens("tpm", 2_000, Duration::from_millis(10)).with_slots(5),
                Limit::window("itpm", Counts::InputTokens, 700, Duration::from_micros(900)),
                Limit::bucket(
                    "ob",
                    Counts::OutputTokens,
                    300,
                    Rate::new(100, Duration::from_micros(7)),
                ),
                Limit::bucket(
                    "ib",
                    Counts::InputTokens,
                    500,
                    Rate::new(3, Duration::from_nanos(11)),
                ),
            ],
        ),
    ]
}

/// A store seen through a clock whose long idles are shortened: the core's harness jumps a
/// year now and then, past the scripts' exact range (2^52 ns), and after any idle longer than
/// every limit's memory both stores hold nothing, so a shorter idle decides the same. Instants
/// go in less the idles cut so far and come out plus them. A charge settled after a cut
/// lands earlier than it was made, which changes nothing: its slot has left every window and
/// its bucket charge has drained either way.
struct ShortIdles<'a> {
    inner: &'a ParityStore,
    /// The longest idle kept: four times the longest memory of the limits.
    keep: u64,
    /// Every cut is a whole number of this: a multiple of every window's slot, so slots keep
    /// their boundaries.
    grid: u64,
    /// (the latest instant seen, the time cut so far)
    clock: core::cell::Cell<(u64, u64)>,
}

impl<'a> ShortIdles<'a> {
    fn new(inner: &'a ParityStore, limits: &[Limit]) -> Self {
        fn gcd(a: u64, b: u64) -> u64 {
            if b == 0 { a } else { gcd(b, a % b) }
        }
        let grid = limits
            .iter()
            .filter_map(|l| match l.kind {
                LimitKind::Window { window, slots } => {
                    Some(nanos(window).div_ceil(u64::from(slots)))
                }
                LimitKind::Bucket { .. } => None,
            })
            .fold(1, |g, s| g / gcd(g, s) * s);
        let keep = 4 * longest(limits);
        assert!(grid < keep, "the idles could not be cut on the slots' grid");
        Self { inner, keep, grid, clock: core::cell::Cell::new((0, 0)) }
    }

    fn to_store(&self, t: Instant) -> Instant {
        let (last, mut cut) = self.clock.get();
        let now = t.as_nanos();
        if now > last.saturating_add(self.keep) && last > 0 {
            cut += (now - last - self.keep) / self.grid * self.grid;
        }
        self.clock.set((last.max(now), cut));
        Instant::from_nanos(now - cut)
    }

    fn back(&self, t: Instant) -> Instant {
        if t == Instant::MAX { t } else { Instant::from_nanos(t.as_nanos() + self.clock.get().1) }
    }

    fn charge_in(&self, c: Charge) -> Charge {
        let cut = self.clock.get().1;
        Charge { at: Instant::from_nanos(c.at.as_nanos().saturating_sub(cut)), ..c }
    }

    fn answer(&self, r: Result<Charge, Wait>) -> Result<Charge, Wait> {
        match r {
            Ok(c) => Ok(Charge { at: self.back(c.at), ..c }),
            Err(w) => Err(Wait { ready_at: self.back(w.ready_at), ..w }),
        }
    }
}

impl StateStore for ShortIdles<'_> {
    fn admit_at(&self, tokens: u64, now: Instant) -> Result<Charge, Wait> {
        let now = self.to_store(now);
        self.answer(self.inner.admit_at(tokens, now))
    }

    fn earliest_at(&self, tokens: u64, now: Instant) -> Option<Wait> {
        let now = self.to_store(now);
        self.inner.earliest_at(tokens, now).map(|w| Wait { ready_at: self.back(w.ready_at), ..w })
    }

    fn settle_at(&self, charge: Charge, actual: u64, now: Instant) {
        let now = self.to_store(now);
        self.inner.settle_at(self.charge_in(charge), actual, now);
    }

    fn usage_at(&self, now: Instant, used: &mut Vec<u64>) {
        let now = self.to_store(now);
        self.inner.usage_at(now, used);
    }

    fn admit_io_at(&self, estimate: Estimate, now: Instant) -> Result<Charge, Wait> {
        let now = self.to_store(now);
        self.answer(self.inner.admit_io_at(estimate, now))
    }

    fn settle_io_at(&self, charge: Charge, actual: Estimate, now: Instant) {
        let now = self.to_store(now);
        self.inner.settle_io_at(self.charge_in(charge), actual, now);
    }
}

/// Input and output apart (`admit_io_at`, `settle_io_at`, and the plain forms split input
/// first), by the core's own parity harness, which picks split estimates and actual counts
/// whenever the limits tell input from output.
#[test]
fn scripts_decide_input_and_output_as_the_memory_store() {
    let Some(server) = support::RedisServer::start() else { return };
    for (ci, (name, limits)) in io_configs().into_iter().enumerate() {
        for seed in 0..4u64 {
            let key = format!("{{parity-io:{ci}:{seed}}}:s");
            let redis = ParityStore::new(&server.url(), &key, &limits).expect("parity store");
            let memory = MemoryStore::new(&limits);
            let redis = ShortIdles::new(&redis, &limits);
            let report = tollgate::model::check_store_parity(&limits, &memory, &redis, seed, 600)
                .unwrap_or_else(|m| panic!("{name}, seed {seed}: {m}"));
            assert!(
                report.admitted > 0 && report.refused > 0 && report.settled > 0,
                "{name}, seed {seed}: {report:?}: every outcome must be exercised"
            );
        }
    }
}

/// The comparison itself can fail: two stores with different limits differ.
#[test]
fn a_different_rule_is_caught() {
    let Some(server) = support::RedisServer::start() else { return };
    let limits = [Limit::requests("rpm", 5, Duration::from_secs(60))];
    let other = [Limit::requests("rpm", 6, Duration::from_secs(60))];
    let redis = ParityStore::new(&server.url(), "{parity:other}:s", &other).unwrap();
    let memory = MemoryStore::new(&limits);
    let caught = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        compare(&limits, &memory, &redis, 1, 600);
    }));
    assert!(caught.is_err(), "a limit of 6 against one of 5 went unnoticed");
}

/// One call's operations, run on the memory store one by one as they are chosen (so a settle
/// can name a charge admitted earlier in the same call), with the memory store's answers.
struct Group<'a> {
    memory: &'a MemoryStore,
    t: Instant,
    ops: Vec<RuleOp>,
    want: Vec<RuleAnswer>,
}

impl Group<'_> {
    /// Adds `op` and returns the charge if it was an admission the memory store made.
    fn push(&mut self, op: RuleOp) -> Option<Charge> {
        let answer = op.apply(self.memory, self.t);
        self.ops.push(op);
        let charge = match &answer {
            RuleAnswer::Admit(Ok(c)) => Some(*c),
            _ => None,
        };
        self.want.push(answer);
        charge
    }
}

/// The longest list of operations sent in one call.
const MAX_GROUP: usize = 8;

/// How often each dangerous case was made (they must all have been).
#[derive(Debug, Default, Clone, Copy)]
struct Cases {
    admitted: usize,
    refused: usize,
    /// A settle of a charge admitted in the same call.
    settle_own: usize,
    /// Two settles in one call of charges in the same slot (of the coarsest window).
    same_slot: usize,
    /// A refund settled after the state was lost (the count clamps at zero).
    after_loss: usize,
    /// earliest or usage right after an admission in the same call.
    read_after_admit: usize,
    /// Calls of more than one operation.
    multi: usize,
}

/// A settle's actual count for `c`, as `compare` picks it: unchanged, nothing, or anything up
/// to twice the estimate and a bit.
fn actual_for(rng: &mut Rng, c: Charge) -> u64 {
    match rng.upto(3) {
        0 => c.tokens,
        1 => 0,
        _ => rng.upto(c.tokens * 2 + 8),
    }
}

/// As `compare`, but operations go to Redis in groups of 1–8 decided in one call at one
/// instant, each group shaped now and then to hit a case where state carried inside a call
/// matters; every answer is compared with the memory store's, and after each call the usage
/// read by a call of its own (what the call wrote).
fn compare_batched(limits: &[Limit], redis: &ParityStore, seed: u64, groups: usize) -> Cases {
    let mut rng = Rng(fastrand::Rng::with_seed(seed));
    let mut memory = MemoryStore::new(limits);
    let cap =
        limits.iter().filter(|l| l.counts == Counts::Tokens).map(|l| l.max).min().unwrap_or(1_000);
    let slot_len = |l: &Limit| match l.kind {
        LimitKind::Window { window, slots } => Some(nanos(window) / u64::from(slots)),
        LimitKind::Bucket { .. } => None,
    };
    let grain = grain(limits);
    // Two charges share a slot of the coarsest window (any instant, without windows).
    let coarse = limits.iter().filter_map(slot_len).max().unwrap_or(u64::MAX).max(1);
    let longest = longest(limits);
    let mut now = rng.upto(1 << 40);
    let mut held: Vec<Charge> = Vec::new();
    let mut cases = Cases::default();
    let (mut ua, mut ub) = (Vec::new(), Vec::new());
    for call in 0..groups {
        let shape = rng.upto(9);
        // A loss keeps the clock (or nearly): the charges held are still in their windows.
        now = match (shape, rng.upto(99)) {
            (7, _) => now + rng.upto(grain / 2),
            (_, 0..=59) => now + rng.upto(grain * 2),
            (_, 60..=74) => now,
            (_, 75..=89) => now + rng.upto(longest),
            (_, 90..=96) => now.saturating_sub(rng.upto(grain * 3)),
            _ => now + longest * 2,
        };
        assert!(now < 1 << 51, "the test clock must stay exact in Lua");
        let t = Instant::from_nanos(now);
        let tokens = |rng: &mut Rng| match rng.upto(9) {
            0 => 0,
            1 => cap,
            2..=5 => rng.upto(cap / 8),
            _ => rng.upto(cap),
        };
        if shape == 7 {
            // The state is lost between calls (expired, or the server restarted empty); the
            // charges held from before are settled into an empty state.
            redis.lose_state();
            memory = MemoryStore::new(limits);
        }
        let mut g = Group { memory: &memory, t, ops: Vec::new(), want: Vec::new() };
        match shape {
            4 => {
                // Admit, then settle that same admission, in one call.
                let n = tokens(&mut rng);
                if let Some(c) = g.push(RuleOp::Admit(n)) {
                    g.push(RuleOp::Settle(c, actual_for(&mut rng, c)));
                    cases.settle_own += 1;
                    if rng.bool() {
                        g.push(RuleOp::Admit(tokens(&mut rng)));
                    }
                }
                g.push(if rng.bool() { RuleOp::Usage } else { RuleOp::Earliest(tokens(&mut rng)) });
            }
            5 => {
                // Two settles of charges in one slot: two admitted now, or two held.
                let mut pair = Vec::new();
                if let Some(i) = (!held.is_empty()).then(|| rng.upto(held.len() as u64 - 1)) {
                    let c = held.swap_remove(i as usize);
                    let j = held
                        .iter()
                        .position(|d| d.at.as_nanos() / coarse == c.at.as_nanos() / coarse);
                    pair.push(c);
                    pair.extend(j.map(|j| held.swap_remove(j)));
                }
                while pair.len() < 2 {
                    let n = tokens(&mut rng);
                    match g.push(RuleOp::Admit(n)) {
                        Some(c) => pair.push(c),
                        None => break,
                    }
                }
                if pair.len() == 2 {
                    cases.same_slot += 1;
                }
                for c in pair {
                    g.push(RuleOp::Settle(c, actual_for(&mut rng, c)));
                }
                g.push(RuleOp::Usage);
            }
            6 => {
                // Reads right after an admission.
                if g.push(RuleOp::Admit(tokens(&mut rng))).is_some() {
                    cases.read_after_admit += 1;
                }
                g.push(RuleOp::Earliest(tokens(&mut rng)));
                g.push(RuleOp::Usage);
                g.push(RuleOp::Earliest(cap));
            }
            7 => {
                // After the loss: a new admission, then refunds of older charges from the same
                // slot lower the count to zero or below it (it clamps), then reads.
                if let Some(c) = g.push(RuleOp::Admit(rng.upto(cap / 8))) {
                    held.push(c);
                }
                while !held.is_empty() && g.ops.len() < MAX_GROUP - 2 && rng.upto(3) != 0 {
                    let c = held.swap_remove(rng.upto(held.len() as u64 - 1) as usize);
                    let actual = if rng.bool() { 0 } else { rng.upto(c.tokens) };
                    cases.after_loss += usize::from(actual < c.tokens);
                    g.push(RuleOp::Settle(c, actual));
                }
                g.push(RuleOp::Usage);
                g.push(RuleOp::Admit(tokens(&mut rng)));
            }
            _ => {
                // Any mix, 1–8 operations.
                let len = rng.upto(MAX_GROUP as u64 - 1) as usize + 1;
                while g.ops.len() < len {
                    match rng.upto(9) {
                        0..=4 => {
                            let n = tokens(&mut rng);
                            if let Some(c) = g.push(RuleOp::Admit(n)) {
                                held.push(c);
                            }
                        }
                        5..=6 => {
                            let n = tokens(&mut rng);
                            g.push(RuleOp::Earliest(n));
                        }
                        7..=8 if !held.is_empty() => {
                            let c = held.swap_remove(rng.upto(held.len() as u64 - 1) as usize);
                            g.push(RuleOp::Settle(c, actual_for(&mut rng, c)));
                        }
                        _ => {
                            g.push(RuleOp::Usage);
                        }
                    }
                }
            }
        }
        // What shape 4 and 6 admitted and did not settle is held for later calls.
        if matches!(shape, 4 | 6) {
            for (op, a) in g.ops.iter().zip(&g.want) {
                if let (RuleOp::Admit(_), RuleAnswer::Admit(Ok(c))) = (op, a) {
                    let settled = g.ops.iter().any(|o| matches!(o, RuleOp::Settle(d, _) if d == c));
                    if !settled {
                        held.push(*c);
                    }
                }
            }
        }
        assert!(g.ops.len() <= MAX_GROUP);
        cases.multi += usize::from(g.ops.len() > 1);
        for a in &g.want {
            match a {
                RuleAnswer::Admit(Ok(_)) => cases.admitted += 1,
                RuleAnswer::Admit(Err(_)) => cases.refused += 1,
                _ => {}
            }
        }
        let got = redis.batch(&g.ops, t);
        for (k, (x, y)) in g.want.iter().zip(&got).enumerate() {
            assert_eq!(
                x, y,
                "seed {seed} call {call} (shape {shape}) at {now} ns: operation {k} of {:?}",
                g.ops
            );
        }
        // What the call left behind, read by a call of its own.
        memory.usage_at(t, &mut ua);
        redis.usage_at(t, &mut ub);
        assert_eq!(
            ua, ub,
            "seed {seed} call {call} (shape {shape}) at {now} ns: usage after {:?}",
            g.ops
        );
    }
    cases
}

#[test]
fn one_call_decides_as_the_memory_store_one_by_one() {
    let Some(server) = support::RedisServer::start() else { return };
    let mut total = Cases::default();
    for (ci, (name, limits)) in configs().into_iter().enumerate() {
        for seed in 0..4u64 {
            let key = format!("{{parity-batch:{ci}:{seed}}}:s");
            let redis = ParityStore::new(&server.url(), &key, &limits).expect("parity store");
            let c = compare_batched(&limits, &redis, seed * 7 + ci as u64 + 1_000, 400);
            assert!(
                c.admitted > 0 && c.refused > 0,
                "{name}, seed {seed}: {c:?}: both outcomes must be exercised"
            );
            total.admitted += c.admitted;
            total.refused += c.refused;
            total.settle_own += c.settle_own;
            total.same_slot += c.same_slot;
            total.after_loss += c.after_loss;
            total.read_after_admit += c.read_after_admit;
            total.multi += c.multi;
        }
    }
    eprintln!("parity in one call: {total:?}, identical");
    assert!(
        total.settle_own > 0
            && total.same_slot > 0
            && total.after_loss > 0
            && total.read_after_admit > 0
            && total.multi > 0,
        "every dangerous case must be made: {total:?}"
    );
}

/// One call, by hand: an admission settled in the same call, a second charge of the same slot
/// refunded past zero after the state is lost, and reads between them, each at its value.
#[test]
fn one_call_carries_its_own_charges() {
    let Some(server) = support::RedisServer::start() else { return };
    let limits = [
        Limit::requests("rpm", 3, Duration::from_secs(60)),
        Limit::tokens("tpm", 100, Duration::from_secs(60)),
    ];
    let redis = ParityStore::new(&server.url(), "{parity-batch:hand}:s", &limits).unwrap();
    let t = Instant::from_secs(1_000);
    let a = Charge::new(t, 60.into());
    let answers = redis.batch(
        &[
            RuleOp::Admit(60),
            RuleOp::Usage,
            RuleOp::Earliest(50),
            RuleOp::Settle(a, 10),
            RuleOp::Usage,
            RuleOp::Earliest(50),
        ],
        t,
    );
    assert_eq!(answers[0], RuleAnswer::Admit(Ok(a)));
    assert_eq!(answers[1], RuleAnswer::Usage(vec![1, 60]));
    assert!(matches!(answers[2], RuleAnswer::Earliest(Some(_))), "{answers:?}");
    assert_eq!(answers[4], RuleAnswer::Usage(vec![1, 10]));
    assert_eq!(answers[5], RuleAnswer::Earliest(None));
    // The state is lost; a new 5 and the old 60's refund to 0 in its slot: 5 - 60 clamps at 0.
    redis.lose_state();
    let b = Charge::new(t, 5.into());
    let answers = redis.batch(
        &[
            RuleOp::Admit(5),
            RuleOp::Settle(a, 0),
            RuleOp::Usage,
            RuleOp::Settle(b, 7),
            RuleOp::Usage,
        ],
        t,
    );
    assert_eq!(answers[0], RuleAnswer::Admit(Ok(b)));
    assert_eq!(answers[2], RuleAnswer::Usage(vec![1, 0]));
    assert_eq!(answers[4], RuleAnswer::Usage(vec![1, 2]));
    let mut used = Vec::new();
    redis.usage_at(t, &mut used);
    assert_eq!(used, [1, 2], "what the call wrote");
}

/// The batched comparison can fail: two stores with different limits differ.
#[test]
fn a_different_rule_is_caught_in_one_call() {
    let Some(server) = support::RedisServer::start() else { return };
    let limits = [Limit::requests("rpm", 5, Duration::from_secs(60))];
    let other = [Limit::requests("rpm", 6, Duration::from_secs(60))];
    let redis = ParityStore::new(&server.url(), "{parity-batch:other}:s", &other).unwrap();
    let caught = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        compare_batched(&limits, &redis, 1, 400);
    }));
    assert!(caught.is_err(), "a limit of 6 against one of 5 went unnoticed");
}

/// How often the feedback comparison made each case (they must all have been).
#[derive(Debug, Default, Clone, Copy)]
struct FeedbackCases {
    admitted: usize,
    refused: usize,
    /// A limit's maximum set below or above the configured one.
    set_max: usize,
    /// A drain of a window that left it holding a share for others.
    held: usize,
    /// A drain of a bucket that charged it.
    charged: usize,
    /// A report seen so long ago that the ring no longer holds its window.
    too_old: usize,
}

/// Random calls of 1–4 operations mixing admissions, reads, settles, learned maxima
/// (`set_max`) and drains (`drain_seen_at`, with tolerances and reports seen in the past), on
/// the scripts in one call each and on the memory store one by one; every answer and the
/// usage after each call must agree.
fn compare_feedback(
    limits: &[Limit],
    stores: &[&ParityStore],
    seed: u64,
    calls: usize,
) -> FeedbackCases {
    let mut rng = Rng(fastrand::Rng::with_seed(seed));
    let memory = MemoryStore::new(limits);
    let cap =
        limits.iter().filter(|l| l.counts == Counts::Tokens).map(|l| l.max).min().unwrap_or(1_000);
    let grain = grain(limits);
    let longest = longest(limits);
    let mut now = rng.upto(1 << 40);
    let mut held: Vec<Charge> = Vec::new();
    let mut cases = FeedbackCases::default();
    let (mut ua, mut ub) = (Vec::new(), Vec::new());
    // The ends of the shares held so far (a drain's reset and a slot), and a window after
    // them: the clock lands on them exactly now and then, where `<` and `<=` differ.
    let mut ends: Vec<u64> = Vec::new();
    for call in 0..calls {
        now = match rng.upto(99) {
            0..=7 if !ends.is_empty() => {
                let end = ends[rng.upto(ends.len() as u64 - 1) as usize];
                now.max(end + if rng.bool() { 0 } else { longest })
            }
            0..=59 => now + rng.upto(grain * 2),
            60..=74 => now,
            75..=89 => now + rng.upto(longest),
            90..=96 => now.saturating_sub(rng.upto(grain * 3)),
            _ => now + longest * 2,
        };
        assert!(now < 1 << 51, "the test clock must stay exact in Lua");
        let t = Instant::from_nanos(now);
        let (mut ops, mut want) = (Vec::new(), Vec::new());
        let len = rng.upto(3) as usize + 1;
        while ops.len() < len {
            let op = match rng.upto(19) {
                0..=7 => {
                    let n = match rng.upto(9) {
                        0 => 0,
                        1 => cap,
                        2..=6 => rng.upto(cap / 8),
                        _ => rng.upto(cap),
                    };
                    RuleOp::Admit(n)
                }
                8..=9 => RuleOp::Earliest(rng.upto(cap / 4)),
                10..=11 if !held.is_empty() => {
                    let c = held.swap_remove(rng.upto(held.len() as u64 - 1) as usize);
                    RuleOp::Settle(c, actual_for(&mut rng, c))
                }
                12 => {
                    let i = rng.upto(limits.len() as u64 - 1) as usize;
                    let max = limits[i].max;
                    let to = match rng.upto(3) {
                        0 => max,
                        1 => max / 2,
                        2 => rng.upto(max * 2),
                        _ => max + 1 + rng.upto(max),
                    };
                    RuleOp::SetMax(i, to)
                }
                13..=18 => {
                    let i = rng.upto(limits.len() as u64 - 1) as usize;
                    let max = limits[i].max;
                    let remaining = match rng.upto(3) {
                        0 => 0,
                        1 => max,
                        _ => rng.upto(max),
                    };
                    let tolerance = if rng.bool() { 0 } else { rng.upto(max / 4 + 1) };
                    let age = match rng.upto(5) {
                        0..=2 => 0,
                        3 => rng.upto(grain * 2),
                        4 => rng.upto(longest),
                        _ => longest + rng.upto(longest),
                    };
                    let seen = now.saturating_sub(age);
                    let reset = match rng.upto(3) {
                        0 => 0,
                        1 => rng.upto(grain * 3),
                        _ => rng.upto(longest * 2),
                    };
                    if let LimitKind::Window { window, slots } = limits[i].kind {
                        ends.push(seen + reset + nanos(window).div_ceil(u64::from(slots)));
                        if ends.len() > 16 {
                            ends.remove(0);
                        }
                    }
                    RuleOp::Drain(Drain {
                        limit: i,
                        remaining,
                        tolerance,
                        expires: Instant::from_nanos(seen + reset),
                        seen: Instant::from_nanos(seen),
                    })
                }
                _ => RuleOp::Usage,
            };
            let answer = op.apply_memory(&memory, t);
            match (&op, &answer) {
                (RuleOp::Admit(_), RuleAnswer::Admit(Ok(c))) => {
                    cases.admitted += 1;
                    held.push(*c);
                }
                (RuleOp::Admit(_), RuleAnswer::Admit(Err(_))) => cases.refused += 1,
                (RuleOp::SetMax(i, to), _) if *to != limits[*i].max => cases.set_max += 1,
                (RuleOp::Drain(d), RuleAnswer::Drained(n)) => {
                    let window = matches!(limits[d.limit].kind, LimitKind::Window { .. });
                    if *n > 0 && window {
                        cases.held += 1;
                    } else if *n > 0 {
                        cases.charged += 1;
                    } else if window && d.seen.as_nanos() + longest <= now {
                        cases.too_old += 1;
                    }
                }
                _ => {}
            }
            ops.push(op);
            want.push(answer);
        }
        memory.usage_at(t, &mut ua);
        for (n, redis) in stores.iter().enumerate() {
            let got = redis.batch(&ops, t);
            for (k, (x, y)) in want.iter().zip(&got).enumerate() {
                assert_eq!(
                    x, y,
                    "seed {seed} call {call} at {now} ns, store {n}: operation {k} of {ops:?}"
                );
            }
            redis.usage_at(t, &mut ub);
            assert_eq!(
                ua, ub,
                "seed {seed} call {call} at {now} ns, store {n}: usage after {ops:?}"
            );
        }
    }
    cases
}

/// Header feedback decides in the scripts as in the core: learned maxima and drains (the
/// others' share held beside the state's own charges, each report replacing the last, the
/// highest of those not yet reset kept; a bucket charged the excess) mixed with admissions
/// and settles, against `RateState::set_max` and `drain_seen_at`.
#[test]
fn feedback_decides_as_the_memory_store() {
    let Some(server) = support::RedisServer::start() else { return };
    let mut total = FeedbackCases::default();
    for (ci, (name, limits)) in configs().into_iter().enumerate() {
        for seed in 0..4u64 {
            // As a script (nothing kept between calls), and as production runs it: a function
            // of a library, whose parsed feedback is kept between calls (and shared by keys
            // whose field reads the same).
            // In the library, two keys in lockstep: their fields read the same, so a call
            // that changed what another call parsed (not its own copy) is caught by the next.
            for library in [false, true] {
                let store = |twin: u8| {
                    let key = format!("{{parity-fb:{ci}:{seed}:{library}:{twin}}}:s");
                    let s = if library {
                        ParityStore::in_library(&server.url(), &key, &limits)
                    } else {
                        ParityStore::new(&server.url(), &key, &limits)
                    };
                    s.expect("parity store")
                };
                let (a, b) = (store(0), store(1));
                let stores: Vec<&ParityStore> = if library { vec![&a, &b] } else { vec![&a] };
                let c = compare_feedback(&limits, &stores, seed * 11 + ci as u64 + 2_000, 500);
                assert!(c.admitted > 0 && c.refused > 0, "{name}, seed {seed}: {c:?}");
                total.admitted += c.admitted;
                total.refused += c.refused;
                total.set_max += c.set_max;
                total.held += c.held;
                total.charged += c.charged;
                total.too_old += c.too_old;
            }
        }
    }
    eprintln!("feedback parity: {total:?}, identical");
    assert!(
        total.set_max > 0 && total.held > 0 && total.charged > 0 && total.too_old > 0,
        "every case must be made: {total:?}"
    );
}

/// The feedback comparison can fail: a drain the scripts never get is noticed.
#[test]
fn a_missing_drain_is_caught() {
    let Some(server) = support::RedisServer::start() else { return };
    let limits = [Limit::tokens("tpm", 1_000, Duration::from_secs(60))];
    let redis = ParityStore::new(&server.url(), "{parity-fb:missing}:s", &limits).unwrap();
    let memory = MemoryStore::new(&limits);
    let t = Instant::from_secs(100);
    let d = Drain {
        limit: 0,
        remaining: 300,
        tolerance: 0,
        expires: t + Duration::from_secs(10),
        seen: t,
    };
    assert_eq!(RuleOp::Drain(d).apply_memory(&memory, t), RuleAnswer::Drained(700));
    // Both see the same admission; only the memory store was drained.
    let (x, y) = (RuleOp::Admit(400).apply_memory(&memory, t), redis.one(&RuleOp::Admit(400), t));
    assert_ne!(x, y);
    // And the scripts, drained too, agree.
    let redis = ParityStore::new(&server.url(), "{parity-fb:drained}:s", &limits).unwrap();
    assert_eq!(redis.one(&RuleOp::Drain(d), t), RuleAnswer::Drained(700));
    assert_eq!(redis.one(&RuleOp::Admit(400), t), x);
}
