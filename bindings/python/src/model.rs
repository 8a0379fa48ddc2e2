//! The model limiter (RPM, TPM, parallel requests and further limits per model) on Python's
//! clock: the core's `ModelRateLimiter`, its permits, its provider feedback, and its
//! statistics as typed Python objects.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use tollgate::model::{Estimate, OwnedModelPermit};
use tollgate::{ModelRateLimiter, RateLimitConfig};

use crate::clock::{self, PyTimer, secs_from_instant};
use crate::driver::{CoreWait, Done, Waiting};
use crate::errors::{map_error, model_config, poisoned};
use crate::feedback::{self, Cooldown, Drained, FeedbackReport, Learned, Throttled};
use crate::limit::{Limit, LimitUsage, counts_from};
use crate::rps::duration;

/// One model's config as Python passes it: `(rpm, tpm, max_parallel_requests, limits,
/// feedback_may_raise, default_cooldown)`, the cooldown in seconds.
type ConfigArgs = (u32, u64, u32, Vec<Limit>, bool, f64);

/// The Python form as the core's config. Fields the core adds later keep their defaults
/// (hence the update, needless today).
#[allow(clippy::needless_update)]
fn config(
    (rpm, tpm, max_parallel_requests, limits, feedback_may_raise, default_cooldown): ConfigArgs,
) -> PyResult<RateLimitConfig> {
    let limits = limits.into_iter().map(|l| l.inner).collect();
    Ok(RateLimitConfig {
        rpm,
        tpm,
        max_parallel_requests,
        limits,
        feedback_may_raise,
        default_cooldown: duration("default_cooldown", default_cooldown)?,
        ..RateLimitConfig::default()
    })
}

/// The core's config in the Python form.
fn config_args(c: RateLimitConfig) -> ConfigArgs {
    let limits = c.limits.into_iter().map(|inner| Limit { inner }).collect();
    (
        c.rpm,
        c.tpm,
        c.max_parallel_requests,
        limits,
        c.feedback_may_raise,
        c.default_cooldown.as_secs_f64(),
    )
}

/// Per-model limits over the core's model limiter.
#[pyclass(frozen, module = "tollgate._tollgate")]
pub struct ModelLimiterCore {
    limiter: Arc<ModelRateLimiter<PyTimer>>,
}

