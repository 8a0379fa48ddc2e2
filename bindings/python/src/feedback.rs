//! Provider feedback in Python: a response's headers (a mapping, a multi-dict or name/value
//! pairs, `str` or `bytes`) and a 429's body handed to the core's pure parsers, and what they
//! and the limiter report, as typed Python objects.
//!
//! The parsing and every decision are the core's (`tollgate::provider`, the model limiter's
//! `observe` / `observe_429`); this file converts values and nothing else.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};
use tollgate::model::{Cooldown as CoreCooldown, FeedbackReport as CoreReport};
use tollgate::provider::{self, IgnoreReason, Provider, Quota};
use tollgate::{Error, Instant};

use crate::clock::{self, secs_from_instant};
use crate::errors::map_error;

/// A header name or value as bytes: `bytes`, `bytearray`, or `str` (UTF-8; a lone surrogate
/// is kept by `surrogatepass`, so it reaches the parser as the malformed value it is).
fn bytes_of(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if let Ok(s) = value.cast::<PyString>() {
        if let Ok(text) = s.to_str() {
            return Ok(text.as_bytes().to_vec());
        }
        let py = value.py();
        let encoded = s.call_method1(intern!(py, "encode"), ("utf-8", "surrogatepass"))?;
        return Ok(encoded.cast::<PyBytes>()?.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "header names and values must be str or bytes, not {}",
        value.get_type().name()?
    )))
}

/// A response's headers as name/value byte pairs. Takes what HTTP clients hand out: an
/// object with `multi_items()` (httpx, every repeated header apart), else one with `items()`
/// (a `dict`, `requests`' and aiohttp's headers, `http.client.HTTPMessage`), else an iterable
/// of `(name, value)` pairs.
pub(crate) fn header_pairs(headers: &Bound<'_, PyAny>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let py = headers.py();
    // A plain dict first: read in place, without the failed attribute look-ups below
    // (each one raises and discards an AttributeError).
    if let Ok(dict) = headers.cast_exact::<PyDict>() {
        let mut pairs = Vec::with_capacity(dict.len());
        for (name, value) in dict.iter() {
            pairs.push((bytes_of(&name)?, bytes_of(&value)?));
        }
        return Ok(pairs);
    }
    let items = if headers.is_instance_of::<PyList>() || headers.is_instance_of::<PyTuple>() {
        headers.clone() // pairs already: no attribute look-ups
    } else if headers.hasattr(intern!(py, "multi_items"))? {
        headers.call_method0(intern!(py, "multi_items"))?
    } else if headers.hasattr(intern!(py, "items"))? {
        headers.call_method0(intern!(py, "items"))?
    } else {
        headers.clone()
    };
    let mut pairs = Vec::new();
    for item in items.try_iter()? {
        let item = item?;
        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract().map_err(|_| {
            PyTypeError::new_err("headers must be a mapping or an iterable of (name, value) pairs")
        })?;
        pairs.push((bytes_of(&name)?, bytes_of(&value)?));
    }
    Ok(pairs)
}

/// A 429's body as bytes: `bytes`, `str`, `None` (empty), or parsed JSON (a `dict` or
/// `list`, dumped back with `json.dumps`: the classifier searches text).
pub(crate) fn body_bytes(body: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<u8>> {
    let Some(body) = body else { return Ok(Vec::new()) };
    if body.is_none() {
        return Ok(Vec::new());
    }
    if body.is_instance_of::<PyBytes>()
        || body.is_instance_of::<PyByteArray>()
        || body.is_instance_of::<PyString>()
    {
        return bytes_of(body);
    }
    let py = body.py();
    let dumped = py.import(intern!(py, "json"))?.call_method1(intern!(py, "dumps"), (body,))?;
    bytes_of(&dumped)
}

/// The provider names Python uses.
const PROVIDERS: [(&str, Provider); 5] = [
    ("openai", Provider::OpenAi),
    ("azure", Provider::Azure),
    ("anthropic", Provider::Anthropic),
    ("groq", Provider::Groq),
    ("mistral", Provider::Mistral),
];

fn provider_name(provider: Provider) -> &'static str {
    PROVIDERS.iter().find(|(_, p)| *p == provider).map_or("unknown", |(name, _)| name)
}

