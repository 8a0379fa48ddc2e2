//! The state-store seam: the parity harness run against the in-memory store and a store that
//! keeps the state as a list of integers and decodes it on every operation (the way a remote
//! store such as Redis holds it), over several limit sets and seeds — and shown to catch a
//! store that decides differently.
// Thousands of random operations per run and a proptest: far too slow under miri, and the rule
// and stores hold no unsafe code (the unit tests in `src/model/` run under miri).
#![cfg(not(miri))]

use core::time::Duration;
use std::sync::Mutex;

use tollgate::model::{
    Charge, Counts, Estimate, Limit, MemoryStore, ParityMismatch, RateState, StateStore, Wait,
    check_store_parity,
};
use tollgate::{Instant, Rate};

/// The state serialised as `u64` words between operations: decode, run the rule, encode.
struct EncodedStore {
    limits: Vec<Limit>,
    words: Mutex<Vec<u64>>,
}

impl EncodedStore {
    fn new(limits: &[Limit]) -> Self {
        let mut words = Vec::new();
        RateState::new(limits).encode(&mut words);
        Self { limits: limits.to_vec(), words: Mutex::new(words) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut RateState) -> R) -> R {
        let mut words = self.words.lock().unwrap();
        let mut state = RateState::decode(&self.limits, &words).expect("own encoding");
        let out = f(&mut state);
        state.encode(&mut words);
        out
    }
}

impl StateStore for EncodedStore {
    fn admit_at(&self, tokens: u64, now: Instant) -> Result<Charge, Wait> {
        self.with(|s| s.admit_at(tokens, now))
    }
    fn earliest_at(&self, tokens: u64, now: Instant) -> Option<Wait> {
        self.with(|s| s.earliest_at(tokens, now))
    }
    fn settle_at(&self, charge: Charge, actual: u64, now: Instant) {
        self.with(|s| s.settle_at(charge, actual, now));
    }
    fn usage_at(&self, now: Instant, used: &mut Vec<u64>) {
        self.with(|s| s.usage_at(now, used));
    }
    fn admit_io_at(&self, estimate: Estimate, now: Instant) -> Result<Charge, Wait> {
        self.with(|s| s.admit_io_at(estimate, now))
    }
    fn settle_io_at(&self, charge: Charge, actual: Estimate, now: Instant) {
        self.with(|s| s.settle_io_at(charge, actual, now));
    }
}

/// A store written against the four-method trait, before input and output tokens: it keeps
/// the trait's defaults, which see only totals.
struct TotalsOnly(MemoryStore);

impl StateStore for TotalsOnly {
    fn admit_at(&self, tokens: u64, now: Instant) -> Result<Charge, Wait> {
        self.0.admit_at(tokens, now)
    }
    fn earliest_at(&self, tokens: u64, now: Instant) -> Option<Wait> {
        self.0.earliest_at(tokens, now)
    }
    fn settle_at(&self, charge: Charge, actual: u64, now: Instant) {
        self.0.settle_at(charge, actual, now);
    }
    fn usage_at(&self, now: Instant, used: &mut Vec<u64>) {
        self.0.usage_at(now, used);
    }
}

fn limit_sets() -> Vec<Vec<Limit>> {
    let minute = Duration::from_secs(60);
    vec![
        // The defaults: rpm and tpm.
        vec![Limit::requests("rpm", 10, minute), Limit::tokens("tpm", 2_000, minute)],
        // Plus a day in coarse slots and a per-second smoothing window.
        vec![
            Limit::requests("rpm", 30, minute),
            Limit::tokens("tpm", 5_000, minute),
            Limit::requests("rpd", 100, Duration::from_secs(86_400)).with_slots(24),
            Limit::tokens("tps", 400, Duration::from_secs(1)).with_slots(7),
        ],
        // Buckets of both kinds beside a window.
        vec![
            Limit::bucket("rps", Counts::Requests, 3, Rate::per_second(2)),
            Limit::bucket("tokens", Counts::Tokens, 1_000, Rate::new(7, Duration::from_millis(3))),
            Limit::tokens("tpm", 20_000, minute).with_slots(1),
        ],
        // Nanosecond-scale slots, where the clock's end and rounding matter most.
        vec![Limit::tokens("tiny", 5, Duration::from_nanos(3)).with_slots(2)],
        // Input and output tokens apart (Anthropic's ITPM and OTPM) beside the total.
        vec![
            Limit::requests("rpm", 50, minute),
            Limit::tokens("tpm", 8_000, minute),
            Limit::window("itpm", Counts::InputTokens, 3_000, minute),
            Limit::window("otpm", Counts::OutputTokens, 2_000, minute),
            Limit::bucket("obucket", Counts::OutputTokens, 900, Rate::per_second(30)),
        ],
    ]
}

#[test]
fn a_store_that_sees_only_totals_fails_parity_on_input_and_output_limits() {
    let limits = limit_sets().pop().unwrap();
    let m = check_store_parity(
        &limits,
        &MemoryStore::new(&limits),
        &TotalsOnly(MemoryStore::new(&limits)),
        1,
        3_000,
    )
    .unwrap_err();
    assert!(m.operation.starts_with("admit_io_at(") || m.operation.starts_with("usage_at("), "{m}");
    // On limits of requests and totals only, the defaults decide the same.
    let limits = &limit_sets()[0];
    check_store_parity(
        limits,
        &MemoryStore::new(limits),
        &TotalsOnly(MemoryStore::new(limits)),
        1,
        3_000,
    )
    .unwrap();
}