#[pymethods]
impl ModelLimiterCore {
    /// `models` maps names to `(rpm, tpm, max_parallel_requests, limits)`; `default` applies
    /// to every other name, or, when `None`, the limiter is strict and refuses them.
    #[new]
    #[pyo3(signature = (models, default))]
    fn new(
        py: Python<'_>,
        models: Vec<(String, ConfigArgs)>,
        default: Option<ConfigArgs>,
    ) -> PyResult<Self> {
        let models = models
            .into_iter()
            .map(|(name, c)| Ok((name, config(c)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let limiter = match default {
            Some(d) => ModelRateLimiter::with_timer(models, config(d)?, PyTimer),
            None => ModelRateLimiter::strict_with_timer(models, PyTimer),
        }
        .map_err(|e| model_config(py, e))?;
        Ok(Self { limiter: Arc::new(limiter) })
    }

    /// Admits now or raises (`RateLimited`, `InsufficientCapacity`, `UnknownModel`,
    /// `QuotaExhausted`). `estimated_tokens` is the input when `output_tokens` is given
    /// (see `tollgate.ModelRateLimiter.acquire`).
    #[pyo3(signature = (model, estimated_tokens, output_tokens = 0))]
    fn try_acquire(
        &self,
        py: Python<'_>,
        model: &str,
        estimated_tokens: u64,
        output_tokens: u64,
    ) -> PyResult<Permit> {
        let estimate = Estimate { input: estimated_tokens, output: output_tokens };
        match self.limiter.clone().try_acquire_with_owned(model, estimate) {
            Ok(permit) => Ok(Permit::new(permit)),
            Err(e) => Err(map_error(py, e, clock::now(py))),
        }
    }

    /// A wait for admission; with `max_wait` (seconds) it fails with `MaxWaitExceeded`
    /// rather than wait longer.
    #[pyo3(signature = (model, estimated_tokens, output_tokens = 0, max_wait = None))]
    fn acquire(
        &self,
        model: &str,
        estimated_tokens: u64,
        output_tokens: u64,
        max_wait: Option<f64>,
    ) -> PyResult<Waiting> {
        let limiter = self.limiter.clone();
        let max_wait = max_wait.map(|secs| duration("max_wait", secs)).transpose()?;
        let estimate = Estimate { input: estimated_tokens, output: output_tokens };
        let model = model.to_owned();
        let wait: CoreWait = Box::pin(async move {
            let admitted = match max_wait {
                None => limiter.acquire_with_owned(&model, estimate).await,
                Some(d) => limiter.acquire_within_with_owned(&model, estimate, d).await,
            };
            admitted.map(Done::Permit)
        });
        Ok(Waiting::new(wait))
    }

    /// Several model names on one quota: one set of books under `config`, one queue, one
    /// cooldown (OpenAI's shared limits across a model family).
    fn share(&self, py: Python<'_>, models: Vec<String>, config: ConfigArgs) -> PyResult<()> {
        let config = self::config(config)?;
        self.limiter.share(&models, config).map_err(|e| model_config(py, e))
    }

    /// Hot reconfiguration: `model` runs under `config` from now on, keeping its counts, its
    /// slots in use and its queue.
    fn reconfigure(&self, py: Python<'_>, model: &str, config: ConfigArgs) -> PyResult<()> {
        let config = self::config(config)?;
        self.limiter.reconfigure(model, config).map_err(|e| model_config(py, e))
    }

    /// Applies one response's rate-limit headers to `model`: learns lower limits, drains the
    /// local windows to the provider's remaining.
    #[pyo3(signature = (model, headers, provider = None))]
    fn observe(
        &self,
        py: Python<'_>,
        model: &str,
        headers: &Bound<'_, PyAny>,
        provider: Option<&str>,
    ) -> PyResult<FeedbackReport> {
        let (report, parsed) = feedback::parse(py, headers, provider)?;
        let applied = if parsed.provider.is_some() {
            self.limiter.observe(model, &report).map_err(|e| map_error(py, e, clock::now(py)))?
        } else {
            // No rate-limit headers: nothing to apply (a strict limiter still checks the name).
            self.check_known(py, model)?;
            tollgate::model::FeedbackReport::default()
        };
        Ok(FeedbackReport::from_core(py, applied, parsed, None))
    }

    /// Applies a 429 response (headers and body) to `model`: a cooldown, an exhausted
    /// quota, or the error of a request that can never fit.
    #[pyo3(signature = (model, headers, body = None, provider = None))]
    fn observe_429(
        &self,
        py: Python<'_>,
        model: &str,
        headers: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
        provider: Option<&str>,
    ) -> PyResult<FeedbackReport> {
        let (throttled, parsed) = feedback::classify(py, headers, body, provider)?;
        let applied = self
            .limiter
            .observe_429(model, &throttled)
            .map_err(|e| map_error(py, e, clock::now(py)))?;
        Ok(FeedbackReport::from_core(py, applied, parsed, Some(Throttled::from_core(&throttled))))
    }

    /// Pauses `model`'s admissions for `retry_after` seconds (or extends the pause).
    fn cool_down(&self, py: Python<'_>, model: &str, retry_after: f64) -> PyResult<Cooldown> {
        let after = duration("retry_after", retry_after)?;
        match self.limiter.cool_down(model, after) {
            Ok(c) => Ok(Cooldown::from_core(c)),
            Err(e) => Err(map_error(py, e, clock::now(py))),
        }
    }

    /// Marks `model`'s quota exhausted for `reset_after` seconds (`None`: until `resume`).
    #[pyo3(signature = (model, reset_after = None))]
    fn quota_exhausted(
        &self,
        py: Python<'_>,
        model: &str,
        reset_after: Option<f64>,
    ) -> PyResult<()> {
        let after = reset_after.map(|secs| duration("reset_after", secs)).transpose()?;
        self.limiter.quota_exhausted(model, after).map_err(|e| map_error(py, e, clock::now(py)))
    }

    /// Learns a limit by hand: every limit of `model` counting `counts` over `window` seconds
    /// (`None`: any window) takes `max` (never above the configured one unless the config has
    /// `feedback_may_raise`).
    #[pyo3(signature = (model, counts, max, window = None))]
    fn learn_limit(
        &self,
        py: Python<'_>,
        model: &str,
        counts: &str,
        max: u64,
        window: Option<f64>,
    ) -> PyResult<Vec<Learned>> {
        let counts = counts_from(counts)?;
        let window = window.map(|secs| duration("window", secs)).transpose()?;
        match self.limiter.learn_limit(model, counts, window, max) {
            Ok(learned) => Ok(learned.into_iter().map(Learned::from_core).collect()),
            Err(e) => Err(map_error(py, e, clock::now(py))),
        }
    }

    /// Drains by hand: every limit of `model` counting `counts` over `window` seconds
    /// (`None`: any window) holds other clients' share so its room is at most `remaining`,
    /// for about `reset_after` seconds; a later call replaces the share but never gives room
    /// back before an earlier report's reset.
    #[pyo3(signature = (model, counts, remaining, reset_after, window = None))]
    fn drain(
        &self,
        py: Python<'_>,
        model: &str,
        counts: &str,
        remaining: u64,
        reset_after: f64,
        window: Option<f64>,
    ) -> PyResult<Vec<Drained>> {
        let counts = counts_from(counts)?;
        let window = window.map(|secs| duration("window", secs)).transpose()?;
        let reset_after = duration("reset_after", reset_after)?;
        match self.limiter.drain(model, counts, window, remaining, reset_after) {
            Ok(drained) => Ok(drained.into_iter().map(Drained::from_core).collect()),
            Err(e) => Err(map_error(py, e, clock::now(py))),
        }
    }

    /// Ends `model`'s cooldown and exhausted quota; waiters re-check at once.
    fn resume(&self, py: Python<'_>, model: &str) -> PyResult<()> {
        self.limiter.resume(model).map_err(|e| map_error(py, e, clock::now(py)))
    }

    /// Usage of every configured model and every model used so far.
    fn stats(&self) -> BTreeMap<String, ModelStats> {
        self.limiter
            .stats()
            .into_iter()
            .map(|(name, s)| {
                let usage = |u: tollgate::Usage| Usage { used: u.used, limit: u.limit };
                (
                    name,
                    ModelStats {
                        requests: usage(s.requests),
                        tokens: usage(s.tokens),
                        active: usage(s.active),
                        limits: s.limits.iter().map(LimitUsage::from_core).collect(),
                        cooldown_until: s.cooldown_until.map(secs_from_instant),
                        quota_exhausted: s.quota_exhausted.is_some(),
                        quota_reset_at: s.quota_exhausted.flatten().map(secs_from_instant),
                    },
                )
            })
            .collect()
    }

    /// The config that `model` runs under, in the Python form.
    fn config(&self, model: &str) -> ConfigArgs {
        config_args(self.limiter.config(model))
    }

    /// Whether `model` was configured explicitly.
    fn is_configured(&self, model: &str) -> bool {
        self.limiter.is_configured(model)
    }

    /// Whether unconfigured names are refused.
    #[getter]
    fn strict(&self) -> bool {
        self.limiter.is_strict()
    }
}

impl ModelLimiterCore {
    /// `UnknownModel` for a name a strict limiter does not know.
    fn check_known(&self, py: Python<'_>, model: &str) -> PyResult<()> {
        if self.limiter.is_strict() && !self.limiter.is_configured(model) {
            return Err(map_error(py, tollgate::Error::UnknownModel, clock::now(py)));
        }
        Ok(())
    }
}

/// An admitted request: holds one parallel slot until settled or released.
#[pyclass(frozen, module = "tollgate._tollgate")]
pub struct Permit {
    permit: Mutex<Option<OwnedModelPermit<PyTimer>>>,
    estimated: u64,
    admitted_at: f64,
}

impl Permit {
    pub(crate) fn new(permit: OwnedModelPermit<PyTimer>) -> Self {
        let estimated = permit.estimated_tokens();
        let admitted_at = secs_from_instant(permit.admitted_at());
        Self { permit: Mutex::new(Some(permit)), estimated, admitted_at }
    }

    fn take(&self) -> PyResult<Option<OwnedModelPermit<PyTimer>>> {
        Ok(self.permit.lock().map_err(|_| poisoned())?.take())
    }

    /// The permit, or the error of one already ended.
    fn take_live(&self) -> PyResult<OwnedModelPermit<PyTimer>> {
        self.take()?
            .ok_or_else(|| PyRuntimeError::new_err("this permit was already settled or released"))
    }
}

#[pymethods]
impl Permit {
    /// Replaces the reserved estimate with the actual tokens and frees the slot. Once only.
    /// Either `actual_tokens` (in all), or `input_tokens` and `output_tokens` apart (a
    /// missing one is 0), which input- and output-token limits need.
    #[pyo3(signature = (actual_tokens = None, *, input_tokens = None, output_tokens = None))]
    fn settle(
        &self,
        actual_tokens: Option<u64>,
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
    ) -> PyResult<()> {
        let apart = input_tokens.is_some() || output_tokens.is_some();
        match (actual_tokens, apart) {
            (Some(_), true) => Err(PyTypeError::new_err(
                "settle takes actual_tokens or input_tokens/output_tokens, not both",
            )),
            (None, false) => Err(PyTypeError::new_err(
                "settle needs actual_tokens, or input_tokens and/or output_tokens",
            )),
            (Some(actual), false) => {
                self.take_live()?.settle(actual);
                Ok(())
            }
            (None, true) => {
                let (input, output) = (input_tokens.unwrap_or(0), output_tokens.unwrap_or(0));
                self.take_live()?.settle_io(input, output);
                Ok(())
            }
        }
    }

    /// The provider answered this request with a 429 (its headers and body): applies it to
    /// the model (a cooldown, an exhausted quota) and ends the permit, its tokens given back
    /// and its slot released *into* the cooldown. The report's `error` is what the request
    /// should fail with when retrying cannot help.
    #[pyo3(signature = (headers, body = None, *, provider = None))]
    fn throttled(
        &self,
        py: Python<'_>,
        headers: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
        provider: Option<&str>,
    ) -> PyResult<FeedbackReport> {
        let (throttled, parsed) = feedback::classify(py, headers, body, provider)?;
        let applied = self.take_live()?.throttled(&throttled);
        Ok(FeedbackReport::from_core(py, applied, parsed, Some(Throttled::from_core(&throttled))))
    }

    /// The provider asked to retry this request after `retry_after` seconds: starts (or
    /// extends) the model's cooldown and ends the permit into it.
    fn rate_limited(&self, retry_after: f64) -> PyResult<Cooldown> {
        let after = duration("retry_after", retry_after)?;
        Ok(Cooldown::from_core(self.take_live()?.rate_limited(after)))
    }

    /// The provider said the quota is used up: every admission of the model fails with
    /// `QuotaExhausted` until `reset_after` seconds from now (`None`: until `resume`). Ends
    /// the permit, its tokens given back.
    #[pyo3(signature = (reset_after = None))]
    fn quota_exhausted(&self, reset_after: Option<f64>) -> PyResult<()> {
        let after = reset_after.map(|secs| duration("reset_after", secs)).transpose()?;
        self.take_live()?.quota_exhausted(after);
        Ok(())
    }

    /// Frees the slot and keeps the estimate charged. Idempotent, and a no-op after `settle`.
    fn release(&self) -> PyResult<()> {
        drop(self.take()?);
        Ok(())
    }

    /// Whether the permit has been settled or released.
    #[getter]
    fn done(&self) -> PyResult<bool> {
        Ok(self.permit.lock().map_err(|_| poisoned())?.is_none())
    }

    /// The tokens reserved at admission.
    #[getter]
    fn estimated_tokens(&self) -> u64 {
        self.estimated
    }

    /// When it was admitted, in `time.monotonic()` seconds.
    #[getter]
    fn admitted_at(&self) -> f64 {
        self.admitted_at
    }

    /// `with permit:` releases it on exit (a no-op if it was settled).
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Releases the permit; exceptions propagate.
    fn __exit__(
        &self,
        _exc_type: Py<PyAny>,
        _exc: Py<PyAny>,
        _traceback: Py<PyAny>,
    ) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("Permit(estimated_tokens={}, admitted_at={})", self.estimated, self.admitted_at)
    }
}

/// `used` of `limit`; `str()` is `"used/limit"`.
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Used now (in the current window, or in flight).
    pub used: u64,
    /// The configured limit.
    pub limit: u64,
}

#[pymethods]
impl Usage {
    #[new]
    fn new(used: u64, limit: u64) -> Self {
        Self { used, limit }
    }

