//! [`ModelRateLimiter`]: per-model rate limits (RPM, TPM and any further [`Limit`]s) and
//! parallel limits, waited for on any [`Timer`].
//!
//! This file is the waiting: the FIFO gate, the parallel slot, sleeping until the store says
//! there is room or a settle gives tokens back, and the bounds of `acquire_within` /
//! `acquire_before`. The decisions are the store's (`state.rs`, `store.rs`, `rule.rs`).
//!
//! [`Limit`]: super::Limit

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;
use core::time::Duration;

use super::config::{ModelConfigError, RateLimitConfig};
use super::estimate::Estimate;
use super::feedback::{Drained, FeedbackReport, Learned, Reported, observe_at, throttled_at};
use super::limit::Counts;
use super::metrics;
use super::pause::Cooldown;
use super::permit::{Admitted, ModelPermit, OwnedModelPermit};
use super::state::{Blocked, ModelState, Refused};
use super::stats::ModelStats;
use crate::provider::{HeaderReport, Throttled};
use crate::sync::Mutex;
use crate::{Clock, Error, Instant, Timer};

/// Rate limits for LLM APIs, per model: requests per minute, tokens per minute, any further
/// [`Limit`](crate::model::Limit)s of the model's config, and requests in flight.
///
/// [`acquire`](ModelRateLimiter::acquire) waits for a parallel slot, then for room in every
/// rate limit, and reserves the request's *estimated* tokens at admission; the returned permit
/// settles the *actual* count. Admission is all-or-nothing and first-come-first-served per
/// model; models never delay each other. Unknown models get the default config on first use,
/// unless the limiter is [strict](ModelRateLimiter::strict).
///
/// At run time a model's limits can be [reconfigured](ModelRateLimiter::reconfigure) keeping
/// its state and queue, several names can [share](ModelRateLimiter::share) one quota, and the
/// provider's own view feeds back in — only ever tightening unless the config opts in:
/// [`observe`](ModelRateLimiter::observe) a response's rate-limit headers (learn lower limits,
/// drain to the provider's remaining), and on a 429
/// [`throttled`](crate::model::ModelPermitOf::throttled) (a cooldown that holds the whole
/// queue, in order; an exhausted quota as [`Error::QuotaExhausted`]). Input and output tokens
/// can be limited apart ([`acquire_with`](ModelRateLimiter::acquire_with) an
/// [`Estimate`](crate::model::Estimate)).
///
/// ```
/// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
///
/// let limiter = ModelRateLimiter::<ManualClock>::new(
///     [("gpt-4", RateLimitConfig { rpm: 500, tpm: 40_000, max_parallel_requests: 10, ..Default::default() })],
///     RateLimitConfig { rpm: 10, tpm: 200_000, max_parallel_requests: 5, ..Default::default() },
/// )?;
/// futures_executor::block_on(async {
///     let permit = limiter.acquire("gpt-4", 8_000).await?;
///     // ... call the model ...
///     permit.settle(7_500);
///     Ok::<_, tollgate::Error>(())
/// })?;
/// let stats = limiter.stats();
/// assert_eq!(stats["gpt-4"].tokens.to_string(), "7500/40000");
/// assert_eq!(stats["gpt-4"].active.used, 0);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub struct ModelRateLimiter<T> {
    timer: T,
    /// `None`: strict, an unconfigured model name is [`Error::UnknownModel`].
    default_config: Option<RateLimitConfig>,
    /// Entries are never removed, so a state's `Arc` stays valid for every permit. The key is
    /// the state's own `name`, shared rather than stored twice.
    models: Mutex<BTreeMap<Arc<str>, Arc<ModelState>>>,
}

impl<T: Default> ModelRateLimiter<T> {
    /// A limiter with per-model configs and a default for every other model.
    ///
    /// # Errors
    /// A [`ModelConfigError`] naming the model and field if any limit is zero.
    pub fn new<I, S>(models: I, default_config: RateLimitConfig) -> Result<Self, ModelConfigError>
    where
        I: IntoIterator<Item = (S, RateLimitConfig)>,
        S: Into<String>,
    {
        Self::with_timer(models, default_config, T::default())
    }

    /// A *strict* limiter: only the models given here exist. Every acquire of any other name
    /// fails at once with [`Error::UnknownModel`], creating no state, so a typo cannot
    /// silently run under some default limits.
    ///
    /// ```
    /// use tollgate::{Error, ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let limiter = ModelRateLimiter::<ManualClock>::strict([(
    ///     "gpt-4",
    ///     RateLimitConfig { rpm: 500, tpm: 40_000, max_parallel_requests: 10, ..Default::default() },
    /// )])?;
    /// assert_eq!(limiter.try_acquire("gpt4", 100).unwrap_err(), Error::UnknownModel);
    /// limiter.try_acquire("gpt-4", 100)?.settle(90);
    /// assert_eq!(limiter.stats().keys().collect::<Vec<_>>(), ["gpt-4"]); // no "gpt4"
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
        Self::strict_with_timer(models, T::default())
    }
}

impl<T> ModelRateLimiter<T> {
    /// As [`ModelRateLimiter::new`], waiting on `timer`.
    ///
    /// # Errors
    /// A [`ModelConfigError`] naming the model and field if any limit is zero.
    pub fn with_timer<I, S>(
        models: I,
        default_config: RateLimitConfig,
        timer: T,
    ) -> Result<Self, ModelConfigError>
    where
        I: IntoIterator<Item = (S, RateLimitConfig)>,
        S: Into<String>,
    {
        default_config.validate()?;
        Self::build(models, Some(default_config), timer)
    }

