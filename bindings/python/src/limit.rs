//! [`Limit`]: one rate limit of a model as a Python value (the core's `model::Limit`), and
//! [`LimitUsage`], its usage in a model's statistics.
//!
//! A frozen, hashable Rust class rather than a Python dataclass, so that a limit is checked by
//! the core's own `Limit::validate` when it is made (a bad window fails where it is written,
//! not when a limiter is built) and reaches the core without a second conversion.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tollgate::Rate;
use tollgate::model::{self, Counts, LimitKind};

use crate::errors::invalid_config;
use crate::model::Usage;
use crate::rps::duration;

/// `"requests"`, `"tokens"`, `"input_tokens"` or `"output_tokens"` as the core's [`Counts`].
pub(crate) fn counts_from(name: &str) -> PyResult<Counts> {
    match name {
        "requests" => Ok(Counts::Requests),
        "tokens" => Ok(Counts::Tokens),
        "input_tokens" => Ok(Counts::InputTokens),
        "output_tokens" => Ok(Counts::OutputTokens),
        other => Err(PyValueError::new_err(format!(
            "counts must be \"requests\", \"tokens\", \"input_tokens\" or \"output_tokens\", \
             not {other:?}"
        ))),
    }
}

/// The core's [`Counts`] as the Python string.
pub(crate) fn counts_name(counts: Counts) -> &'static str {
    match counts {
        Counts::Requests => "requests",
        Counts::Tokens => "tokens",
        Counts::InputTokens => "input_tokens",
        Counts::OutputTokens => "output_tokens",
    }
}

/// A window length in seconds, at least one nanosecond once rounded (the core rejects zero).
fn window(secs: f64) -> PyResult<Duration> {
    duration("window", secs)
}

/// Whole seconds and nanoseconds as a `Duration` (`nanos` below 10^9, so it cannot overflow).
fn exact(name: &str, secs: u64, nanos: u32) -> PyResult<Duration> {
    if nanos >= 1_000_000_000 {
        return Err(PyValueError::new_err(format!("{name}: nanoseconds must be below 10^9")));
    }
    Ok(Duration::new(secs, nanos))
}

/// One rate limit of a model: what it counts (`"requests"`, `"tokens"` in all,
/// `"input_tokens"` or `"output_tokens"` apart), the most it allows, and how (a sliding window of any length and slot count, or a token bucket).
#[pyclass(frozen, eq, hash, from_py_object, module = "tollgate._tollgate")]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limit {
    pub(crate) inner: model::Limit,
}

impl Limit {
    /// Checks the limit with the core's rules and wraps it.
    fn checked(py: Python<'_>, inner: model::Limit) -> PyResult<Self> {
        inner.validate().map_err(|e| invalid_config(py, e))?;
        Ok(Self { inner })
    }
}

// The signatures say `slots = 60` literally (a constant would show as `...` in the text
// signature); the core's default is the same, checked by this assertion.
const _: () = assert!(model::Limit::DEFAULT_SLOTS == 60);

#[pymethods]
impl Limit {
    /// At most `max` requests in any `window` seconds, counted in `slots` slots.
    #[staticmethod]
    #[pyo3(signature = (name, max, window, *, slots = 60))]
    fn requests(py: Python<'_>, name: String, max: u64, window: f64, slots: u32) -> PyResult<Self> {
        Self::window_of(py, name, "requests", max, window, slots)
    }

    /// At most `max` tokens in any `window` seconds, counted in `slots` slots.
    #[staticmethod]
    #[pyo3(signature = (name, max, window, *, slots = 60))]
    fn tokens(py: Python<'_>, name: String, max: u64, window: f64, slots: u32) -> PyResult<Self> {
        Self::window_of(py, name, "tokens", max, window, slots)
    }

    /// At most `max` of what `counts` says in any day, in 96 slots of 15 minutes (the
    /// core's `Limit::per_day`: memory independent of `max`).
    #[staticmethod]
    fn per_day(py: Python<'_>, name: String, counts: &str, max: u64) -> PyResult<Self> {
        Self::checked(py, model::Limit::per_day(name, counts_from(counts)?, max))
    }

    /// A sliding window of `max` per `window` seconds of what `counts` says.
    #[staticmethod]
    #[pyo3(name = "window", signature = (name, counts, max, window, *, slots = 60))]
    fn window_of(
        py: Python<'_>,
        name: String,
        counts: &str,
        max: u64,
        window: f64,
        slots: u32,
    ) -> PyResult<Self> {
        let limit = model::Limit::window(name, counts_from(counts)?, max, self::window(window)?)
            .with_slots(slots);
        Self::checked(py, limit)
    }

    /// A GCRA token bucket of what `counts` says: bursts of up to `burst`, refilled at
    /// `rate` per `per` seconds.
    #[staticmethod]
    #[pyo3(signature = (name, counts, burst, rate, per = 1.0))]
    fn bucket(
        py: Python<'_>,
        name: String,
        counts: &str,
        burst: u64,
        rate: u64,
        per: f64,
    ) -> PyResult<Self> {
        let rate = Rate::try_new(rate, duration("per", per)?).map_err(|e| invalid_config(py, e))?;
        Self::checked(py, model::Limit::bucket(name, counts_from(counts)?, burst, rate))
    }

    /// This window with `slots` slots instead; a bucket is returned unchanged.
    fn with_slots(&self, py: Python<'_>, slots: u32) -> PyResult<Self> {
        Self::checked(py, self.inner.clone().with_slots(slots))
    }