    fn __str__(&self) -> String {
        format!("{}/{}", self.used, self.limit)
    }

    fn __repr__(&self) -> String {
        format!("Usage(used={}, limit={})", self.used, self.limit)
    }
}

/// One model's usage: requests and tokens in the current minute, requests in flight, every
/// rate limit by name, and the pause a provider's 429s started.
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStats {
    /// Requests in the current 60 s window, of `rpm`.
    pub requests: Usage,
    /// Tokens in the current 60 s window, of `tpm`.
    pub tokens: Usage,
    /// Requests in flight, of `max_parallel_requests`.
    pub active: Usage,
    /// Every rate limit in list order: `rpm`, `tpm`, then the config's `limits`.
    pub limits: Vec<LimitUsage>,
    /// The end of the cooldown in force after a 429, in `time.monotonic()` seconds.
    pub cooldown_until: Option<f64>,
    /// Whether the provider's quota is exhausted (admissions fail with `QuotaExhausted`).
    pub quota_exhausted: bool,
    /// The exhausted quota's reset, in `time.monotonic()` seconds, when known.
    pub quota_reset_at: Option<f64>,
}

#[pymethods]
impl ModelStats {
    /// The seed's statistics dictionary: `{"requests": "u/l", "tokens": "u/l", "active": "u/l"}`.
    fn as_dict(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("requests", self.requests.__str__()),
            ("tokens", self.tokens.__str__()),
            ("active", self.active.__str__()),
        ])
    }

    /// The usage of the rate limit called `name`, or `None`.
    fn limit(&self, name: &str) -> Option<LimitUsage> {
        self.limits.iter().find(|l| l.name == name).cloned()
    }

    fn __repr__(&self) -> String {
        let mut paused = String::new();
        if let Some(until) = self.cooldown_until {
            paused.push_str(&format!(", cooldown_until={until:?}"));
        }
        if self.quota_exhausted {
            let reset =
                self.quota_reset_at.map_or_else(|| "None".to_owned(), |at| format!("{at:?}"));
            paused.push_str(&format!(", quota_exhausted=True, quota_reset_at={reset}"));
        }
        format!(
            "ModelStats(requests={}, tokens={}, active={}{paused})",
            self.requests.__str__(),
            self.tokens.__str__(),
            self.active.__str__()
        )
    }
}