    /// As [`ModelRateLimiter::strict`], waiting on `timer`.
    ///
    /// # Errors
    /// A [`ModelConfigError`] naming the model and field if any limit is zero.
    pub fn strict_with_timer<I, S>(models: I, timer: T) -> Result<Self, ModelConfigError>
    where
        I: IntoIterator<Item = (S, RateLimitConfig)>,
        S: Into<String>,
    {
        Self::build(models, None, timer)
    }

    fn build<I, S>(
        models: I,
        default_config: Option<RateLimitConfig>,
        timer: T,
    ) -> Result<Self, ModelConfigError>
    where
        I: IntoIterator<Item = (S, RateLimitConfig)>,
        S: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (name, config) in models {
            let name: String = name.into();
            if let Err(e) = config.validate() {
                return Err(ModelConfigError { model: Some(name), ..e });
            }
            let state = Arc::new(ModelState::new(name.into(), config));
            map.insert(state.name.clone(), state);
        }
        Ok(Self { timer, default_config, models: Mutex::new(map) })
    }

    /// The timer this limiter reads and waits on.
    pub fn timer(&self) -> &T {
        &self.timer
    }

    /// The config used for models not configured explicitly; `None` if the limiter is
    /// [strict](ModelRateLimiter::strict) and refuses them instead.
    pub fn default_config(&self) -> Option<RateLimitConfig> {
        self.default_config.clone()
    }

    /// Whether unconfigured model names are refused ([`ModelRateLimiter::strict`]).
    pub fn is_strict(&self) -> bool {
        self.default_config.is_none()
    }

    /// Whether `model` was configured explicitly (in the constructor), as opposed to unknown
    /// or running under the default config.
    pub fn is_configured(&self, model: &str) -> bool {
        self.models.with(|m| m.get(model).is_some_and(|s| s.configured()))
    }

    /// The config `model` runs under (the default if it was not configured). On a strict
    /// limiter an unconfigured model runs under none, it is refused: this then returns
    /// [`RateLimitConfig::default()`]; ask [`is_configured`](Self::is_configured) first.
    pub fn config(&self, model: &str) -> RateLimitConfig {
        self.models.with(|m| match m.get(model) {
            Some(state) => state.config(),
            None => self.default_config.clone().unwrap_or_default(),
        })
    }

    /// Several model names sharing one quota (OpenAI's shared limits across a model family):
    /// one set of books under `config`, one queue, one cooldown for all of them. Names that
    /// had state before start afresh on the shared one (their permits still in flight settle
    /// on the old one); `stats()` shows the shared figures under every name.
    ///
    /// ```
    /// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let limiter = ModelRateLimiter::<ManualClock>::new(
    ///     [] as [(&str, RateLimitConfig); 0],
    ///     RateLimitConfig::default(),
    /// )?;
    /// limiter.share(&["gpt-4o", "gpt-4o-mini"], RateLimitConfig { rpm: 2, ..Default::default() })?;
    /// limiter.try_acquire("gpt-4o", 10)?.settle(10);
    /// limiter.try_acquire("gpt-4o-mini", 10)?.settle(10);
    /// assert!(limiter.try_acquire("gpt-4o", 10).is_err()); // 2 requests between them
    /// assert_eq!(limiter.stats()["gpt-4o-mini"].requests.to_string(), "2/2");
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// A [`ModelConfigError`] naming the first model if `config` is invalid; nothing changes.
    pub fn share<S: AsRef<str>>(
        &self,
        models: &[S],
        config: RateLimitConfig,
    ) -> Result<(), ModelConfigError> {
        let Some(first) = models.first() else { return Ok(()) };
        if let Err(e) = config.validate() {
            return Err(ModelConfigError { model: Some(first.as_ref().into()), ..e });
        }
        let state = Arc::new(ModelState::new(first.as_ref().into(), config));
        self.models.with(|m| {
            for name in models {
                m.insert(name.as_ref().into(), state.clone());
            }
        });
        Ok(())
    }

    /// `model`'s state, created under the default config on first use; on a strict limiter,
    /// [`Error::UnknownModel`] for a name not configured, creating nothing.
    fn state(&self, model: &str) -> Result<Arc<ModelState>, Error> {
        self.models.with(|m| {
            if let Some(state) = m.get(model) {
                return Ok(state.clone());
            }
            let config = self.default_config.clone().ok_or(Error::UnknownModel)?;
            let state = ModelState::new(model.into(), config);
            state.set_configured(false);
            let state = Arc::new(state);
            m.insert(state.name.clone(), state.clone());
            Ok(state)
        })
    }
}

impl<T: Clock> ModelRateLimiter<T> {
    /// Usage of every configured model and every model used so far, by name.
    pub fn stats(&self) -> BTreeMap<String, ModelStats> {
        let models: alloc::vec::Vec<(Arc<str>, Arc<ModelState>)> =
            self.models.with(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        let now = self.timer.now();
        models
            .into_iter()
            .map(|(name, state)| (String::from(&*name), state.stats_at(now)))
            .collect()
    }

    /// Hot reconfiguration: `model` runs under `config` from now on, keeping its state and its
    /// queue — what its limits have counted stays counted (a limit of the same name and shape
    /// keeps its counters; one whose window changed starts with the old usage charged now),
    /// requests in flight keep their slots, waiters keep their places and re-check at once.
    /// Shrinking below what is in use blocks new admissions until usage fits. Limits learned
    /// from feedback are forgotten. A model not known yet is created under `config`
    /// (configured, even on a strict limiter).
    ///
    /// ```
    /// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig { rpm: 3, ..Default::default() };
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
    /// limiter.try_acquire("m", 10)?.settle(10);
    /// limiter.try_acquire("m", 10)?.settle(10);
    /// limiter.reconfigure("m", RateLimitConfig { rpm: 2, ..Default::default() })?;
    /// assert!(limiter.try_acquire("m", 10).is_err()); // 2 of 2 used: it kept its count
    /// assert_eq!(limiter.stats()["m"].requests.to_string(), "2/2");
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
        if let Err(e) = config.validate() {
            return Err(ModelConfigError { model: Some(model.into()), ..e });
        }
        let now = self.timer.now();
        self.models.with(|m| match m.get(model) {
            Some(state) => {
                state.reconfigure_at(config, now);
                state.set_configured(true);
            }
            None => {
                let state = Arc::new(ModelState::new(model.into(), config));
                m.insert(state.name.clone(), state);
            }
        });
        Ok(())
    }

