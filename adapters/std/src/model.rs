//! [`ModelRateLimiter`]: the blocking LLM model limiter for threads.

use core::time::Duration;
use std::collections::BTreeMap;

use tollgate::provider::{HeaderReport, Throttled};
use tollgate::{Error, Instant};

use crate::{StdTimer, block_on};

// The rest of the core's model module (its errors, stats, owned permit), so this module is the
// whole model API for threads; the two items below replace their async namesakes.
pub use tollgate::model::*;

/// An admitted request of the blocking [`ModelRateLimiter`]: settle it with the actual token
/// count, or drop it to keep the estimate charged.
pub type ModelPermit<'a> = tollgate::model::ModelPermit<'a, StdTimer>;

/// Per-model RPM, TPM and parallel-request limits for threads: [`tollgate::ModelRateLimiter`]
/// on the [`StdTimer`], with each waiting call driven on the calling thread by [`block_on`].
/// Same admission logic, same FIFO order across threads; the thread parks while it waits.
///
/// ```
/// use std::sync::Arc;
/// use tollgate_std::{ModelRateLimiter, RateLimitConfig};
///
/// let limiter = Arc::new(ModelRateLimiter::new(
///     [("gpt-4", RateLimitConfig { rpm: 500, tpm: 40_000, max_parallel_requests: 2, ..Default::default() })],
///     RateLimitConfig::default(),
/// )?);
/// let workers: Vec<_> = (0..4)
///     .map(|_| {
///         let limiter = Arc::clone(&limiter);
///         std::thread::spawn(move || {
///             let permit = limiter.acquire("gpt-4", 1_000).unwrap(); // at most 2 at once
///             permit.settle(800);
///         })
///     })
///     .collect();
/// for w in workers {
///     w.join().unwrap();
/// }
/// assert_eq!(limiter.stats()["gpt-4"].tokens.to_string(), "3200/40000");
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ModelRateLimiter {
    inner: tollgate::ModelRateLimiter<StdTimer>,
}

impl ModelRateLimiter {
    /// A limiter with per-model configs and a default for every other model.
    ///
    /// # Errors
    /// A [`ModelConfigError`] naming the model and field if any limit is zero.
    pub fn new<I, S>(models: I, default_config: RateLimitConfig) -> Result<Self, ModelConfigError>
    where
        I: IntoIterator<Item = (S, RateLimitConfig)>,
        S: Into<String>,
    {
        Ok(Self { inner: tollgate::ModelRateLimiter::new(models, default_config)? })
    }

    /// A *strict* limiter: only the models given here exist, and every call for another name
    /// fails at once with [`Error::UnknownModel`], creating nothing (see
    /// [`tollgate::ModelRateLimiter::strict`]).
    ///
    /// ```
    /// use tollgate_std::{Error, ModelRateLimiter, RateLimitConfig};
    ///
    /// let limiter = ModelRateLimiter::strict([("gpt-4", RateLimitConfig::default())])?;
    /// assert_eq!(limiter.acquire("gpt4", 100).unwrap_err(), Error::UnknownModel);
    /// limiter.acquire("gpt-4", 100)?.settle(90);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// A [`ModelConfigError`] naming the model and field if any limit is zero.
    pub fn strict<I, S>(models: I) -> Result<Self, ModelConfigError>
    where
        I: IntoIterator<Item = (S, RateLimitConfig)>,
        S: Into<String>,
    {
        Ok(Self { inner: tollgate::ModelRateLimiter::strict(models)? })
    }