#[test]
fn the_encoded_store_decides_as_the_memory_store() {
    for (i, limits) in limit_sets().iter().enumerate() {
        for seed in 0..8 {
            let (a, b) = (MemoryStore::new(limits), EncodedStore::new(limits));
            let report = check_store_parity(limits, &a, &b, seed, 3_000)
                .unwrap_or_else(|m| panic!("limit set {i}, seed {seed}: {m}"));
            assert_eq!(report.steps, 3_000);
            // The sequence exercised both outcomes and settled charges.
            assert!(report.admitted > 50, "set {i} seed {seed}: {report:?}");
            assert!(report.refused > 50, "set {i} seed {seed}: {report:?}");
            assert!(report.settled > 20, "set {i} seed {seed}: {report:?}");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_sequence() {
    let limits = &limit_sets()[1];
    let run = |seed| {
        let (a, b) = (MemoryStore::new(limits), MemoryStore::new(limits));
        check_store_parity(limits, &a, &b, seed, 1_000).unwrap()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

/// A store that forgets refunds (settles only excesses): the harness must find it.
struct NoRefunds(MemoryStore);

impl StateStore for NoRefunds {
    fn admit_at(&self, tokens: u64, now: Instant) -> Result<Charge, Wait> {
        self.0.admit_at(tokens, now)
    }
    fn earliest_at(&self, tokens: u64, now: Instant) -> Option<Wait> {
        self.0.earliest_at(tokens, now)
    }
    fn settle_at(&self, charge: Charge, actual: u64, now: Instant) {
        self.0.settle_at(charge, actual.max(charge.tokens), now);
    }
    fn usage_at(&self, now: Instant, used: &mut Vec<u64>) {
        self.0.usage_at(now, used);
    }
}

/// A store that admits one request its limits refuse, once.
struct OneTooMany {
    inner: MemoryStore,
    extra: Mutex<Option<Instant>>,
}

impl StateStore for OneTooMany {
    fn admit_at(&self, tokens: u64, now: Instant) -> Result<Charge, Wait> {
        match self.inner.admit_at(tokens, now) {
            Err(_) if self.extra.lock().unwrap().replace(now).is_none() => {
                Ok(Charge { at: now, tokens, input: tokens })
            }
            other => other,
        }
    }
    fn earliest_at(&self, tokens: u64, now: Instant) -> Option<Wait> {
        self.inner.earliest_at(tokens, now)
    }
    fn settle_at(&self, charge: Charge, actual: u64, now: Instant) {
        self.inner.settle_at(charge, actual, now);
    }
    fn usage_at(&self, now: Instant, used: &mut Vec<u64>) {
        self.inner.usage_at(now, used);
    }
}

#[test]
fn the_harness_catches_a_store_that_decides_differently() {
    let limits = &limit_sets()[0];
    let mismatch: ParityMismatch = check_store_parity(
        limits,
        &MemoryStore::new(limits),
        &NoRefunds(MemoryStore::new(limits)),
        1,
        3_000,
    )
    .unwrap_err();
    assert!(mismatch.to_string().starts_with("stores differ at step "), "{mismatch}");

    let wrong = OneTooMany { inner: MemoryStore::new(limits), extra: Mutex::new(None) };
    let mismatch =
        check_store_parity(limits, &MemoryStore::new(limits), &wrong, 1, 3_000).unwrap_err();
    assert!(mismatch.operation.starts_with("admit_at("), "{mismatch}");
    assert!(mismatch.left.starts_with("Err(") && mismatch.right.starts_with("Ok("), "{mismatch}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn limit() -> impl Strategy<Value = Limit> {
        let counts = prop_oneof![
            Just(Counts::Requests),
            Just(Counts::Tokens),
            Just(Counts::InputTokens),
            Just(Counts::OutputTokens),
        ];
        let max = prop_oneof![1u64..10, 1u64..100_000, Just(u64::MAX)];
        let window = prop_oneof![
            Just(Duration::from_nanos(1)),
            (1u64..10_000).prop_map(Duration::from_nanos),
            (1u64..100_000).prop_map(Duration::from_millis),
            Just(Duration::from_secs(86_400)),
            Just(Duration::MAX),
        ];
        let rate = prop_oneof![
            (1u64..1_000, 1u64..1_000_000_000)
                .prop_map(|(n, p)| Rate::new(n, Duration::from_nanos(p))),
            Just(Rate::per_day(1)),
            Just(Rate::new(u64::MAX, Duration::MAX)),
        ];
        prop_oneof![
            (counts.clone(), max.clone(), window, 1u32..200)
                .prop_map(|(c, m, w, s)| Limit::window("w", c, m, w).with_slots(s)),
            (counts, max, rate).prop_map(|(c, m, r)| Limit::bucket("b", c, m, r)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any valid list of limits, any seed: the encoded store decides as the memory store,
        /// and neither panics, at any value or clock position.
        #[test]
        fn any_limits_any_seed(limits in proptest::collection::vec(limit(), 1..5), seed: u64) {
            let (a, b) = (MemoryStore::new(&limits), EncodedStore::new(&limits));
            if let Err(m) = check_store_parity(&limits, &a, &b, seed, 400) {
                panic!("{m} with {limits:?}");
            }
        }
    }
}