    /// Applies one response's rate-limit headers (parsed by
    /// [`provider::parse_headers`](crate::provider::parse_headers)) to `model`: for each quota
    /// reported over a known window, the local limits that count the same over that window
    /// learn the provider's limit (lower only, unless
    /// [`feedback_may_raise`](RateLimitConfig::feedback_may_raise)) and are drained to the
    /// provider's remaining — the least it can be, given the provider's rounding — until the
    /// provider's reset. Feedback only tightens (invariant 11). Returns what changed.
    ///
    /// Settle the request a response answers before observing its headers (or use
    /// [`ModelPermitOf::settle_and_observe`](crate::model::ModelPermitOf::settle_and_observe)):
    /// the provider counts it at what it used, and what the provider counts beyond the
    /// limiter's books is taken for other clients' share.
    ///
    /// ```
    /// use tollgate::provider::{Provider, parse_headers};
    /// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig { rpm: 500, tpm: 40_000, ..Default::default() };
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("gpt-4o", config.clone())], config)?;
    /// let permit = limiter.try_acquire("gpt-4o", 1_000)?;
    /// // Another app shares the key: the provider has less left than we think.
    /// let headers = [
    ///     ("x-ratelimit-limit-tokens", "30000"),
    ///     ("x-ratelimit-remaining-tokens", "20000"),
    ///     ("x-ratelimit-reset-tokens", "20s"),
    /// ];
    /// let report = limiter.observe("gpt-4o", &parse_headers(Provider::OpenAi, headers, None))?;
    /// assert_eq!((report.learned[0].from, report.learned[0].to), (40_000, 30_000));
    /// assert_eq!(report.drained[0].charged, 9_000); // room 29 000 locally, 20 000 there
    /// permit.settle(1_000);
    /// assert_eq!(limiter.stats()["gpt-4o"].tokens.to_string(), "10000/30000");
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn observe(&self, model: &str, report: &HeaderReport) -> Result<FeedbackReport, Error> {
        let now = self.timer.now();
        self.observe_seen(model, report, now, now)
    }

    /// As [`observe`](Self::observe) for headers the provider produced at `seen` (an instant
    /// of this limiter's clock, no later than now; a later one counts as now): when the
    /// response was received, if it is read later, as with headers kept until a stream ends.
    /// The provider's figures are compared with what the limiter had charged in the window
    /// ending at `seen`, not now, so requests of its own that left the window in between are
    /// not taken for someone else's, and the provider's reset counts from `seen`.
    ///
    /// Each report replaces what the previous one held for other clients on the key (see
    /// [`RateState::drain_seen_at`](crate::model::RateState::drain_seen_at)); a report older
    /// than a window changes no window.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::provider::{Provider, parse_headers};
    /// use tollgate::{Instant, ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig { rpm: 100, ..Default::default() };
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
    /// limiter.timer().set(Instant::from_secs(100));
    /// for _ in 0..10 {
    ///     limiter.try_acquire("m", 10)?.settle(10);
    /// }
    /// // Produced at 100 s, when the provider counted our 10 and nobody else's.
    /// let headers = [("x-ratelimit-limit-requests", "100"), ("x-ratelimit-remaining-requests", "90")];
    /// let report = parse_headers(Provider::OpenAi, headers, None);
    /// // Read a minute and a half later, when our 10 have left the window: nothing to hold.
    /// limiter.timer().set(Instant::from_secs(190));
    /// let seen = Instant::from_secs(100);
    /// assert!(limiter.observe_at("m", &report, seen)?.drained.is_empty());
    /// assert_eq!(limiter.stats()["m"].requests.used, 0);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn observe_at(
        &self,
        model: &str,
        report: &HeaderReport,
        seen: Instant,
    ) -> Result<FeedbackReport, Error> {
        self.observe_seen(model, report, seen, self.timer.now())
    }

    fn observe_seen(
        &self,
        model: &str,
        report: &HeaderReport,
        seen: Instant,
        now: Instant,
    ) -> Result<FeedbackReport, Error> {
        let state = self.state(model)?;
        let may_raise = state.config().feedback_may_raise;
        Ok(observe_at(&state, report, may_raise, seen, now))
    }

    /// Applies a classified 429 (from
    /// [`provider::classify_429`](crate::provider::classify_429)) to `model`: "retry later"
    /// starts or extends the cooldown by the provider's delay (the config's
    /// [`default_cooldown`](RateLimitConfig::default_cooldown) when it gave none); "quota
    /// exhausted" makes every admission fail with [`Error::QuotaExhausted`] until the reset;
    /// "never fits" changes nothing and reports [`Error::InsufficientCapacity`] for the
    /// request. Prefer [`ModelPermitOf::throttled`](crate::model::ModelPermitOf::throttled)
    /// when the 429 answered a permit's request: it also releases the slot into the cooldown.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::provider::Throttled;
    /// use tollgate::{Error, ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig::default();
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
    /// let after = Some(Duration::from_millis(634));
    /// let report = limiter.observe_429("m", &Throttled::RetryLater { after })?;
    /// assert_eq!(report.cooldown.unwrap().until.as_nanos(), 634_000_000);
    /// let report = limiter.observe_429("m", &Throttled::NeverFits { requested: Some(36_055), limit: Some(30_000) })?;
    /// assert_eq!(report.error, Some(Error::InsufficientCapacity { requested: 36_055, capacity: 30_000 }));
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn observe_429(&self, model: &str, throttled: &Throttled) -> Result<FeedbackReport, Error> {
        let state = self.state(model)?;
        let fallback = state.config().default_cooldown;
        Ok(throttled_at(&state, throttled, fallback, self.timer.now()))
    }

    /// Starts (or extends) `model`'s cooldown: no request of it (or of its shared quota) is
    /// admitted until `retry_after` from now; waiters keep their order and go in when it ends.
    /// [`ModelPermitOf::rate_limited`](crate::model::ModelPermitOf::rate_limited) does this
    /// for the permit whose request got the 429, and also releases its slot.
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn cool_down(&self, model: &str, retry_after: Duration) -> Result<Cooldown, Error> {
        let state = self.state(model)?;
        metrics::cooldown(&state.name, "retry_later");
        Ok(state.cool_down(retry_after, self.timer.now()))
    }

    /// Marks `model`'s quota exhausted: every admission fails with [`Error::QuotaExhausted`]
    /// until `reset_after` from now (`None`: until [`resume`](Self::resume)), waiters included.
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn quota_exhausted(&self, model: &str, reset_after: Option<Duration>) -> Result<(), Error> {
        let state = self.state(model)?;
        metrics::cooldown(&state.name, "quota_exhausted");
        state.exhaust(reset_after.map(|d| self.timer.now().saturating_add(d)));
        Ok(())
    }

    /// Ends `model`'s cooldown and exhausted quota, if any; waiters re-check at once.
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn resume(&self, model: &str) -> Result<(), Error> {
        self.state(model)?.resume();
        Ok(())
    }

    /// Learns a limit from the provider: every limit of `model` that counts `counts` over
    /// `window` (windows of that length; `None`: every limit of those counts) takes `max` as
    /// its maximum, keeping what it has counted — never above the configured maximum unless
    /// the model's config has [`feedback_may_raise`](RateLimitConfig::feedback_may_raise)
    /// (invariant 11: feedback only tightens). A later, higher figure moves it back up, to
    /// the configured maximum at most. Returns the limits whose maximum changed.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::model::Counts;
    /// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig { tpm: 40_000, ..Default::default() };
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
    /// let minute = Some(Duration::from_secs(60));
    /// let changed = limiter.learn_limit("m", Counts::Tokens, minute, 30_000)?;
    /// assert_eq!((changed[0].from, changed[0].to), (40_000, 30_000));
    /// assert!(limiter.learn_limit("m", Counts::Tokens, minute, 90_000)?[0].to == 40_000);
    /// assert_eq!(limiter.stats()["m"].tokens.limit, 40_000);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn learn_limit(
        &self,
        model: &str,
        counts: Counts,
        window: Option<Duration>,
        max: u64,
    ) -> Result<alloc::vec::Vec<Learned>, Error> {
        let state = self.state(model)?;
        let may_raise = state.config().feedback_may_raise;
        Ok(state.learn(counts, window, max, may_raise))
    }

    /// Drains to the provider's figure: every limit of `model` that counts `counts` over
    /// `window` (as in [`learn_limit`](Self::learn_limit)) gets a room of at most
    /// `remaining` until about `reset_after` from now: a window holds what the provider
    /// counts beyond the limiter's own charges as other clients' share, replacing what the
    /// previous drain held (their requests come and go; their share is a level), a bucket is
    /// charged the excess. Never more room than the limits alone give. Returns what each
    /// limit holds for the others.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::model::Counts;
    /// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig { tpm: 10_000, ..Default::default() };
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
    /// limiter.try_acquire("m", 1_000)?.settle(1_000);
    /// // The provider counts another app on the same key: 4 000 left, full again in 20 s.
    /// let minute = Some(Duration::from_secs(60));
    /// let drained = limiter.drain("m", Counts::Tokens, minute, 4_000, Duration::from_secs(20))?;
    /// assert_eq!(drained[0].charged, 5_000);
    /// assert_eq!(limiter.stats()["m"].tokens.used, 6_000);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
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
    ) -> Result<alloc::vec::Vec<Drained>, Error> {
        let state = self.state(model)?;
        let now = self.timer.now();
        let expires = now.saturating_add(reset_after);
        let reported = Reported { remaining, tolerance: 0, expires, seen: now };
        Ok(state.drain_at(counts, window, reported, now))
    }

    /// Admits one request of `estimated_tokens` on `model` if it can be admitted now: a
    /// parallel slot is free, every rate limit has room, and no request of that model is queued
    /// ahead (it never overtakes one). Never waits.
    ///
    /// ```
    /// use tollgate::{Error, ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig { rpm: 1, tpm: 1_000, max_parallel_requests: 1, ..Default::default() };
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config.clone())?;
    /// let permit = limiter.try_acquire("m", 100)?;
    /// permit.settle(80);
    /// let Err(Error::RateLimited(refused)) = limiter.try_acquire("m", 100) else {
    ///     panic!("one request per minute")
    /// };
    /// let ready_at = refused.ready_at();
    /// assert_eq!(ready_at.as_secs(), 60); // the RPM window has room again just before 61 s
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// - [`Error::InsufficientCapacity`] if `estimated_tokens` exceeds `tpm` or any other
    ///   token limit: it could never fit.
    /// - [`Error::RateLimited`] if it cannot be admitted now. `ready_at` is the instant every
    ///   rate limit would have room for it, if nothing else arrives. When the obstacle
    ///   is a parallel slot or a request queued ahead, this is only a lower bound (often `now`,
    ///   when only that is missing): a slot frees when a permit ends, which no clock can
    ///   predict. `Instant::MAX` means never (room only after the end of the clock).
    /// - [`Error::UnknownModel`] on a [strict](ModelRateLimiter::strict) limiter for a model
    ///   it was not configured with.
    ///
    /// Nothing is counted or reserved when it fails.
    pub fn try_acquire(
        &self,
        model: &str,
        estimated_tokens: u64,
    ) -> Result<ModelPermit<'_, T>, Error> {
        self.try_acquire_with(model, Estimate::from(estimated_tokens))
    }

    /// As [`try_acquire`](ModelRateLimiter::try_acquire) with the estimate's input and output
    /// apart (see [`Estimate`] for how each limit weighs it).
    ///
    /// # Errors
    /// As [`try_acquire`](ModelRateLimiter::try_acquire), `InsufficientCapacity` for the
    /// input beyond an input-token limit too.
    pub fn try_acquire_with(
        &self,
        model: &str,
        estimate: Estimate,
    ) -> Result<ModelPermit<'_, T>, Error> {
        let admitted = self.try_admit_now(model, estimate)?;
        Ok(ModelPermit { limiter: self, admitted })
    }

    /// As [`try_acquire`](ModelRateLimiter::try_acquire) on an `Arc` of the limiter: the
    /// permit is `'static`, for spawned tasks (call it on a clone to keep the `Arc`).
    ///
    /// # Errors
    /// As [`try_acquire`](ModelRateLimiter::try_acquire).
    pub fn try_acquire_owned(
        self: Arc<Self>,
        model: &str,
        estimated_tokens: u64,
    ) -> Result<OwnedModelPermit<T>, Error> {
        let admitted = self.try_admit_now(model, Estimate::from(estimated_tokens))?;
        Ok(OwnedModelPermit { limiter: self, admitted })
    }

    /// As [`try_acquire_with`](ModelRateLimiter::try_acquire_with) on an `Arc` of the
    /// limiter: the permit is `'static`.
    ///
    /// # Errors
    /// As [`try_acquire_with`](ModelRateLimiter::try_acquire_with).
    pub fn try_acquire_with_owned(
        self: Arc<Self>,
        model: &str,
        estimate: Estimate,
    ) -> Result<OwnedModelPermit<T>, Error> {
        let admitted = self.try_admit_now(model, estimate)?;
        Ok(OwnedModelPermit { limiter: self, admitted })
    }

    /// The non-waiting admission: the same gate, slot and window checks as [`admit`], each
    /// tried once.
    fn try_admit_now(&self, model: &str, estimate: Estimate) -> Result<Admitted, Error> {
        let state = self.state(model)?;
        let result = try_admit(&state, estimate, self.timer.now());
        match &result {
            Ok(_) => metrics::admitted(&state.name, Duration::ZERO),
            Err(e) => metrics::refused(&state.name, e),
        }
        result
    }
}

