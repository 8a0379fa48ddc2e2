//! [`ModelPermit`]: an admitted request. Settle it with the actual token count, or drop it to
//! keep the estimate charged; either way its parallel slot is released.

use alloc::sync::Arc;

use super::limiter::ModelRateLimiter;
use super::state::ModelState;
use crate::semaphore::OwnedSemaphorePermit;
use crate::window::SlotId;
use crate::{Clock, Instant};

/// The part of a permit that does not depend on how the limiter is held.
pub(crate) struct Admitted {
    pub(crate) state: Arc<ModelState>,
    pub(crate) estimated: u64,
    pub(crate) slot: SlotId,
    /// The limiter's clock reading at admission.
    pub(crate) at: Instant,
    /// The parallel slot, released when the permit ends (settled or dropped).
    pub(crate) _slot: OwnedSemaphorePermit,
}

impl Admitted {
    fn settle(&self, actual: u64, clock: &impl Clock) {
        self.state.settle(self.slot, self.estimated, actual, clock.now());
    }
}

/// An admitted request of a [`ModelRateLimiter`], holding one parallel slot.
///
/// Call [`settle`](ModelPermit::settle) with the tokens the request really used. Dropping it
/// unsettled releases the slot and leaves the estimate charged (the safe choice when the
/// actual count is unknown, e.g. the call failed mid-stream).
#[must_use = "dropping the permit at once releases its slot; hold it while the request runs"]
pub struct ModelPermit<'a, T> {
    pub(crate) limiter: &'a ModelRateLimiter<T>,
    pub(crate) admitted: Admitted,
}

impl<T: Clock> ModelPermit<'_, T> {
    /// Replaces the reserved estimate with `actual_tokens`, in the window slot where the
    /// request was admitted (a refund when lower, an extra charge when higher), and releases
    /// the parallel slot.
    ///
    /// If that slot has already left the 60 s window (a call that ran for over a minute), a
    /// lower count refunds nothing, and a higher one charges the excess now, so it counts
    /// for the next 60 s.
    pub fn settle(self, actual_tokens: u64) {
        self.admitted.settle(actual_tokens, self.limiter.timer());
    }
}

impl<T> ModelPermit<'_, T> {
    /// The tokens reserved at admission.
    pub fn estimated_tokens(&self) -> u64 {
        self.admitted.estimated
    }

    /// When the request was admitted, on the limiter's clock (for latency metrics and audits).
    pub fn admitted_at(&self) -> Instant {
        self.admitted.at
    }
}

impl<T> core::fmt::Debug for ModelPermit<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ModelPermit").field("estimated", &self.admitted.estimated).finish()
    }
}

/// A [`ModelPermit`] that owns an `Arc` of its limiter, for spawned tasks
/// ([`ModelRateLimiter::acquire_owned`]).
#[must_use = "dropping the permit at once releases its slot; hold it while the request runs"]
pub struct OwnedModelPermit<T> {
    pub(crate) limiter: Arc<ModelRateLimiter<T>>,
    pub(crate) admitted: Admitted,
}

impl<T: Clock> OwnedModelPermit<T> {
    /// As [`ModelPermit::settle`].
    pub fn settle(self, actual_tokens: u64) {
        self.admitted.settle(actual_tokens, self.limiter.timer());
    }
}

impl<T> OwnedModelPermit<T> {
    /// The tokens reserved at admission.
    pub fn estimated_tokens(&self) -> u64 {
        self.admitted.estimated
    }

    /// When the request was admitted, on the limiter's clock (for latency metrics and audits).
    pub fn admitted_at(&self) -> Instant {
        self.admitted.at
    }
}

impl<T> core::fmt::Debug for OwnedModelPermit<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OwnedModelPermit").field("estimated", &self.admitted.estimated).finish()
    }
}
