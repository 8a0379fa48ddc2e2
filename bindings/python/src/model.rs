//! The model limiter (RPM, TPM, parallel requests per model) on Python's clock: the core's
//! `ModelRateLimiter`, its permits, and its statistics as typed Python objects.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tollgate::model::OwnedModelPermit;
use tollgate::{ModelRateLimiter, RateLimitConfig};

use crate::clock::{self, PyTimer, secs_from_instant};
use crate::driver::{CoreWait, Done, Waiting};
use crate::errors::{map_error, model_config, poisoned};
use crate::limit::{Limit, LimitUsage};
use crate::rps::duration;

/// One model's config as Python passes it: `(rpm, tpm, max_parallel_requests, limits)`.
type ConfigArgs = (u32, u64, u32, Vec<Limit>);

/// The Python form as the core's config. Fields the core adds later keep their defaults
/// (hence the update, needless today).
#[allow(clippy::needless_update)]
fn config((rpm, tpm, max_parallel_requests, limits): ConfigArgs) -> RateLimitConfig {
    let limits = limits.into_iter().map(|l| l.inner).collect();
    RateLimitConfig { rpm, tpm, max_parallel_requests, limits, ..RateLimitConfig::default() }
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
        let models = models.into_iter().map(|(name, c)| (name, config(c)));
        let limiter = match default {
            Some(d) => ModelRateLimiter::with_timer(models, config(d), PyTimer),
            None => ModelRateLimiter::strict_with_timer(models, PyTimer),
        }
        .map_err(|e| model_config(py, e))?;
        Ok(Self { limiter: Arc::new(limiter) })
    }

    /// Admits now or raises (`RateLimited`, `InsufficientCapacity`, `UnknownModel`).
    fn try_acquire(&self, py: Python<'_>, model: &str, estimated_tokens: u64) -> PyResult<Permit> {
        match self.limiter.clone().try_acquire_owned(model, estimated_tokens) {
            Ok(permit) => Ok(Permit::new(permit)),
            Err(e) => Err(map_error(py, e, clock::now(py))),
        }
    }

    /// A wait for admission; with `max_wait` (seconds) it fails with `MaxWaitExceeded`
    /// rather than wait longer.
    #[pyo3(signature = (model, estimated_tokens, max_wait = None))]
    fn acquire(
        &self,
        model: &str,
        estimated_tokens: u64,
        max_wait: Option<f64>,
    ) -> PyResult<Waiting> {
        let limiter = self.limiter.clone();
        let model = model.to_owned();
        let max_wait = max_wait.map(|secs| duration("max_wait", secs)).transpose()?;
        let wait: CoreWait = Box::pin(async move {
            let admitted = match max_wait {
                None => limiter.acquire_owned(&model, estimated_tokens).await,
                Some(d) => limiter.acquire_within_owned(&model, estimated_tokens, d).await,
            };
            admitted.map(Done::Permit)
        });
        Ok(Waiting::new(wait))
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
                    },
                )
            })
            .collect()
    }

    /// The `(rpm, tpm, max_parallel_requests, limits)` that `model` runs under.
    fn config(&self, model: &str) -> ConfigArgs {
        let c = self.limiter.config(model);
        let limits = c.limits.into_iter().map(|inner| Limit { inner }).collect();
        (c.rpm, c.tpm, c.max_parallel_requests, limits)
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
}

#[pymethods]
impl Permit {
    /// Replaces the reserved estimate with `actual_tokens` and frees the slot. Once only.
    fn settle(&self, actual_tokens: u64) -> PyResult<()> {
        match self.take()? {
            Some(permit) => {
                permit.settle(actual_tokens);
                Ok(())
            }
            None => Err(PyRuntimeError::new_err("this permit was already settled or released")),
        }
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

/// One model's usage: requests and tokens in the current minute, requests in flight, and
/// every rate limit by name.
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStats {
    /// Requests in the current 60 s window, of `rpm`.
    pub requests: Usage,
    /// Tokens in the current 60 s window, of `tpm`.
    pub tokens: Usage,
    /// Requests in flight, of `max_parallel_requests`.
    pub active: Usage,
    /// Every rate limit in list order: `rpm`, `tpm`, then the config's `limits`.
    pub limits: Vec<LimitUsage>,
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
        format!(
            "ModelStats(requests={}, tokens={}, active={})",
            self.requests.__str__(),
            self.tokens.__str__(),
            self.active.__str__()
        )
    }
}
