//! The state-store seam: [`StateStore`] is where a model's [`RateState`] lives, and
//! [`MemoryStore`] keeps it in memory behind the crate's lock.
//!
//! A store runs the admission rule (`rule.rs`) on its state, atomically per operation: in
//! memory by locking and calling the rule; a remote store (Redis) by running the same rule as
//! one script per operation on the server. Waiting is not the store's business: the limiter
//! keeps its FIFO gate, its parallel-slot semaphore and its refund wake-ups, and asks the store
//! only for decisions. [`check_store_parity`](super::check_store_parity) tells whether a new
//! store decides as [`MemoryStore`] does.

use alloc::vec::Vec;
use core::fmt;

use super::estimate::Estimate;
use super::limit::Limit;
use super::rule::{Charge, RateState, Wait};
use crate::Instant;
use crate::sync::Mutex;

/// Where one model's rate-limit state lives. Each method is one atomic operation of the
/// admission rule (see [`RateState`], whose methods of the same names define it) on the
/// store's state; a store is built for one model's list of limits.
///
/// ```
/// use core::time::Duration;
/// use tollgate::model::{Limit, MemoryStore, StateStore};
/// use tollgate::Instant;
///
/// let store = MemoryStore::new(&[Limit::requests("rpm", 1, Duration::from_secs(60))]);
/// let charge = store.admit_at(0, Instant::ZERO).unwrap();
/// let wait = store.admit_at(0, Instant::from_secs(1)).unwrap_err();
/// assert_eq!((wait.limit, wait.ready_at.as_secs()), (0, 60));
/// store.settle_at(charge, 0, Instant::from_secs(2));
/// let mut used = Vec::new();
/// store.usage_at(Instant::from_secs(2), &mut used);
/// assert_eq!(used, [1]);
/// ```
pub trait StateStore {
    /// [`RateState::admit_at`]: charge every limit, or none and say when.
    ///
    /// # Errors
    /// A [`Wait`] when some limit has no room now.
    fn admit_at(&self, tokens: u64, now: Instant) -> Result<Charge, Wait>;
    /// [`RateState::earliest_at`]: `None` if the request would be admitted now.
    fn earliest_at(&self, tokens: u64, now: Instant) -> Option<Wait>;
    /// [`RateState::settle_at`]: the charge's estimate becomes `actual`.
    fn settle_at(&self, charge: Charge, actual: u64, now: Instant);
    /// [`RateState::usage_at`]: per limit, in list order, into `used`.
    fn usage_at(&self, now: Instant, used: &mut Vec<u64>);

    /// [`RateState::admit_io_at`]: as `admit_at`, input and output apart.
    ///
    /// The default admits the estimate's total as a plain count, which is the same decision
    /// for limits of [`Counts::Requests`](super::Counts::Requests) and
    /// [`Counts::Tokens`](super::Counts::Tokens) only; a store whose limits count input or
    /// output tokens apart must implement it (the parity check tells).
    ///
    /// # Errors
    /// A [`Wait`] when some limit has no room now.
    fn admit_io_at(&self, estimate: Estimate, now: Instant) -> Result<Charge, Wait> {
        self.admit_at(estimate.total(), now)
    }

    /// [`RateState::settle_io_at`]: as `settle_at`, input and output apart. The default
    /// settles the total, right for the same limits as the default
    /// [`admit_io_at`](Self::admit_io_at).
    fn settle_io_at(&self, charge: Charge, actual: Estimate, now: Instant) {
        self.settle_at(charge, actual.total(), now);
    }
}

/// A model's [`RateState`] in memory, behind the crate's lock (`std::sync::Mutex` with `std`,
/// a critical section without): how [`ModelRateLimiter`](crate::ModelRateLimiter) keeps it
/// (the limiter keeps its model's pause — the cooldown after a 429 — under the same lock, so
/// it holds the state this way itself rather than through this type).
pub struct MemoryStore {
    state: Mutex<RateState>,
}

impl MemoryStore {
    /// Empty state for `limits`, which must be valid ([`Limit::validate`]).
    pub fn new(limits: &[Limit]) -> Self {
        Self { state: Mutex::new(RateState::new(limits)) }
    }

    /// A copy of the state, e.g. to [`encode`](RateState::encode) it.
    pub fn snapshot(&self) -> RateState {
        self.state.with(|s| s.clone())
    }

    /// Runs `f` on the state under the lock: one atomic operation of any of
    /// [`RateState`]'s methods (the feedback ones, [`drain_at`](RateState::drain_at) and
    /// [`set_max`](RateState::set_max), included).
    pub fn with<R>(&self, f: impl FnOnce(&mut RateState) -> R) -> R {
        self.state.with(f)
    }
}

impl StateStore for MemoryStore {
    fn admit_at(&self, tokens: u64, now: Instant) -> Result<Charge, Wait> {
        self.state.with(|s| s.admit_at(tokens, now))
    }

    fn earliest_at(&self, tokens: u64, now: Instant) -> Option<Wait> {
        self.state.with(|s| s.earliest_at(tokens, now))
    }

    fn settle_at(&self, charge: Charge, actual: u64, now: Instant) {
        self.state.with(|s| s.settle_at(charge, actual, now));
    }

    fn usage_at(&self, now: Instant, used: &mut Vec<u64>) {
        self.state.with(|s| s.usage_at(now, used));
    }

    fn admit_io_at(&self, estimate: Estimate, now: Instant) -> Result<Charge, Wait> {
        self.state.with(|s| s.admit_io_at(estimate, now))
    }

    fn settle_io_at(&self, charge: Charge, actual: Estimate, now: Instant) {
        self.state.with(|s| s.settle_io_at(charge, actual, now));
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").field("latest", &self.state.with(|s| s.latest())).finish()
    }
}
