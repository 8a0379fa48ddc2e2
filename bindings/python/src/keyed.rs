//! [`KeyedLimiterCore`]: the core's `KeyedRateLimiter` (one GCRA bucket per key) on Python's
//! clock, behind the `tollgate` package's keyed limiters, blocking and asyncio; and [`Key`],
//! the Python values it accepts as keys.
//!
//! Keys are converted to a Rust value ([`Key`]) rather than kept as Python objects: the core
//! hashes and compares keys under its shard locks, and calling Python's `__hash__` / `__eq__`
//! there would run arbitrary Python code inside a lock (a deadlock with the GIL, and a user
//! class could answer differently each time). The accepted types are the ones whose Python
//! equality the conversion keeps exactly: `str`, `bytes`, `int` (and `bool`, which equals
//! `0`/`1` in Python too), `None` and tuples of those.

use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};
use tollgate::keyed::KeyedRateLimiter;
use tollgate::{Clock, Error, Rate, Timer};

use crate::clock::{self, PyTimer, secs_from_instant};
use crate::driver::{CoreWait, Done, Waiting};
use crate::errors::{invalid_config, map_error};
use crate::rps::duration;

/// How deeply tuples may nest in a key (a bound on the conversion's recursion).
const MAX_DEPTH: usize = 32;

/// A key of a keyed limiter, as a Rust value with Python's equality.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// `None`.
    None,
    /// An `int` (or `bool`) that fits 128 bits.
    Int(i128),
    /// A larger `int`, by its decimal digits (canonical, so equality is kept).
    BigInt(String),
    /// A `str`.
    Str(String),
    /// A `str` with lone surrogates, by its `surrogatepass` UTF-8 bytes.
    Surrogates(Vec<u8>),
    /// A `bytes`.
    Bytes(Vec<u8>),
    /// A tuple of keys.
    Tuple(Vec<Key>),
}

