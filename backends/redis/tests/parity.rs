//! Parity: the Redis scripts of the admission rule (on a test clock) and tollgate's
//! `MemoryStore` make identical decisions over random operation sequences: admits, earliest
//! instants, settles (refunds and excesses, late ones included) and usage, with a clock that
//! moves by parts of a slot, by whole windows, and now and then backwards.

mod support;

use core::time::Duration;

use tollgate::model::{Charge, Counts, Limit, LimitKind, MemoryStore, StateStore};
use tollgate::{Instant, Rate};
use tollgate_redis::testing::ParityStore;

/// Seeded operation picker (fastrand's wyrand: small, seedable, reproducible per seed).
struct Rng(fastrand::Rng);

impl Rng {
    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        self.0.u64(0..=max)
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
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
    let grain = limits
        .iter()
        .map(|l| match l.kind {
            LimitKind::Window { window, slots } => nanos(window) / u64::from(slots),
            LimitKind::Bucket { rate } => nanos(rate.period()) / rate.count(),
        })
        .min()
        .unwrap()
        .max(1);
    let longest = limits
        .iter()
        .map(|l| match l.kind {
            LimitKind::Window { window, .. } => nanos(window),
            LimitKind::Bucket { rate } => nanos(rate.period()) * l.max / rate.count(),
        })
        .max()
        .unwrap();
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
