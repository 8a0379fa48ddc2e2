//! Core errors as Python exceptions. The exception classes are defined in Python
//! (`tollgate/errors.py`) because they subclass two built-ins at once (`InsufficientCapacity`
//! is both a `TollgateError` and a `ValueError`); this file only builds them.
//!
//! Every use of the core's [`Error`] type is in [`map_error`], so a change of its shape is one
//! edit here.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tollgate::model::ModelConfigError;
use tollgate::{Error, Instant, InvalidConfig};

use crate::clock::{secs_from_instant, secs_until};

/// Builds `tollgate.errors.<name>(*args)`; a failure to import it becomes a `RuntimeError`.
fn build<'py>(py: Python<'py>, name: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyErr {
    let made = py
        .import("tollgate.errors")
        .and_then(|module| module.getattr(name))
        .and_then(|class| class.call1(args));
    match made {
        Ok(exception) => PyErr::from_value(exception),
        Err(err) => err,
    }
}

/// The Python exception for a core refusal. `now` is the clock reading the refusal is
/// measured from (for `retry_after`).
pub(crate) fn map_error(py: Python<'_>, err: Error, now: Instant) -> PyErr {
    // Before `ready_at`, which an exhausted quota with a known reset also has: it is not a
    // "retry later", and a retry loop catching `RateLimited` must not catch it.
    if let Error::QuotaExhausted { reset_at } = err {
        let Some(at) = reset_at else {
            let message = "the provider's quota is exhausted; its reset is unknown";
            return build(py, "QuotaExhausted", (message, py.None(), py.None()));
        };
        let after = secs_until(at, now);
        let message = format!("the provider's quota is exhausted; it resets in {after:.3} s");
        return build(py, "QuotaExhausted", (message, secs_from_instant(at), after));
    }
    let message = err.to_string();
    if let Some(ready_at) = err.ready_at() {
        let at = secs_from_instant(ready_at);
        let after = secs_until(ready_at, now);
        let name = if matches!(err, Error::MaxWaitExceeded { .. }) {
            "MaxWaitExceeded"
        } else {
            "RateLimited"
        };
        return build(py, name, (message, at, after));
    }
    match err {
        Error::InsufficientCapacity { requested, capacity } => {
            build(py, "InsufficientCapacity", (message, requested, capacity))
        }
        Error::InvalidConfig(e) => invalid_config(py, e),
        Error::UnknownModel => build(py, "UnknownModel", (message,)),
        _ => PyRuntimeError::new_err(message),
    }
}

/// `tollgate.errors.InvalidConfig` for a rejected value.
pub(crate) fn invalid_config(py: Python<'_>, e: InvalidConfig) -> PyErr {
    build(py, "InvalidConfig", (e.to_string(), e.field))
}

/// `tollgate.errors.InvalidConfig` for a rejected model config, naming the field, the index
/// of the entry of `limits` at fault (if any) and the model (`None`: the default config).
pub(crate) fn model_config(py: Python<'_>, e: ModelConfigError) -> PyErr {
    let message = e.to_string();
    build(py, "InvalidConfig", (message, e.error.field, e.limit, e.model))
}

/// A `ValueError` for arguments rejected before they reach the core.
pub(crate) fn bad_argument(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// A `RuntimeError` for a lock poisoned by a panic elsewhere (never expected).
pub(crate) fn poisoned() -> PyErr {
    PyRuntimeError::new_err("tollgate: internal lock poisoned")
}
