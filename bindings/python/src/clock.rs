//! The limiters' clock and timer: Python's `time.monotonic()`, read at every call.
//!
//! Reading the clock through Python (looked up on the `time` module each time, never cached)
//! is what lets code and tests that patch `time.monotonic` drive the limiters. The timer never
//! sleeps itself: a sleep that is not yet due records its deadline for the driver
//! (`driver.rs`), which waits in Python (`asyncio.sleep` / `time.sleep`) and polls again.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyModule};
use tollgate::{Clock, Instant, Timer};

/// The last reading, used if `time.monotonic()` ever fails (a broken patch): the core's clock
/// cannot fail, and repeating the last instant is what it tolerates best.
static LAST: AtomicU64 = AtomicU64::new(0);

std::thread_local! {
    /// The earliest deadline a [`PySleep`] was pending on during the current poll.
    static NEXT_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Seconds of `time.monotonic()` as an [`Instant`]: rounded to the nanosecond, negative and
/// NaN readings as the epoch, saturating at the end of the clock.
pub(crate) fn instant_from_secs(secs: f64) -> Instant {
    if secs.is_nan() || secs <= 0.0 {
        return Instant::ZERO;
    }
    let nanos = (secs * 1e9).round();
    if nanos >= u64::MAX as f64 { Instant::MAX } else { Instant::from_nanos(nanos as u64) }
}

/// An [`Instant`] as `time.monotonic()` seconds.
pub(crate) fn secs_from_instant(at: Instant) -> f64 {
    at.as_nanos() as f64 / 1e9
}

/// Seconds from `now` until `at`, never negative.
pub(crate) fn secs_until(at: Instant, now: Instant) -> f64 {
    at.saturating_duration_since(now).as_secs_f64()
}

/// The `time` module, imported once. Its `monotonic` attribute is still looked up at every
/// read, which is what `mock.patch("time.monotonic")` replaces.
static TIME: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The `time` module.
pub(crate) fn time_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    TIME.get_or_try_init(py, || py.import(intern!(py, "time")).map(Bound::unbind))
        .map(|module| module.bind(py))
}

/// The interpreter's own `time.sleep`, as found when the module was imported (`None` if it
/// was not the built-in then: patched before the import).
static REAL_SLEEP: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();

/// Remembers the built-in `time.sleep` (at module import, before any test patches it).
pub(crate) fn remember_real_sleep(py: Python<'_>) -> PyResult<()> {
    let sleep = time_module(py)?.getattr(intern!(py, "sleep"))?;
    let builtin = sleep.is_instance_of::<PyCFunction>();
    REAL_SLEEP.get_or_init(py, || builtin.then(|| sleep.unbind()));
    Ok(())
}

/// Whether `sleep` (the current `time.sleep`) is the interpreter's own, not a patch. A
/// blocking waiter sleeps through a patched `time.sleep` (so fake clocks and mocks see the
/// sleeps) but parks in Rust instead of calling the real one, because a park can be woken
/// early (its turn came, a slot freed, a refund) and `time.sleep` cannot.
pub(crate) fn is_real_sleep(py: Python<'_>, sleep: &Bound<'_, PyAny>) -> bool {
    REAL_SLEEP.get(py).and_then(Option::as_ref).is_some_and(|real| real.bind(py).is(sleep))
}

/// Reads `time.monotonic()` (looked up now, so patches apply).
pub(crate) fn now(py: Python<'_>) -> Instant {
    let reading = time_module(py)
        .and_then(|time| time.getattr(intern!(py, "monotonic")))
        .and_then(|monotonic| monotonic.call0())
        .and_then(|value| value.extract::<f64>());
    match reading {
        Ok(secs) => {
            let at = instant_from_secs(secs);
            LAST.store(at.as_nanos(), Ordering::Relaxed);
            at
        }
        Err(_) => Instant::from_nanos(LAST.load(Ordering::Relaxed)),
    }
}

/// `time.monotonic()` as the limiters read it (rounded to the nanosecond), for tests.
#[pyfunction]
pub(crate) fn monotonic(py: Python<'_>) -> f64 {
    secs_from_instant(now(py))
}

/// The clock and timer of every limiter in this module.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PyTimer;

impl Clock for PyTimer {
    fn now(&self) -> Instant {
        Python::attach(now)
    }
}

impl Timer for PyTimer {
    type Sleep<'a> = PySleep;

    fn sleep_until(&self, deadline: Instant) -> PySleep {
        PySleep { deadline }
    }
}

/// A sleep the driver carries out: pending until the clock reaches `deadline`.
#[derive(Debug)]
pub(crate) struct PySleep {
    deadline: Instant,
}

impl Future for PySleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if PyTimer.now() >= self.deadline {
            return Poll::Ready(());
        }
        // No waker is kept: the driver polls again once it has slept until this deadline.
        note_deadline(self.deadline);
        Poll::Pending
    }
}

/// Records that the current poll is pending until `at` (the earliest such instant wins).
pub(crate) fn note_deadline(at: Instant) {
    NEXT_DEADLINE.with(|next| {
        let earliest = next.get().map_or(at, |d| d.min(at));
        next.set(Some(earliest));
    });
}

/// Wall-clock time as a duration since the Unix epoch, from `time.time()` looked up now (so
/// patches apply): what turns a provider's absolute instants (RFC 3339 resets, HTTP dates)
/// into delays. `None` if it fails or reads before the epoch.
pub(crate) fn wall_now(py: Python<'_>) -> Option<std::time::Duration> {
    let secs = time_module(py)
        .and_then(|time| time.getattr(intern!(py, "time")))
        .and_then(|time| time.call0())
        .and_then(|value| value.extract::<f64>())
        .ok()?;
    std::time::Duration::try_from_secs_f64(secs).ok()
}

/// Clears the recorded deadline before a poll.
pub(crate) fn reset_deadline() {
    NEXT_DEADLINE.with(|next| next.set(None));
}

/// The deadline a poll left pending, if it is waiting on time rather than on a wake-up.
pub(crate) fn take_deadline() -> Option<Instant> {
    NEXT_DEADLINE.with(Cell::take)
}
