//! [`RateLimiterCore`]: the core's token bucket limiter (`AsyncRateLimiter` on Python's
//! clock), behind both of the `tollgate` package's RPS limiters, blocking and asyncio.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use tollgate::{AsyncRateLimiter, Rate};

use crate::clock::{self, PyTimer, secs_from_instant};
use crate::driver::{Done, Waiting};
use crate::errors::{bad_argument, invalid_config, map_error};

/// A period in seconds as a `Duration`, rejecting NaN, infinities and negatives.
pub(crate) fn duration(name: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        bad_argument(format!("{name} must be a finite, non-negative number of seconds"))
    })
}

/// A GCRA token bucket limiter: `count` tokens per `period` seconds, up to `burst` at once.
#[pyclass(frozen, module = "tollgate._tollgate")]
pub struct RateLimiterCore {
    limiter: Arc<AsyncRateLimiter<PyTimer>>,
}

#[pymethods]
impl RateLimiterCore {
    /// `count` per `period` seconds; `burst` defaults to the events in one second, at least 1.
    #[new]
    #[pyo3(signature = (count, period = 1.0, burst = None))]
    fn new(py: Python<'_>, count: u64, period: f64, burst: Option<u64>) -> PyResult<Self> {
        let rate =
            Rate::try_new(count, duration("period", period)?).map_err(|e| invalid_config(py, e))?;
        let burst = burst.unwrap_or_else(|| rate.default_burst());
        let limiter = AsyncRateLimiter::try_with_timer(rate, burst, PyTimer)
            .map_err(|e| invalid_config(py, e))?;
        Ok(Self { limiter: Arc::new(limiter) })
    }

    /// Takes `n` tokens now or raises (`RateLimited`, `InsufficientCapacity`); never waits.
    #[pyo3(signature = (n = 1))]
    fn try_acquire(&self, py: Python<'_>, n: u64) -> PyResult<()> {
        self.limiter.try_acquire_n(n).map_err(|e| map_error(py, e, clock::now(py)))
    }

    /// A wait for `n` tokens; with `max_wait` (seconds) it fails with `MaxWaitExceeded`
    /// rather than wait longer.
    #[pyo3(signature = (n = 1, max_wait = None))]
    fn acquire(&self, n: u64, max_wait: Option<f64>) -> PyResult<Waiting> {
        let limiter = self.limiter.clone();
        let wait = match max_wait {
            None => limiter.acquire_n_owned(n),
            Some(secs) => limiter.acquire_n_within_owned(n, duration("max_wait", secs)?),
        };
        Ok(Waiting::new(Box::pin(async move { wait.await.map(|()| Done::Tokens) })))
    }

    /// Whole tokens free now.
    fn available(&self) -> u64 {
        self.limiter.available()
    }

    /// Callers waiting in line.
    fn waiters(&self) -> usize {
        self.limiter.waiters()
    }

    /// Tokens per second.
    #[getter]
    fn rate(&self) -> f64 {
        let rate = self.limiter.rate();
        rate.count() as f64 / rate.period().as_secs_f64()
    }

    /// The most tokens granted at once.
    #[getter]
    fn burst(&self) -> u64 {
        self.limiter.burst()
    }

    /// The clock reading the limiter uses now, in seconds (rounded to the nanosecond).
    fn now(&self, py: Python<'_>) -> f64 {
        secs_from_instant(clock::now(py))
    }
}
