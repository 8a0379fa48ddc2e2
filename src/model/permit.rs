//! [`ModelPermitOf`]: an admitted request, one type for both ways of holding the limiter
//! ([`ModelPermit`] borrows it, [`OwnedModelPermit`] holds an `Arc`). Settle it with the actual
//! token count, or drop it to keep the estimate charged; either way its parallel slot is
//! released.

use alloc::sync::Arc;
use core::fmt;
use core::ops::Deref;

use super::limiter::ModelRateLimiter;
use super::rule::Charge;
use super::state::ModelState;
use crate::semaphore::OwnedSemaphorePermit;
use crate::{Clock, Instant};

/// The part of a permit that does not depend on how the limiter is held.
pub(crate) struct Admitted {
    pub(crate) state: Arc<ModelState>,
    /// What the store charged (its clock and the estimate), to settle it.
    pub(crate) charge: Charge,
    /// The limiter's clock reading at admission.
    pub(crate) at: Instant,
    /// The parallel slot, released when the permit ends (settled or dropped).
    pub(crate) _slot: OwnedSemaphorePermit,
}

/// An admitted request of a [`ModelRateLimiter`] held as `L`, holding one parallel slot. Used
/// through its two aliases, [`ModelPermit`] (borrows the limiter) and [`OwnedModelPermit`]
/// (an `Arc` of it, `'static`, for spawned tasks); both work the same.
///
/// Call [`settle`](Self::settle) with the tokens the request really used. Dropping it
/// unsettled releases the slot and leaves the estimate charged (the safe choice when the
/// actual count is unknown, e.g. the call failed mid-stream).
#[must_use = "dropping the permit at once releases its slot; hold it while the request runs"]
pub struct ModelPermitOf<L> {
    pub(crate) limiter: L,
    pub(crate) admitted: Admitted,
}

/// An admitted request that borrows its [`ModelRateLimiter`]
/// ([`acquire`](ModelRateLimiter::acquire)).
pub type ModelPermit<'a, T> = ModelPermitOf<&'a ModelRateLimiter<T>>;

/// An admitted request that owns an `Arc` of its limiter, for spawned tasks
/// ([`ModelRateLimiter::acquire_owned`]).
pub type OwnedModelPermit<T> = ModelPermitOf<Arc<ModelRateLimiter<T>>>;

impl<T: Clock, L: Deref<Target = ModelRateLimiter<T>>> ModelPermitOf<L> {
    /// Replaces the reserved estimate with `actual_tokens` in every token limit, in the
    /// window slot where the request was admitted (a refund when lower, an extra charge when
    /// higher), and releases the parallel slot.
    ///
    /// If that slot has already left a window (a call that ran longer than the window), a
    /// lower count refunds nothing there, and a higher one charges the excess now, so it
    /// counts for the next window.
    ///
    /// ```
    /// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig::default();
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
    /// limiter.try_acquire("m", 1_000)?.settle(700);
    /// assert_eq!(limiter.stats()["m"].tokens.used, 700);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn settle(self, actual_tokens: u64) {
        let now = self.limiter.timer().now();
        self.admitted.state.settle_at(self.admitted.charge, actual_tokens, now);
    }
}

impl<L> ModelPermitOf<L> {
    /// The tokens reserved at admission.
    pub fn estimated_tokens(&self) -> u64 {
        self.admitted.charge.tokens
    }

    /// When the request was admitted, on the limiter's clock (for latency metrics and audits).
    pub fn admitted_at(&self) -> Instant {
        self.admitted.at
    }
}

/// `Debug` names for the two ways of holding the limiter.
mod holder {
    pub trait Holder {
        const PERMIT: &'static str;
    }
}

impl<T> holder::Holder for &ModelRateLimiter<T> {
    const PERMIT: &'static str = "ModelPermit";
}

impl<T> holder::Holder for Arc<ModelRateLimiter<T>> {
    const PERMIT: &'static str = "OwnedModelPermit";
}

impl<L: holder::Holder> fmt::Debug for ModelPermitOf<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(L::PERMIT).field("estimated", &self.admitted.charge.tokens).finish()
    }
}