    /// Blocks until `model` can take one more request of `estimated_tokens`, then admits it,
    /// reserving the estimate: first a parallel slot, then RPM and TPM room.
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] at once if `estimated_tokens > tpm`;
    /// [`Error::UnknownModel`] at once on a [strict](Self::strict) limiter for a model it was
    /// not configured with.
    pub fn acquire(&self, model: &str, estimated_tokens: u64) -> Result<ModelPermit<'_>, Error> {
        block_on(self.inner.acquire(model, estimated_tokens))
    }

    /// As [`acquire`](Self::acquire), but gives up after `max_wait`, or at once if the RPM/TPM
    /// windows alone show it cannot be admitted in time (with the instant it would be).
    ///
    /// `max_wait` is measured from the clock reading the admission check uses, taken inside
    /// this call, so `max_wait = 0` admits exactly when the request fits now (a try).
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`], [`Error::InsufficientCapacity`] or [`Error::UnknownModel`].
    pub fn acquire_within(
        &self,
        model: &str,
        estimated_tokens: u64,
        max_wait: Duration,
    ) -> Result<ModelPermit<'_>, Error> {
        // `block_on` polls at once, and the core measures `max_wait` from the first poll.
        block_on(self.inner.acquire_within(model, estimated_tokens, max_wait))
    }

    /// As [`acquire`](Self::acquire), but gives up unless admitted by `deadline` (an instant
    /// of [`StdClock`](crate::StdClock)), or at once if the RPM/TPM windows alone show it
    /// cannot be admitted by then (with the instant it would be).
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`], [`Error::InsufficientCapacity`] or [`Error::UnknownModel`].
    pub fn acquire_before(
        &self,
        model: &str,
        estimated_tokens: u64,
        deadline: Instant,
    ) -> Result<ModelPermit<'_>, Error> {
        block_on(self.inner.acquire_before(model, estimated_tokens, deadline))
    }

    /// Admits the request if it can be admitted now (a free parallel slot, RPM and TPM room,
    /// nobody of that model queued ahead); never blocks.
    ///
    /// # Errors
    /// As [`tollgate::ModelRateLimiter::try_acquire`]: [`Error::RateLimited`] (for a missing
    /// parallel slot too, with a lower bound for `ready_at`), [`Error::InsufficientCapacity`]
    /// or [`Error::UnknownModel`].
    pub fn try_acquire(
        &self,
        model: &str,
        estimated_tokens: u64,
    ) -> Result<ModelPermit<'_>, Error> {
        self.inner.try_acquire(model, estimated_tokens)
    }

    /// As [`acquire`](Self::acquire) with the estimate's input and output apart (see
    /// [`tollgate::ModelRateLimiter::acquire_with`]).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), and [`Error::QuotaExhausted`] while the provider's quota
    /// is exhausted.
    pub fn acquire_with(&self, model: &str, estimate: Estimate) -> Result<ModelPermit<'_>, Error> {
        block_on(self.inner.acquire_with(model, estimate))
    }

    /// As [`acquire_within`](Self::acquire_within) with the estimate's input and output apart.
    ///
    /// # Errors
    /// As [`acquire_within`](Self::acquire_within) and [`acquire_with`](Self::acquire_with).
    pub fn acquire_within_with(
        &self,
        model: &str,
        estimate: Estimate,
        max_wait: Duration,
    ) -> Result<ModelPermit<'_>, Error> {
        block_on(self.inner.acquire_within_with(model, estimate, max_wait))
    }

    /// As [`try_acquire`](Self::try_acquire) with the estimate's input and output apart.
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    pub fn try_acquire_with(
        &self,
        model: &str,
        estimate: Estimate,
    ) -> Result<ModelPermit<'_>, Error> {
        self.inner.try_acquire_with(model, estimate)
    }

    /// Several model names sharing one quota; see [`tollgate::ModelRateLimiter::share`].
    ///
    /// # Errors
    /// A [`ModelConfigError`] if `config` is invalid; nothing changes.
    pub fn share<S: AsRef<str>>(
        &self,
        models: &[S],
        config: RateLimitConfig,
    ) -> Result<(), ModelConfigError> {
        self.inner.share(models, config)
    }

    /// Hot reconfiguration, keeping the model's state and queue; see
    /// [`tollgate::ModelRateLimiter::reconfigure`].
    ///
    /// ```
    /// use tollgate_std::{ModelRateLimiter, RateLimitConfig};
    ///
    /// let limiter = ModelRateLimiter::new([("m", RateLimitConfig::default())], RateLimitConfig::default())?;
    /// limiter.acquire("m", 100)?.settle(100);
    /// limiter.reconfigure("m", RateLimitConfig { rpm: 1, ..Default::default() })?;
    /// assert!(limiter.try_acquire("m", 100).is_err()); // its one request is counted
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// A [`ModelConfigError`] naming the model if `config` is invalid; nothing changes.
    pub fn reconfigure(
        &self,
        model: &str,
        config: RateLimitConfig,
    ) -> Result<(), ModelConfigError> {
        self.inner.reconfigure(model, config)
    }

    /// Applies a response's rate-limit headers; see [`tollgate::ModelRateLimiter::observe`].
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn observe(&self, model: &str, report: &HeaderReport) -> Result<FeedbackReport, Error> {
        self.inner.observe(model, report)
    }

    /// Applies rate-limit headers the provider produced at `seen` (this limiter's clock); see
    /// [`tollgate::ModelRateLimiter::observe_at`].
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn observe_at(
        &self,
        model: &str,
        report: &HeaderReport,
        seen: Instant,
    ) -> Result<FeedbackReport, Error> {
        self.inner.observe_at(model, report, seen)
    }

    /// Applies a classified 429; see [`tollgate::ModelRateLimiter::observe_429`] (and
    /// [`ModelPermitOf::throttled`] for a permit's own 429).
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn observe_429(&self, model: &str, throttled: &Throttled) -> Result<FeedbackReport, Error> {
        self.inner.observe_429(model, throttled)
    }

    /// Starts or extends the model's cooldown; see [`tollgate::ModelRateLimiter::cool_down`].
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn cool_down(&self, model: &str, retry_after: Duration) -> Result<Cooldown, Error> {
        self.inner.cool_down(model, retry_after)
    }

    /// Marks the model's quota exhausted; see [`tollgate::ModelRateLimiter::quota_exhausted`].
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn quota_exhausted(&self, model: &str, reset_after: Option<Duration>) -> Result<(), Error> {
        self.inner.quota_exhausted(model, reset_after)
    }

    /// Ends the model's cooldown and exhausted quota; see [`tollgate::ModelRateLimiter::resume`].
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn resume(&self, model: &str) -> Result<(), Error> {
        self.inner.resume(model)
    }

    /// Learns a limit from the provider; see [`tollgate::ModelRateLimiter::learn_limit`].
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn learn_limit(
        &self,
        model: &str,
        counts: Counts,
        window: Option<Duration>,
        max: u64,
    ) -> Result<Vec<Learned>, Error> {
        self.inner.learn_limit(model, counts, window, max)
    }

    /// Drains to the provider's remaining; see [`tollgate::ModelRateLimiter::drain`].
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn drain(
        &self,
        model: &str,
        counts: Counts,
        window: Option<Duration>,
        remaining: u64,
        reset_after: Duration,
    ) -> Result<Vec<Drained>, Error> {
        self.inner.drain(model, counts, window, remaining, reset_after)
    }

    /// Usage of every configured model and every model used so far.
    pub fn stats(&self) -> BTreeMap<String, ModelStats> {
        self.inner.stats()
    }

    /// The config `model` runs under; see [`tollgate::ModelRateLimiter::config`].
    pub fn config(&self, model: &str) -> RateLimitConfig {
        self.inner.config(model)
    }

    /// Whether unconfigured model names are refused ([`strict`](Self::strict)).
    pub fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    /// Whether `model` was configured in the constructor.
    pub fn is_configured(&self, model: &str) -> bool {
        self.inner.is_configured(model)
    }

    /// The async limiter underneath, for code that mixes threads and async.
    pub fn as_async(&self) -> &tollgate::ModelRateLimiter<StdTimer> {
        &self.inner
    }
}