impl<T: Timer> ModelRateLimiter<T> {
    /// Waits until `model` can take one more request of `estimated_tokens`, then admits it,
    /// reserving the estimate. Waits first for a parallel slot, then for room in every rate limit.
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] at once if `estimated_tokens` exceeds `tpm` or any other
    /// token limit: it could never fit.
    /// [`Error::MaxWaitExceeded`] with `ready_at: Instant::MAX` if room would only come after
    /// the end of the clock (584 years of nanoseconds): it can never be admitted either.
    /// [`Error::UnknownModel`] at once on a [strict](ModelRateLimiter::strict) limiter for a
    /// model it was not configured with.
    ///
    /// # Cancel safety
    /// Dropping the future at any point before it completes leaves nothing behind: its queue
    /// place and any parallel slot it took are released, and no request or tokens are
    /// counted (admission and the return of the permit happen in the same poll).
    pub fn acquire<'a>(
        &'a self,
        model: &str,
        estimated_tokens: u64,
    ) -> impl Future<Output = Result<ModelPermit<'a, T>, Error>> + use<'a, T> {
        self.acquire_with(model, Estimate::from(estimated_tokens))
    }

    /// As [`acquire`](ModelRateLimiter::acquire) with the estimate's input and output apart:
    /// total-token limits reserve the total, input-token limits the input, output-token limits
    /// nothing (output counts when it is produced: settle with
    /// [`settle_io`](crate::model::ModelPermitOf::settle_io)).
    ///
    /// ```
    /// use tollgate::model::Estimate;
    /// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig::default();
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
    /// futures_executor::block_on(async {
    ///     let permit = limiter.acquire_with("m", Estimate { input: 900, output: 300 }).await?;
    ///     assert_eq!(permit.estimated_tokens(), 1_200);
    ///     permit.settle_io(880, 120);
    ///     Ok::<_, tollgate::Error>(())
    /// })?;
    /// assert_eq!(limiter.stats()["m"].tokens.used, 1_000);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`acquire`](ModelRateLimiter::acquire); also [`Error::QuotaExhausted`] while the
    /// provider's quota is exhausted.
    ///
    /// # Cancel safety
    /// As [`acquire`](ModelRateLimiter::acquire).
    pub fn acquire_with<'a>(
        &'a self,
        model: &str,
        estimate: Estimate,
    ) -> impl Future<Output = Result<ModelPermit<'a, T>, Error>> + use<'a, T> {
        let state = self.state(model);
        async move {
            let admitted = admit(&self.timer, state?, estimate, Bound::Forever).await?;
            Ok(ModelPermit { limiter: self, admitted })
        }
    }

    /// As [`acquire_with`](ModelRateLimiter::acquire_with) on an `Arc` of the limiter: the
    /// future and the permit are `'static`, for spawned tasks.
    ///
    /// # Errors
    /// As [`acquire_with`](ModelRateLimiter::acquire_with).
    ///
    /// # Cancel safety
    /// As [`acquire`](ModelRateLimiter::acquire).
    pub fn acquire_with_owned(
        self: Arc<Self>,
        model: &str,
        estimate: Estimate,
    ) -> impl Future<Output = Result<OwnedModelPermit<T>, Error>> + use<T> {
        let state = self.state(model);
        async move {
            let admitted = admit(&self.timer, state?, estimate, Bound::Forever).await?;
            Ok(OwnedModelPermit { limiter: self, admitted })
        }
    }

    /// As [`acquire`](ModelRateLimiter::acquire), but gives up if admission would take longer
    /// than `max_wait`.
    ///
    /// `max_wait` is measured from the future's first poll, not from this call, and the
    /// up-front check uses that same clock reading: `max_wait = 0` admits exactly when the
    /// request fits now (a try). If the rate limits alone show the request cannot be
    /// admitted in time, it fails at once without queueing, with the instant it would be
    /// admitted. If it queues behind other requests and the time runs out, it fails then,
    /// releasing its place.
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`], [`Error::InsufficientCapacity`] or [`Error::UnknownModel`].
    ///
    /// # Cancel safety
    /// As [`acquire`](ModelRateLimiter::acquire).
    pub fn acquire_within<'a>(
        &'a self,
        model: &str,
        estimated_tokens: u64,
        max_wait: Duration,
    ) -> impl Future<Output = Result<ModelPermit<'a, T>, Error>> + use<'a, T> {
        let state = self.state(model);
        async move {
            let bound = Bound::Within(max_wait);
            let admitted =
                admit(&self.timer, state?, Estimate::from(estimated_tokens), bound).await?;
            Ok(ModelPermit { limiter: self, admitted })
        }
    }

    /// As [`acquire_within`](ModelRateLimiter::acquire_within) with the estimate's input and
    /// output apart (as [`acquire_with`](ModelRateLimiter::acquire_with) weighs them).
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::model::Estimate;
    /// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig::default();
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
    /// let estimate = Estimate { input: 900, output: 300 };
    /// let permit = futures_executor::block_on(
    ///     limiter.acquire_within_with("m", estimate, Duration::from_secs(5)),
    /// )?;
    /// permit.settle_io(880, 120);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`acquire_within`](ModelRateLimiter::acquire_within) and
    /// [`acquire_with`](ModelRateLimiter::acquire_with).
    ///
    /// # Cancel safety
    /// As [`acquire`](ModelRateLimiter::acquire).
    pub fn acquire_within_with<'a>(
        &'a self,
        model: &str,
        estimate: Estimate,
        max_wait: Duration,
    ) -> impl Future<Output = Result<ModelPermit<'a, T>, Error>> + use<'a, T> {
        let state = self.state(model);
        async move {
            let admitted = admit(&self.timer, state?, estimate, Bound::Within(max_wait)).await?;
            Ok(ModelPermit { limiter: self, admitted })
        }
    }

    /// As [`acquire`](ModelRateLimiter::acquire), but gives up unless it is admitted by
    /// `deadline`, an instant of the limiter's clock.
    ///
    /// If the rate limits alone show the request cannot be admitted by `deadline`, it
    /// fails at once without queueing, with the instant it would be admitted; a deadline
    /// already past fails at once even when the request would fit now. If it queues behind
    /// other requests and `deadline` passes, it fails then, releasing its place.
    /// `Instant::MAX` waits as long as [`acquire`](ModelRateLimiter::acquire).
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::{Clock, Error, ManualClock, ModelRateLimiter, RateLimitConfig};
    ///
    /// let config = RateLimitConfig { rpm: 1, tpm: 1_000, max_parallel_requests: 5, ..Default::default() };
    /// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config.clone())?;
    /// futures_executor::block_on(async {
    ///     let by = limiter.timer().now() + Duration::from_secs(10);
    ///     limiter.acquire_before("m", 100, by).await?.settle(100);
    ///     let err = limiter.acquire_before("m", 100, by).await.unwrap_err();
    ///     assert!(matches!(err, Error::MaxWaitExceeded { ready_at } if ready_at > by));
    ///     Ok::<_, Error>(())
    /// })?;
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`], [`Error::InsufficientCapacity`] or [`Error::UnknownModel`].
    ///
    /// # Cancel safety
    /// As [`acquire`](ModelRateLimiter::acquire).
    pub fn acquire_before<'a>(
        &'a self,
        model: &str,
        estimated_tokens: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<ModelPermit<'a, T>, Error>> + use<'a, T> {
        let state = self.state(model);
        async move {
            let bound = Bound::Before(deadline);
            let admitted =
                admit(&self.timer, state?, Estimate::from(estimated_tokens), bound).await?;
            Ok(ModelPermit { limiter: self, admitted })
        }
    }

    /// As [`acquire`](ModelRateLimiter::acquire) on an `Arc` of the limiter: the future and
    /// the permit are `'static`, for spawned tasks.
    ///
    /// # Errors
    /// As [`acquire`](ModelRateLimiter::acquire).
    ///
    /// # Cancel safety
    /// As [`acquire`](ModelRateLimiter::acquire).
    pub fn acquire_owned(
        self: Arc<Self>,
        model: &str,
        estimated_tokens: u64,
    ) -> impl Future<Output = Result<OwnedModelPermit<T>, Error>> + use<T> {
        let state = self.state(model);
        async move {
            let admitted =
                admit(&self.timer, state?, Estimate::from(estimated_tokens), Bound::Forever)
                    .await?;
            Ok(OwnedModelPermit { limiter: self, admitted })
        }
    }

    /// As [`acquire_within`](ModelRateLimiter::acquire_within) on an `Arc` of the limiter:
    /// the future and the permit are `'static`, for spawned tasks.
    ///
    /// # Errors
    /// As [`acquire_within`](ModelRateLimiter::acquire_within).
    ///
    /// # Cancel safety
    /// As [`acquire`](ModelRateLimiter::acquire).
    pub fn acquire_within_owned(
        self: Arc<Self>,
        model: &str,
        estimated_tokens: u64,
        max_wait: Duration,
    ) -> impl Future<Output = Result<OwnedModelPermit<T>, Error>> + use<T> {
        let state = self.state(model);
        async move {
            let bound = Bound::Within(max_wait);
            let admitted =
                admit(&self.timer, state?, Estimate::from(estimated_tokens), bound).await?;
            Ok(OwnedModelPermit { limiter: self, admitted })
        }
    }

    /// As [`acquire_within_with`](ModelRateLimiter::acquire_within_with) on an `Arc` of the
    /// limiter: the future and the permit are `'static`, for spawned tasks.
    ///
    /// # Errors
    /// As [`acquire_within_with`](ModelRateLimiter::acquire_within_with).
    ///
    /// # Cancel safety
    /// As [`acquire`](ModelRateLimiter::acquire).
    pub fn acquire_within_with_owned(
        self: Arc<Self>,
        model: &str,
        estimate: Estimate,
        max_wait: Duration,
    ) -> impl Future<Output = Result<OwnedModelPermit<T>, Error>> + use<T> {
        let state = self.state(model);
        async move {
            let admitted = admit(&self.timer, state?, estimate, Bound::Within(max_wait)).await?;
            Ok(OwnedModelPermit { limiter: self, admitted })
        }
    }

    /// As [`acquire_before`](ModelRateLimiter::acquire_before) on an `Arc` of the limiter:
    /// the future and the permit are `'static`, for spawned tasks.
    ///
    /// # Errors
    /// As [`acquire_before`](ModelRateLimiter::acquire_before).
    ///
    /// # Cancel safety
    /// As [`acquire`](ModelRateLimiter::acquire).
    pub fn acquire_before_owned(
        self: Arc<Self>,
        model: &str,
        estimated_tokens: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<OwnedModelPermit<T>, Error>> + use<T> {
        let state = self.state(model);
        async move {
            let bound = Bound::Before(deadline);
            let admitted =
                admit(&self.timer, state?, Estimate::from(estimated_tokens), bound).await?;
            Ok(OwnedModelPermit { limiter: self, admitted })
        }
    }
}

