//! Fuzz harnesses for tollgate.
//!
//! Each `run_*` function decodes an arbitrary byte string into a configuration and a sequence
//! of operations (with [`arbitrary`]), drives one of the core primitives with it, and checks
//! the invariants of `ARCHITECTURE.md` with plain `assert!`: a failed assertion or any panic inside
//! the library is a crash for libFuzzer. The same functions replay the committed corpus in
//! `tests/replay.rs` on stable Rust, without libFuzzer.
//!
//! - [`run_bucket`]: `TokenBucket` with any rate and burst, every operation, any `n`, and a
//!   clock that moves forwards, backwards and by years;
//! - [`run_window`]: `SlidingWindow<8>` and `<61>` with any window and limit;
//! - [`run_model`]: `ModelRateLimiter` over a `ManualClock`, driven by a `LocalPool`;
//! - [`run_provider_values`], [`run_provider_headers`], [`run_provider_429`]: the provider
//!   feedback parsers (`tollgate::provider`) on header values, whole header sets and 429 bodies.

mod bucket;
mod model;
mod provider_429;
mod provider_check;
mod provider_headers;
mod provider_values;
mod u256;
mod window;

pub use bucket::run_bucket;
pub use model::run_model;
pub use provider_429::run_provider_429;
pub use provider_headers::run_provider_headers;
pub use provider_values::run_provider_values;
pub use window::run_window;

/// A count of tokens or units, mostly relative to a capacity (a bucket's burst, a window's
/// limit) so that requests can succeed, with the edges (0, capacity + 1, `u64::MAX`) reachable.
#[derive(arbitrary::Arbitrary, Debug, Clone, Copy)]
pub(crate) enum AmountIn {
    Zero,
    One,
    Small(u8),
    PerMilleOfCapacity(u16),
    Capacity,
    CapacityPlusOne,
    Max,
    Any(u64),
}

impl AmountIn {
    pub(crate) fn of(self, capacity: u64) -> u64 {
        match self {
            AmountIn::Zero => 0,
            AmountIn::One => 1,
            AmountIn::Small(n) => n as u64,
            AmountIn::PerMilleOfCapacity(pm) => {
                ((capacity as u128 * (pm % 1001) as u128) / 1000).max(1) as u64
            }
            AmountIn::Capacity => capacity,
            AmountIn::CapacityPlusOne => capacity.saturating_add(1),
            AmountIn::Max => u64::MAX,
            AmountIn::Any(n) => n,
        }
    }
}

/// Most operations decoded from one input: keeps every run fast (the checks are quadratic in
/// the number of admissions at worst).
pub(crate) const MAX_OPS: usize = 256;

/// Whether to print each decoded operation (set `TOLLGATE_FUZZ_DEBUG=1` when replaying one
/// input to see what it does).
pub(crate) fn debug() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TOLLGATE_FUZZ_DEBUG").is_some())
}