impl Key {
    fn from_py(value: &Bound<'_, PyAny>, depth: usize) -> PyResult<Self> {
        let py = value.py();
        if value.is_none() {
            return Ok(Key::None);
        }
        if let Ok(s) = value.cast::<PyString>() {
            return Ok(match s.to_str() {
                Ok(text) => Key::Str(text.to_owned()),
                // Lone surrogates (valid in a Python str, not in UTF-8): their
                // "surrogatepass" encoding is one-to-one, so equality is still kept.
                Err(_) => Key::Surrogates(
                    s.call_method1(intern!(py, "encode"), ("utf-8", "surrogatepass"))?
                        .cast_into::<PyBytes>()?
                        .as_bytes()
                        .to_vec(),
                ),
            });
        }
        if let Ok(b) = value.cast::<PyBytes>() {
            return Ok(Key::Bytes(b.as_bytes().to_vec()));
        }
        // `bool` is an `int` subclass, and `True == 1` in Python: one key, as in a dict.
        if value.is_instance_of::<PyInt>() {
            return Ok(match value.extract::<i128>() {
                Ok(i) => Key::Int(i),
                // `int`'s own digits, not the value's `__str__` (a subclass may override it).
                Err(_) => {
                    let digits =
                        py.get_type::<PyInt>().call_method1(intern!(py, "__repr__"), (value,))?;
                    Key::BigInt(digits.cast_into::<PyString>()?.to_str()?.to_owned())
                }
            });
        }
        if let Ok(t) = value.cast::<PyTuple>() {
            if depth >= MAX_DEPTH {
                return Err(PyTypeError::new_err("key tuples may nest at most 32 deep"));
            }
            return t
                .iter()
                .map(|item| Key::from_py(&item, depth + 1))
                .collect::<PyResult<_>>()
                .map(Key::Tuple);
        }
        Err(PyTypeError::new_err(format!(
            "a key must be str, bytes, int, None or a tuple of those, not {}",
            value.get_type().name()?
        )))
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Key {
    type Error = PyErr;

    fn extract(value: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Key::from_py(&value, 0)
    }
}

/// The core's keyed limiter on Python's clock.
type Keyed = KeyedRateLimiter<Key, PyTimer>;

/// Waits for `n` tokens of `key`, at most until `deadline` if one is given. A new key refused
/// by the key cap (its shard is full of keys that have not refilled) waits until the shard
/// could take it, and asks again: the cap refuses newcomers, it does not fail a waiter.
async fn wait_for(
    limiter: Arc<Keyed>,
    key: Key,
    n: u64,
    max_wait: Option<std::time::Duration>,
) -> Result<(), Error> {
    // Measured from the first poll, as the core's bounded waits are.
    let deadline = max_wait.map(|d| PyTimer.now().saturating_add(d));
    loop {
        let outcome = match deadline {
            None => limiter.clone().acquire_n_owned(key.clone(), n).await,
            Some(at) => limiter.clone().acquire_n_before_owned(key.clone(), n, at).await,
        };
        match outcome {
            Err(Error::RateLimited(refusal)) => {
                let ready_at = refusal.ready_at();
                if deadline.is_some_and(|at| ready_at > at) {
                    return Err(Error::MaxWaitExceeded { ready_at });
                }
                PyTimer.sleep_until(ready_at).await;
            }
            other => return other,
        }
    }
}

/// One GCRA bucket per key: `count` tokens per `period` seconds each, up to `burst` at once.
#[pyclass(frozen, module = "tollgate._tollgate")]
pub struct KeyedLimiterCore {
    limiter: Arc<Keyed>,
    shards: usize,
    max_keys: Option<usize>,
}

#[pymethods]
impl KeyedLimiterCore {
    /// `count` per `period` seconds per key; `burst` defaults to the events in one second, at
    /// least 1. `shards` (default 16) is rounded up to a power of two; `max_keys` caps the
    /// keys held.
    #[new]
    #[pyo3(signature = (count, period = 1.0, burst = None, shards = None, max_keys = None))]
    fn new(
        py: Python<'_>,
        count: u64,
        period: f64,
        burst: Option<u64>,
        shards: Option<usize>,
        max_keys: Option<usize>,
    ) -> PyResult<Self> {
        let rate =
            Rate::try_new(count, duration("period", period)?).map_err(|e| invalid_config(py, e))?;
        let burst = burst.unwrap_or_else(|| rate.default_burst());
        let mut builder = KeyedRateLimiter::builder(rate, burst);
        if let Some(shards) = shards {
            builder = builder.shards(shards);
        }
        if let Some(max) = max_keys {
            builder = builder.max_keys(max);
        }
        let limiter = builder.build_with_timer(PyTimer).map_err(|e| invalid_config(py, e))?;
        let shards = shards.map_or(16, |s| s.clamp(1, 1 << 16).next_power_of_two());
        Ok(Self { limiter: Arc::new(limiter), shards, max_keys })
    }

    /// Takes `n` tokens of `key` now or raises (`RateLimited`, `InsufficientCapacity`);
    /// never waits.
    #[pyo3(signature = (key, n = 1))]
    fn try_acquire(&self, py: Python<'_>, key: Key, n: u64) -> PyResult<()> {
        self.limiter.try_acquire_n(&key, n).map_err(|e| map_error(py, e, clock::now(py)))
    }

    /// Takes `n` tokens of `key` now if it can (returning `None`), or returns the wait for
    /// them; with `max_wait` (seconds) the wait fails with `MaxWaitExceeded` rather than wait
    /// longer. `InsufficientCapacity` at once if `n > burst`.
    #[pyo3(signature = (key, n = 1, max_wait = None))]
    fn acquire(
        &self,
        py: Python<'_>,
        key: Key,
        n: u64,
        max_wait: Option<f64>,
    ) -> PyResult<Option<Waiting>> {
        let max_wait = max_wait.map(|secs| duration("max_wait", secs)).transpose()?;
        // The fast path, without an exception object: most acquires find room.
        match self.limiter.try_acquire_n(&key, n) {
            Ok(()) => return Ok(None),
            Err(Error::RateLimited(_)) => {}
            Err(e) => return Err(map_error(py, e, clock::now(py))),
        }
        let limiter = self.limiter.clone();
        let wait: CoreWait =
            Box::pin(
                async move { wait_for(limiter, key, n, max_wait).await.map(|()| Done::Tokens) },
            );
        Ok(Some(Waiting::new(wait)))
    }

    /// Whole tokens of `key` free now (`burst` for a key not held).
    fn available(&self, key: Key) -> u64 {
        self.limiter.available(&key)
    }

    /// Callers waiting on `key` now.
    fn waiters(&self, key: Key) -> usize {
        self.limiter.waiters(&key)
    }

    /// Keys held now (refilled keys that eviction has not reached yet included).
    fn __len__(&self) -> usize {
        self.limiter.len()
    }

    /// Forgets every key that has refilled and that nobody waits on.
    fn retain_recent(&self) {
        self.limiter.retain_recent();
    }

    /// Frees the tables' spare room (after `retain_recent`).
    fn shrink_to_fit(&self) {
        self.limiter.shrink_to_fit();
    }

    /// Bytes the key tables have allocated.
    fn table_bytes(&self) -> usize {
        self.limiter.table_bytes()
    }

    /// Tokens per second, per key.
    #[getter]
    fn rate(&self) -> f64 {
        let rate = self.limiter.rate();
        rate.count() as f64 / rate.period().as_secs_f64()
    }

    /// The most tokens one key is granted at once.
    #[getter]
    fn burst(&self) -> u64 {
        self.limiter.burst()
    }

    /// The number of shards (a power of two).
    #[getter]
    fn shards(&self) -> usize {
        self.shards
    }

    /// The key cap, if any.
    #[getter]
    fn max_keys(&self) -> Option<usize> {
        self.max_keys
    }

    /// The clock reading the limiter uses now, in seconds.
    fn now(&self, py: Python<'_>) -> f64 {
        secs_from_instant(clock::now(py))
    }
}