/// How long an acquire may wait.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Forever,
    /// From the first poll.
    Within(Duration),
    Before(Instant),
}

impl Bound {
    /// The deadline for an admission whose first poll read `start` (`Instant::MAX`: none).
    fn deadline(self, start: Instant) -> Instant {
        match self {
            Bound::Forever => Instant::MAX,
            Bound::Within(max_wait) => start.saturating_add(max_wait),
            Bound::Before(deadline) => deadline,
        }
    }
}

/// The one place this file builds a refusal for the non-waiting path.
fn rate_limited(ready_at: Instant) -> Error {
    Error::RateLimited(crate::Refusal::at(ready_at))
}

/// The non-waiting admission: the same checks, gate, slot and rule as [`admit`], each tried
/// once.
fn try_admit(state: &Arc<ModelState>, estimate: Estimate, now: Instant) -> Result<Admitted, Error> {
    state.check_at(estimate, now)?;
    let busy = |state: &ModelState| rate_limited(state.earliest_admission_at(estimate, now));
    // Gate first, as in `admit`: a free gate means nobody of this model is queued ahead.
    let Ok(gate) = state.gate.try_acquire() else { return Err(busy(state)) };
    let Ok(slot) = state.slots.clone().try_acquire_owned() else {
        return Err(busy(state));
    };
    let slot = state.slot(slot);
    let admitted = state.try_admit_at(estimate, now);
    drop(gate);
    match admitted {
        Ok(charge) => Ok(Admitted { state: state.clone(), charge, _slot: slot }),
        Err(Blocked::Wait(Refused { ready_at, .. })) => Err(rate_limited(ready_at)),
        Err(Blocked::Fail(e)) => Err(e),
    }
}