/// The provider named (case-insensitive), or, for `None`, the one the header names point to
/// (`None` when they point to none).
fn provider_of(name: Option<&str>, pairs: &[(Vec<u8>, Vec<u8>)]) -> PyResult<Option<Provider>> {
    match name {
        Some(name) => PROVIDERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, p)| Some(*p))
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "provider must be one of \"openai\", \"azure\", \"anthropic\", \"groq\", \
                     \"mistral\" (or None to detect it), not {name:?}"
                ))
            }),
        None => Ok(Provider::detect(pairs.iter().map(|(n, _)| n))),
    }
}

/// Parses `headers` as `provider` sends them (detected when `None`), with `time.time()` as
/// the wall clock for absolute instants. With no provider detected the headers hold no
/// rate-limit names, so any provider's parser reads the same (only `retry-after[-ms]`); the
/// report then says `provider=None`.
pub(crate) fn parse(
    py: Python<'_>,
    headers: &Bound<'_, PyAny>,
    provider: Option<&str>,
) -> PyResult<(provider::HeaderReport, HeaderReport)> {
    let pairs = header_pairs(headers)?;
    let detected = provider_of(provider, &pairs)?;
    let report = provider::parse_headers(
        detected.unwrap_or(Provider::OpenAi),
        pairs.iter().map(|(n, v)| (n, v)),
        clock::wall_now(py),
    );
    let python = HeaderReport::from_core(&report, detected);
    Ok((report, python))
}

/// An optional value as Python writes it (`None`, or the value's `Debug`: `60.0`, `"x"`).
fn opt<T: core::fmt::Debug>(value: Option<T>) -> String {
    value.map_or_else(|| "None".to_owned(), |v| format!("{v:?}"))
}

/// A flag as Python writes it.
fn flag(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

fn secs(d: core::time::Duration) -> f64 {
    d.as_secs_f64()
}

fn quota_name(quota: Quota) -> &'static str {
    match quota {
        Quota::Requests => "requests",
        Quota::Tokens => "tokens",
        Quota::InputTokens => "input_tokens",
        Quota::OutputTokens => "output_tokens",
    }
}

/// One limit as a response reported it; a field the response did not give (or gave in a form
/// that cannot be trusted, see `HeaderReport.ignored`) is `None`.
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `"requests"`, `"tokens"` (input and output together), `"input_tokens"` or
    /// `"output_tokens"`.
    pub quota: &'static str,
    /// The provider's window in seconds, as its documentation says (60, or a day for Groq's
    /// requests); `None`: not known.
    pub window: Option<f64>,
    /// The provider's limit for the window.
    pub limit: Option<u64>,
    /// What the provider says is left.
    pub remaining: Option<u64>,
    /// How far `remaining` may be from the true figure (500 for Anthropic's rounded tokens).
    pub remaining_tolerance: u64,
    /// Seconds until the provider's count resets (or next refills).
    pub reset_after: Option<f64>,
}

#[pymethods]
impl Observed {
    /// The least the provider can have left: `remaining - remaining_tolerance`, at least 0.
    #[getter]
    fn remaining_at_least(&self) -> Option<u64> {
        self.remaining.map(|r| r.saturating_sub(self.remaining_tolerance))
    }

    /// What the provider counts as used: `limit - remaining`, when both are known.
    #[getter]
    fn used(&self) -> Option<u64> {
        Some(self.limit?.saturating_sub(self.remaining?))
    }

    fn __repr__(&self) -> String {
        format!(
            "Observed(quota={:?}, window={}, limit={}, remaining={}, \
             remaining_tolerance={}, reset_after={})",
            self.quota,
            opt(self.window),
            opt(self.limit),
            opt(self.remaining),
            self.remaining_tolerance,
            opt(self.reset_after)
        )
    }
}