    /// The name in statistics.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// `"requests"`, `"tokens"`, `"input_tokens"` or `"output_tokens"`.
    #[getter]
    fn counts(&self) -> &'static str {
        counts_name(self.inner.counts)
    }

    /// The most per window, or the burst of a bucket.
    #[getter]
    fn max(&self) -> u64 {
        self.inner.max
    }

    /// `"window"` or `"bucket"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner.kind {
            LimitKind::Window { .. } => "window",
            LimitKind::Bucket { .. } => "bucket",
        }
    }

    /// The window's length in seconds (`None` for a bucket). Not called `window`: that is
    /// the constructor.
    #[getter]
    fn window_length(&self) -> Option<f64> {
        match self.inner.kind {
            LimitKind::Window { window, .. } => Some(window.as_secs_f64()),
            LimitKind::Bucket { .. } => None,
        }
    }

    /// The window's slot count (`None` for a bucket).
    #[getter]
    fn slots(&self) -> Option<u32> {
        match self.inner.kind {
            LimitKind::Window { slots, .. } => Some(slots),
            LimitKind::Bucket { .. } => None,
        }
    }

    /// A bucket's refill as `(count, per_seconds)` (`None` for a window).
    #[getter]
    fn rate(&self) -> Option<(u64, f64)> {
        match self.inner.kind {
            LimitKind::Bucket { rate } => Some((rate.count(), rate.period().as_secs_f64())),
            LimitKind::Window { .. } => None,
        }
    }

    /// Pickling and `copy.deepcopy` rebuild the limit through its constructor.
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let l = &slf.get().inner;
        let counts = counts_name(l.counts);
        let class = slf.get_type();
        match l.kind {
            LimitKind::Window { window, slots } => Ok((
                class.getattr(intern!(py, "_window_exact"))?,
                (l.name.as_ref(), counts, l.max, window.as_secs(), window.subsec_nanos(), slots)
                    .into_pyobject(py)?,
            )),
            LimitKind::Bucket { rate } => Ok((
                class.getattr(intern!(py, "_bucket_exact"))?,
                (
                    l.name.as_ref(),
                    counts,
                    l.max,
                    rate.count(),
                    rate.period().as_secs(),
                    rate.period().subsec_nanos(),
                )
                    .into_pyobject(py)?,
            )),
        }
    }

    /// A window from whole seconds and nanoseconds (what `__reduce__` saves: exact, where a
    /// float of seconds could round).
    #[staticmethod]
    fn _window_exact(
        py: Python<'_>,
        name: String,
        counts: &str,
        max: u64,
        secs: u64,
        nanos: u32,
        slots: u32,
    ) -> PyResult<Self> {
        let window = exact("window", secs, nanos)?;
        Self::checked(
            py,
            model::Limit::window(name, counts_from(counts)?, max, window).with_slots(slots),
        )
    }

    /// A bucket from its rate's period in whole seconds and nanoseconds (for `__reduce__`).
    #[staticmethod]
    fn _bucket_exact(
        py: Python<'_>,
        name: String,
        counts: &str,
        burst: u64,
        count: u64,
        secs: u64,
        nanos: u32,
    ) -> PyResult<Self> {
        let rate =
            Rate::try_new(count, exact("per", secs, nanos)?).map_err(|e| invalid_config(py, e))?;
        Self::checked(py, model::Limit::bucket(name, counts_from(counts)?, burst, rate))
    }

    fn __repr__(&self) -> String {
        let l = &self.inner;
        let counts = counts_name(l.counts);
        match l.kind {
            LimitKind::Window { window, slots } => format!(
                "Limit.window({:?}, {counts:?}, {}, {}, slots={slots})",
                l.name,
                l.max,
                window.as_secs_f64()
            ),
            LimitKind::Bucket { rate } => format!(
                "Limit.bucket({:?}, {counts:?}, {}, {}, per={})",
                l.name,
                l.max,
                rate.count(),
                rate.period().as_secs_f64()
            ),
        }
    }
}

/// The usage of one rate limit of a model, named as in its config.
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUsage {
    /// The limit's name (`"rpm"`, `"tpm"`, or a `Limit`'s name).
    pub name: String,
    /// `"requests"`, `"tokens"`, `"input_tokens"` or `"output_tokens"`.
    pub counts: &'static str,
    /// Used in the window ending now (a bucket: its burst minus what it could admit now), of
    /// the maximum in force (`learned` if set, else `configured`).
    pub usage: Usage,
    /// The maximum as configured.
    pub configured: u64,
    /// The maximum learned from the provider's feedback, while one is in force (lower than
    /// `configured`, or higher only when the config has `feedback_may_raise`).
    pub learned: Option<u64>,
}

impl LimitUsage {
    /// From the core's figures.
    pub(crate) fn from_core(u: &model::LimitUsage) -> Self {
        Self {
            name: u.name.to_string(),
            counts: counts_name(u.counts),
            usage: Usage { used: u.usage.used, limit: u.usage.limit },
            configured: u.configured,
            learned: u.learned,
        }
    }
}

#[pymethods]
impl LimitUsage {
    fn __repr__(&self) -> String {
        let learned = match self.learned {
            Some(max) => format!(", learned={max}"),
            None => String::new(),
        };
        format!(
            "LimitUsage(name={:?}, counts={:?}, usage={}/{}, configured={}{learned})",
            self.name, self.counts, self.usage.used, self.usage.limit, self.configured
        )
    }
}