/// The admission path shared by every waiting `acquire` form.
///
/// Runs from the first poll: a `Within` budget is measured from the clock reading taken here,
/// and the up-front check uses that same reading (ARCHITECTURE.md, "Bounded waiting"). A deadline
/// fixed when the future was created, checked against a later reading, refused `max_wait = 0`
/// on an idle limiter on every real clock (issue 8).
async fn admit<T: Timer>(
    timer: &T,
    state: Arc<ModelState>,
    estimate: Estimate,
    bound: Bound,
) -> Result<Admitted, Error> {
    let start = timer.now();
    let result = wait_and_admit(timer, &state, estimate, bound, start).await;
    match &result {
        Ok(admitted) => {
            metrics::admitted(&state.name, admitted.charge.at.saturating_duration_since(start));
        }
        Err(e) => metrics::refused(&state.name, e),
    }
    result
}

async fn wait_and_admit<T: Timer>(
    timer: &T,
    state: &Arc<ModelState>,
    estimate: Estimate,
    bound: Bound,
    start: Instant,
) -> Result<Admitted, Error> {
    state.check_at(estimate, start)?;
    let deadline = bound.deadline(start);
    if deadline != Instant::MAX {
        let ready_at = state.earliest_admission_at(estimate, start);
        if ready_at > deadline {
            return Err(Error::MaxWaitExceeded { ready_at });
        }
    }
    // Gate first, then slot: only the gate holder ever takes a slot, so slots are handed out
    // in gate (arrival) order too.
    let gate = until(timer, deadline, state.gate.acquire()).await?;
    #[cfg(feature = "tracing")]
    if state.slots.available_permits() == 0 {
        tracing::debug!(
            target: "tollgate",
            model = &*state.name,
            limit = "max_parallel_requests",
            "request waits for a parallel slot"
        );
    }
    let mut slot = state.slot(until(timer, deadline, state.slots.clone().acquire_owned()).await?);
    loop {
        // A reconfiguration shrank the slots below those in use while this request held one:
        // give it up to what is owed and line up for another (still first: the gate is held),
        // so nothing is admitted until usage fits.
        if state.owes_slots() {
            drop(slot);
            slot = state.slot(until(timer, deadline, state.slots.clone().acquire_owned()).await?);
            continue;
        }
        let now = timer.now();
        match state.try_admit_at(estimate, now) {
            Ok(charge) => {
                drop(gate);
                return Ok(Admitted { state: state.clone(), charge, _slot: slot });
            }
            // Grown too large for a reconfigured limit, or the quota is exhausted.
            Err(Blocked::Fail(e)) => return Err(e),
            // `Instant::MAX` is "never": fail instead of sleeping until a deadline that is
            // already now at the end of the clock (that would spin).
            Err(Blocked::Wait(Refused { ready_at, .. }))
                if ready_at > deadline || ready_at == Instant::MAX =>
            {
                return Err(Error::MaxWaitExceeded { ready_at });
            }
            Err(Blocked::Wait(Refused { ready_at, refunds })) => {
                // No lock is held here: a settle may land now. `refunds` was read with the
                // check itself, so such a refund is seen by `refunded_since` (at once), never
                // lost until the window slot expires.
                #[cfg(all(test, not(tollgate_loom)))]
                tests::hook::after_admission_check();
                // Sleep until the windows have room, or until a settle refunds tokens.
                let _ = race(timer.sleep_until(ready_at), state.refunded_since(refunds)).await;
            }
        }
    }
}