/// A header left out of a report, and why.
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The header's name, in lower case.
    pub name: String,
    /// `"malformed"`, `"unknown"` (Azure's `-1`), `"conflicting"` (repeated with another
    /// value), `"contradicts"` (a remaining above its limit), `"needs_clock"` or
    /// `"unrecognized"` (a rate-limit name the provider is not known to send).
    pub reason: &'static str,
}

#[pymethods]
impl Ignored {
    fn __repr__(&self) -> String {
        format!("Ignored(name={:?}, reason={:?})", self.name, self.reason)
    }
}

fn reason_name(reason: IgnoreReason) -> &'static str {
    match reason {
        IgnoreReason::Malformed => "malformed",
        IgnoreReason::Unknown => "unknown",
        IgnoreReason::Conflicting => "conflicting",
        IgnoreReason::Contradicts => "contradicts",
        IgnoreReason::NeedsClock => "needs_clock",
        IgnoreReason::Unrecognized => "unrecognized",
        _ => "other",
    }
}

/// What one response's headers say about the provider's limits (`tollgate.parse_headers`).
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderReport {
    /// The provider whose format was read (`None`: none was named or detected).
    pub provider: Option<&'static str>,
    /// One entry per quota reported, in the order requests, tokens, input, output tokens.
    pub observed: Vec<Observed>,
    /// Seconds the provider asks to wait (`retry-after-ms`, else `retry-after`).
    pub retry_after: Option<f64>,
    /// The headers left out, in the order they came.
    pub ignored: Vec<Ignored>,
}

impl HeaderReport {
    fn from_core(report: &provider::HeaderReport, provider: Option<Provider>) -> Self {
        let observed = report
            .observed
            .iter()
            .map(|o| Observed {
                quota: quota_name(o.quota),
                window: o.window.map(secs),
                limit: o.limit,
                remaining: o.remaining,
                remaining_tolerance: o.remaining_tolerance,
                reset_after: o.reset_after.map(secs),
            })
            .collect();
        let ignored = report
            .ignored
            .iter()
            .map(|i| Ignored { name: i.name.clone(), reason: reason_name(i.reason) })
            .collect();
        Self {
            provider: provider.map(provider_name),
            observed,
            retry_after: report.retry_after.map(secs),
            ignored,
        }
    }
}

#[pymethods]
impl HeaderReport {
    /// The observation of `quota` (`"requests"`, `"tokens"`, `"input_tokens"`,
    /// `"output_tokens"`), or `None`.
    fn get(&self, quota: &str) -> Option<Observed> {
        self.observed.iter().find(|o| o.quota == quota).cloned()
    }

    fn __repr__(&self) -> String {
        format!(
            "HeaderReport(provider={}, observed=[{}], retry_after={}, ignored=[{}])",
            opt(self.provider),
            self.observed.iter().map(|o| o.quota).collect::<Vec<_>>().join(", "),
            opt(self.retry_after),
            self.ignored.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
        )
    }
}

/// What a 429 means (`tollgate.classify_429`): `kind` is `"retry_later"` (wait
/// `retry_after` seconds when known), `"never_fits"` (the request is larger than the limit:
/// `requested` and `limit` when the provider said) or `"quota_exhausted"` (comes back after
/// `reset_after` seconds when known).
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, PartialEq)]
pub struct Throttled {
    /// `"retry_later"`, `"never_fits"` or `"quota_exhausted"`.
    pub kind: &'static str,
    /// A retry later's delay in seconds, when known.
    pub retry_after: Option<f64>,
    /// A request too large: the tokens the provider counted for it.
    pub requested: Option<u64>,
    /// A request too large: the limit it was measured against.
    pub limit: Option<u64>,
    /// An exhausted quota: seconds until it comes back, when known.
    pub reset_after: Option<f64>,
}

