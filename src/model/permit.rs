//! [`ModelPermitOf`]: an admitted request, one type for both ways of holding the limiter
//! ([`ModelPermit`] borrows it, [`OwnedModelPermit`] holds an `Arc`). Settle it with the actual
//! token count, or drop it to keep the estimate charged; either way its parallel slot is
//! released.

use alloc::sync::Arc;
use core::fmt;
use core::ops::Deref;
use core::time::Duration;

use super::estimate::Estimate;
use super::feedback::{FeedbackReport, throttled_at};
use super::limiter::ModelRateLimiter;
use super::pause::Cooldown;
use super::rule::Charge;
use super::state::{ModelState, Slot};
use crate::provider::Throttled;
use crate::{Clock, Instant};

/// The part of a permit that does not depend on how the limiter is held.
pub(crate) struct Admitted {
    pub(crate) state: Arc<ModelState>,
    /// What the store charged (its clock and the estimate), to settle it.
    pub(crate) charge: Charge,
    /// The parallel slot, released when the permit ends (settled or dropped).
    pub(crate) _slot: Slot,
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
        let actual = self.admitted.charge.split(actual_tokens);
        self.settle_io(actual.input, actual.output);
    }

    /// As [`settle`](Self::settle) with the actual input and output tokens apart: total-token
    /// limits get their sum, input-token limits the input, output-token limits the output
    /// (charged now for the first time, in the admission's slot while it is in the window).
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::model::{Counts, Estimate, Limit};
    /// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// const MINUTE: Duration = Duration::from_secs(60);
    /// let config = RateLimitConfig {
    ///     limits: vec![
    ///         Limit::window("itpm", Counts::InputTokens, 10_000, MINUTE),
    ///         Limit::window("otpm", Counts::OutputTokens, 2_000, MINUTE),
    ///     ],
    ///     ..Default::default()
    /// };
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("claude", config.clone())], config)?;
    /// // 3 000 tokens of prompt, up to 4 096 of output: only the input is reserved in ITPM,
    /// // nothing in OTPM (max_tokens is not what it will produce).
    /// let permit = limiter.try_acquire_with("claude", Estimate { input: 3_000, output: 4_096 })?;
    /// permit.settle_io(2_900, 1_500);
    /// let used: Vec<u64> = limiter.stats()["claude"].limits.iter().map(|l| l.usage.used).collect();
    /// assert_eq!(used, [1, 4_400, 2_900, 1_500]); // rpm, tpm, itpm, otpm
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn settle_io(self, input_tokens: u64, output_tokens: u64) {
        let now = self.limiter.timer().now();
        let actual = Estimate { input: input_tokens, output: output_tokens };
        self.admitted.state.settle_at(self.admitted.charge, actual, now);
    }

    /// The provider answered this request with a 429 asking to retry after `retry_after`:
    /// starts (or extends) the model's cooldown, during which no request of the model (or of
    /// its shared quota) is admitted, then ends the permit — its tokens given back (a refused
    /// request produced none; its request stays counted) and its parallel slot released *into*
    /// the cooldown: the next waiter takes it but is admitted only when the cooldown ends, so
    /// one 429 never sends the queue into the same wall. Returns the cooldown in force.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::{Error, ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig::default();
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
    /// let cooldown = limiter.try_acquire("m", 100)?.rate_limited(Duration::from_secs(2));
    /// assert_eq!(cooldown.until.as_secs(), 2);
    /// let Err(Error::RateLimited(refused)) = limiter.try_acquire("m", 100) else { panic!() };
    /// assert_eq!(refused.ready_at(), cooldown.until);
    /// limiter.timer().advance(Duration::from_secs(2));
    /// limiter.try_acquire("m", 100)?.settle(100);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn rate_limited(self, retry_after: Duration) -> Cooldown {
        let now = self.limiter.timer().now();
        // The cooldown first: a waiter woken by this slot sees it.
        let cooldown = self.admitted.state.cool_down(retry_after, now);
        crate::model::metrics::cooldown(&self.admitted.state.name, "retry_later");
        self.admitted.state.settle_at(self.admitted.charge, Estimate::default(), now);
        cooldown
    }

    /// The provider answered this request with a 429, classified by
    /// [`provider::classify_429`](crate::provider::classify_429): applies it to the model as
    /// [`ModelRateLimiter::observe_429`] does — a "retry later" starts or extends the cooldown
    /// and this permit's slot goes back *into* it ([`rate_limited`](Self::rate_limited)), an
    /// exhausted quota stops admissions until its reset — and ends the permit, its tokens
    /// given back. The report's `error` says what this request should fail with when retrying
    /// cannot help (too large for the provider's limit; quota exhausted).
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::provider::{HeaderReport, Provider, classify_429};
    /// use tollgate::{Error, ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig::default();
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
    /// let permit = limiter.try_acquire("m", 100)?;
    /// let mut headers = HeaderReport::empty(Provider::OpenAi);
    /// headers.retry_after = Some(Duration::from_secs(3));
    /// let report = permit.throttled(&classify_429(&headers, b"rate limited"));
    /// assert_eq!(report.cooldown.unwrap().until.as_secs(), 3);
    /// assert!(matches!(limiter.try_acquire("m", 100), Err(Error::RateLimited(_))));
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn throttled(self, throttled: &Throttled) -> FeedbackReport {
        let now = self.limiter.timer().now();
        let state = &self.admitted.state;
        let report = throttled_at(state, throttled, state.config().default_cooldown, now);
        state.settle_at(self.admitted.charge, Estimate::default(), now);
        report
    }

    /// The provider answered this request with a 429 saying the quota is used up (a spend
    /// limit, a daily quota): every admission of the model fails with
    /// [`Error::QuotaExhausted`](crate::Error::QuotaExhausted) until `reset_after` from now
    /// (`None`: unknown, until [`resume`](ModelRateLimiter::resume)), waiters included. The
    /// permit ends, its tokens given back.
    pub fn quota_exhausted(self, reset_after: Option<Duration>) {
        let now = self.limiter.timer().now();
        let reset_at = reset_after.map(|d| now.saturating_add(d));
        self.admitted.state.exhaust(reset_at);
        crate::model::metrics::cooldown(&self.admitted.state.name, "quota_exhausted");
        self.admitted.state.settle_at(self.admitted.charge, Estimate::default(), now);
    }
}

impl<L> ModelPermitOf<L> {
    /// The tokens reserved at admission (the estimate's total).
    pub fn estimated_tokens(&self) -> u64 {
        self.admitted.charge.tokens
    }

    /// When the request was admitted, on the limiter's clock (for latency metrics and audits):
    /// the instant its charge was made at, never earlier than any admission before it, nor
    /// than the start of a cooldown before it.
    pub fn admitted_at(&self) -> Instant {
        self.admitted.charge.at
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