/// Awaits `fut`, or fails with `MaxWaitExceeded` once `deadline` passes.
async fn until<T: Timer, F: Future>(
    timer: &T,
    deadline: Instant,
    fut: F,
) -> Result<F::Output, Error> {
    if deadline == Instant::MAX {
        return Ok(fut.await);
    }
    match race(fut, timer.sleep_until(deadline)).await {
        Either::Left(out) => Ok(out),
        Either::Right(()) => Err(Error::MaxWaitExceeded { ready_at: deadline }),
    }
}

enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both futures; returns whichever finishes first (the left one on a tie).
async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
    .await
}

impl<T> core::fmt::Debug for ModelRateLimiter<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ModelRateLimiter").field("default_config", &self.default_config).finish()
    }
}

#[cfg(all(test, not(tollgate_loom)))]
mod tests {
    extern crate std;

    use alloc::boxed::Box;
    use core::pin::pin;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use core::task::Context;

    use futures_util::task::{ArcWake, waker};

    use super::*;
    use crate::ManualClock;

    /// A test-only hook at the one point of `admit` where no lock is held between the
    /// admission check that refused a request and its sleep: whatever runs here is what another
    /// thread could do in that gap.
    pub(super) mod hook {
        use alloc::boxed::Box;
        use core::cell::RefCell;