impl Throttled {
    pub(crate) fn from_core(t: &provider::Throttled) -> Self {
        let none =
            Self { kind: "", retry_after: None, requested: None, limit: None, reset_after: None };
        match *t {
            provider::Throttled::RetryLater { after } => {
                Self { kind: "retry_later", retry_after: after.map(secs), ..none }
            }
            provider::Throttled::NeverFits { requested, limit } => {
                Self { kind: "never_fits", requested, limit, ..none }
            }
            provider::Throttled::QuotaExhausted { reset_after } => {
                Self { kind: "quota_exhausted", reset_after: reset_after.map(secs), ..none }
            }
        }
    }
}

#[pymethods]
impl Throttled {
    fn __repr__(&self) -> String {
        match self.kind {
            "retry_later" => {
                format!("Throttled(kind=\"retry_later\", retry_after={})", opt(self.retry_after))
            }
            "never_fits" => format!(
                "Throttled(kind=\"never_fits\", requested={}, limit={})",
                opt(self.requested),
                opt(self.limit)
            ),
            _ => format!("Throttled(kind={:?}, reset_after={})", self.kind, opt(self.reset_after)),
        }
    }
}

/// Classifies a 429 from its headers and body (the core's `classify_429`).
pub(crate) fn classify(
    py: Python<'_>,
    headers: &Bound<'_, PyAny>,
    body: Option<&Bound<'_, PyAny>>,
    provider: Option<&str>,
) -> PyResult<(provider::Throttled, HeaderReport)> {
    let (report, python) = parse(py, headers, provider)?;
    let body = body_bytes(body)?;
    Ok((provider::classify_429(&report, &body), python))
}

/// A model's admissions paused after a 429, in `time.monotonic()` seconds.
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cooldown {
    /// When this report's pause starts (never before the model's latest admission).
    pub start: f64,
    /// The end of the cooldown in force: no request of the model (or of its shared quota) is
    /// admitted before it.
    pub until: f64,
    /// Whether this report moved the end later (`False`: an earlier 429 of the same burst
    /// already covered it).
    pub extended: bool,
}

impl Cooldown {
    pub(crate) fn from_core(c: CoreCooldown) -> Self {
        Self {
            start: secs_from_instant(c.from),
            until: secs_from_instant(c.until),
            extended: c.extended,
        }
    }
}

#[pymethods]
impl Cooldown {
    fn __repr__(&self) -> String {
        format!(
            "Cooldown(start={:?}, until={:?}, extended={})",
            self.start,
            self.until,
            flag(self.extended)
        )
    }
}

/// A limit whose maximum the provider's feedback changed.
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The limit's name.
    pub limit: String,
    /// The maximum before.
    pub old_max: u64,
    /// The maximum now.
    pub new_max: u64,
}

impl Learned {
    pub(crate) fn from_core(l: tollgate::model::Learned) -> Self {
        Self { limit: l.limit.into_owned(), old_max: l.from, new_max: l.to }
    }
}

#[pymethods]
impl Learned {
    fn __repr__(&self) -> String {
        format!(
            "Learned(limit={:?}, old_max={}, new_max={})",
            self.limit, self.old_max, self.new_max
        )
    }
}

/// A limit holding other clients' share, so that its local room is no more than the
/// provider's remaining.
#[pyclass(frozen, get_all, eq, module = "tollgate._tollgate")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// The limit's name.
    pub limit: String,
    /// What it holds for the other clients on the key.
    pub charged: u64,
}

impl Drained {
    pub(crate) fn from_core(d: tollgate::model::Drained) -> Self {
        Self { limit: d.limit.into_owned(), charged: d.charged }
    }
}

#[pymethods]
impl Drained {
    fn __repr__(&self) -> String {
        format!("Drained(limit={:?}, charged={})", self.limit, self.charged)
    }
}

/// What one piece of provider feedback changed in a model's limits (`observe`,
/// `observe_429`, `Permit.throttled`).
#[pyclass(frozen, get_all, module = "tollgate._tollgate")]
pub struct FeedbackReport {
    /// The parsed headers, with what was ignored and why.
    pub headers: HeaderReport,
    /// For a 429: how it was classified.
    pub throttled: Option<Throttled>,
    /// Limits whose maximum moved to the provider's (lower only, unless the config has
    /// `feedback_may_raise`).
    pub learned: Vec<Learned>,
    /// Limits charged down to the provider's remaining.
    pub drained: Vec<Drained>,
    /// Quotas reported that no local limit counts over the same window (nothing applied:
    /// add a matching `Limit` to use them).
    pub unmatched: Vec<&'static str>,
    /// The cooldown in force after a "retry later" 429.
    pub cooldown: Option<Cooldown>,
    /// Whether a 429 said the quota is exhausted.
    pub quota_exhausted: bool,
    /// The exhausted quota's reset, in `time.monotonic()` seconds, when known.
    pub quota_reset_at: Option<f64>,
    /// What the request that got the 429 should fail with when retrying cannot help (an
    /// `InsufficientCapacity` or a `QuotaExhausted`, ready to `raise`); `None` otherwise.
    pub error: Option<Py<PyAny>>,
}

impl FeedbackReport {
    pub(crate) fn from_core(
        py: Python<'_>,
        report: CoreReport,
        headers: HeaderReport,
        throttled: Option<Throttled>,
    ) -> Self {
        Self {
            headers,
            throttled,
            learned: report.learned.into_iter().map(Learned::from_core).collect(),
            drained: report.drained.into_iter().map(Drained::from_core).collect(),
            unmatched: report.unmatched.into_iter().map(quota_name).collect(),
            cooldown: report.cooldown.map(Cooldown::from_core),
            quota_exhausted: report.quota_exhausted.is_some(),
            quota_reset_at: report.quota_exhausted.flatten().map(secs_from_instant),
            // The clock is read only for an error (its `retry_after`), not on every response.
            error: report.error.map(|e: Error| exception(py, e, clock::now(py))),
        }
    }
}

/// The exception `err` maps to, as a value to keep (not raised).
fn exception(py: Python<'_>, err: Error, now: Instant) -> Py<PyAny> {
    map_error(py, err, now).into_value(py).into_any()
}

#[pymethods]
impl FeedbackReport {
    /// Whether the feedback changed anything: a limit learned or drained, a cooldown, an
    /// exhausted quota.
    #[getter]
    fn changed(&self) -> bool {
        !self.learned.is_empty()
            || !self.drained.is_empty()
            || self.cooldown.is_some()
            || self.quota_exhausted
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let error = match &self.error {
            Some(e) => e.bind(py).repr()?.to_string(),
            None => "None".to_owned(),
        };
        Ok(format!(
            "FeedbackReport(learned=[{}], drained=[{}], unmatched={:?}, cooldown_until={}, \
             quota_exhausted={}, error={})",
            self.learned.iter().map(Learned::__repr__).collect::<Vec<_>>().join(", "),
            self.drained.iter().map(Drained::__repr__).collect::<Vec<_>>().join(", "),
            self.unmatched,
            opt(self.cooldown.map(|c| c.until)),
            flag(self.quota_exhausted),
            error,
        ))
    }
}

/// `tollgate.parse_headers`: one response's headers as the provider reports its limits.
#[pyfunction]
#[pyo3(signature = (headers, provider = None))]
pub(crate) fn parse_headers(
    py: Python<'_>,
    headers: &Bound<'_, PyAny>,
    provider: Option<&str>,
) -> PyResult<HeaderReport> {
    Ok(parse(py, headers, provider)?.1)
}

/// `tollgate.classify_429`: what a 429 response means.
#[pyfunction]
#[pyo3(signature = (headers, body = None, provider = None))]
pub(crate) fn classify_429(
    py: Python<'_>,
    headers: &Bound<'_, PyAny>,
    body: Option<&Bound<'_, PyAny>>,
    provider: Option<&str>,
) -> PyResult<Throttled> {
    Ok(Throttled::from_core(&classify(py, headers, body, provider)?.0))
}