        std::thread_local! {
            static AFTER_ADMISSION_CHECK: RefCell<Option<Box<dyn FnOnce()>>> =
                const { RefCell::new(None) };
        }

        pub(crate) fn set_after_admission_check(f: Box<dyn FnOnce()>) {
            AFTER_ADMISSION_CHECK.with(|h| *h.borrow_mut() = Some(f));
        }

        pub(crate) fn after_admission_check() {
            if let Some(f) = AFTER_ADMISSION_CHECK.with(|h| h.borrow_mut().take()) {
                f();
            }
        }
    }

    struct Wakes(AtomicUsize);

    impl ArcWake for Wakes {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Issue 8, forced deterministically: the settle that refunds tokens lands right
    /// after the waiting request's admission check refused it, before it goes to sleep. The
    /// request must still see the refund: admitted in that very poll, or woken for it. The
    /// clock never moves, so nothing else could ever wake it (on a real clock it would sleep
    /// until the 60 s window let its slot go).
    #[test]
    fn a_refund_between_the_admission_check_and_the_sleep_is_not_lost() {
        let config = RateLimitConfig {
            rpm: 100,
            tpm: 1_000,
            max_parallel_requests: 4,
            ..Default::default()
        };
        let l = Arc::new(
            ModelRateLimiter::with_timer(
                [("m", config.clone())],
                config.clone(),
                Arc::new(ManualClock::new()),
            )
            .unwrap(),
        );
        let big = futures_executor::block_on(l.clone().acquire_owned("m", 900)).unwrap();
        hook::set_after_admission_check(Box::new(move || big.settle(100)));

        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let w = waker(wakes.clone());
        let mut cx = Context::from_waker(&w);
        let mut waiting = pin!(l.acquire("m", 500));
        let mut seen = 0;
        for _ in 0..10 {
            if let Poll::Ready(result) = waiting.as_mut().poll(&mut cx) {
                let permit = result.unwrap();
                assert_eq!(l.stats()["m"].tokens.used, 600);
                permit.settle(500);
                return;
            }
            let now = wakes.0.load(Ordering::SeqCst);
            assert!(
                now > seen,
                "the request sleeps with the refund already made: nothing will ever wake it \
                 (tokens used {}, clock at {:?})",
                l.stats()["m"].tokens,
                l.timer().now(),
            );
            seen = now;
        }
        panic!("woken ten times without being admitted");
    }
}
