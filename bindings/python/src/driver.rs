//! [`Waiting`]: one core wait (an acquire future) driven from Python.
//!
//! Why Python drives it (the "non-blocking core, waiting in Python" design): the future is
//! polled on the caller's thread, with the GIL held, only when Python asks. When it is
//! pending it reports either a deadline (the core's timer wants to sleep: Python sleeps with
//! `asyncio.sleep` or `time.sleep`, looked up at call time, so patched sleeps work) or nothing
//! (it waits for a wake-up: a parallel slot or its turn in the queue). A wake-up calls the
//! Python callback given to [`Waiting::poll`], which completes an `asyncio.Future` through
//! `loop.call_soon_threadsafe`; a blocking waiter parks in Rust with the GIL released.
//! Cancelling drops the future, and the core's futures give back their queue place, slot and
//! reservation when dropped: no background thread, no runtime, and a real coroutine on the
//! Python side.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Wake;
use std::thread::{self, Thread};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use tollgate::Error;
use tollgate::model::OwnedModelPermit;

use crate::clock::{self, PyTimer, secs_until};
use crate::errors::{map_error, poisoned};
use crate::model::Permit;

/// The longest single call of a patched `time.sleep` in a blocking wait: the latency with
/// which it notices a wake-up during a timed sleep.
const SLEEP_SLICE_SECS: f64 = 0.02;

/// What a finished wait hands back.
pub(crate) enum Done {
    /// Tokens were taken (RPS limiters).
    Tokens,
    /// A model request was admitted.
    Permit(OwnedModelPermit<PyTimer>),
}

/// A boxed core wait.
pub(crate) type CoreWait = Pin<Box<dyn Future<Output = Result<Done, Error>> + Send>>;

/// Wakes an asyncio waiter by calling its Python callback (which must be thread-safe:
/// `loop.call_soon_threadsafe(...)`).
struct CallbackWaker(Py<PyAny>);

impl Wake for CallbackWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        Python::attach(|py| {
            if let Err(err) = self.0.call0(py) {
                // A wake-up cannot fail its caller (a permit being dropped); report it.
                err.write_unraisable(py, None);
            }
        });
    }
}

/// Wakes a thread parked in [`Waiting::wait_blocking`].
struct ThreadWaker {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Parks this thread with the GIL released until the core wakes it or `limit` has passed
/// (never, if `None`), looking at signals every 50 ms so that Ctrl-C ends a long wait.
fn park(py: Python<'_>, parker: &ThreadWaker, limit: Option<Duration>) -> PyResult<()> {
    const SIGNAL_CHECK: Duration = Duration::from_millis(50);
    let start = std::time::Instant::now();
    loop {
        if parker.woken.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let slice = match limit {
            None => SIGNAL_CHECK,
            Some(limit) => match limit.checked_sub(start.elapsed()) {
                Some(left) if !left.is_zero() => left.min(SIGNAL_CHECK),
                _ => return Ok(()),
            },
        };
        py.detach(|| thread::park_timeout(slice));
        py.check_signals()?;
    }
}

/// How a poll ended.
enum Step {
    Ready(Py<PyAny>),
    /// Pending; sleep this many seconds (`Some`) or until woken (`None`).
    Pending(Option<f64>),
}

/// One acquire in progress. Poll it until it is done, or cancel it; dropping it cancels too.
///
/// Safe to share between threads (all methods take `&self`), though one waiter is meant to
/// be driven by one task or thread.
#[pyclass(frozen, module = "tollgate._tollgate")]
pub struct Waiting {
    wait: Mutex<Option<CoreWait>>,
}

impl Waiting {
    pub(crate) fn new(wait: CoreWait) -> Self {
        Self { wait: Mutex::new(Some(wait)) }
    }

    fn step(&self, py: Python<'_>, waker: &Waker) -> PyResult<Step> {
        let mut slot = self.wait.lock_py_attached(py).map_err(|_| poisoned())?;
        let Some(wait) = slot.as_mut() else {
            return Err(PyRuntimeError::new_err("this wait has already finished or was cancelled"));
        };
        clock::reset_deadline();
        let polled = wait.as_mut().poll(&mut Context::from_waker(waker));
        let deadline = clock::take_deadline();
        match polled {
            Poll::Pending => {
                let delay = deadline.map(|d| secs_until(d, clock::now(py)));
                Ok(Step::Pending(delay))
            }
            Poll::Ready(result) => {
                // Finished: drop the future now (it may hold nothing, but be tidy).
                *slot = None;
                drop(slot);
                match result {
                    Ok(Done::Tokens) => Ok(Step::Ready(py.None())),
                    Ok(Done::Permit(permit)) => {
                        Ok(Step::Ready(Py::new(py, Permit::new(permit))?.into_any()))
                    }
                    Err(err) => Err(map_error(py, err, clock::now(py))),
                }
            }
        }
    }
}

#[pymethods]
impl Waiting {
    /// Polls once. `wake` is called (from any thread) when a poll may make progress.
    /// Returns `(True, result)` when done, or `(False, delay)`: sleep `delay` seconds, or
    /// await the wake-up when `delay` is `None`, then poll again.
    fn poll(&self, py: Python<'_>, wake: Py<PyAny>) -> PyResult<(bool, Py<PyAny>)> {
        let waker = Waker::from(Arc::new(CallbackWaker(wake)));
        match self.step(py, &waker)? {
            Step::Ready(value) => Ok((true, value)),
            Step::Pending(delay) => Ok((false, delay.into_pyobject(py)?.into_any().unbind())),
        }
    }

    /// Waits on this thread until done. A timed wait parks in Rust with the GIL released,
    /// woken early by the core (its turn came, a slot freed, a refund); if `time.sleep` is
    /// patched (a fake clock, a mock), it sleeps through the patch instead, in slices of at
    /// most 20 ms so that a wake-up is noticed within one. A wait for a wake-up alone parks.
    /// An exception from the sleep or a signal handler (e.g. `KeyboardInterrupt`) cancels the
    /// wait and propagates.
    fn wait_blocking(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let parker =
            Arc::new(ThreadWaker { thread: thread::current(), woken: AtomicBool::new(false) });
        let waker = Waker::from(parker.clone());
        let outcome = (|| loop {
            match self.step(py, &waker)? {
                Step::Ready(value) => return Ok(value),
                Step::Pending(Some(delay)) => {
                    let sleep = clock::time_module(py)?.getattr(intern!(py, "sleep"))?;
                    if clock::is_real_sleep(py, &sleep) {
                        let limit = Duration::try_from_secs_f64(delay).unwrap_or(Duration::MAX);
                        park(py, &parker, Some(limit))?;
                        continue;
                    }
                    let mut left = delay;
                    while left > 0.0 && !parker.woken.swap(false, Ordering::AcqRel) {
                        let slice = left.min(SLEEP_SLICE_SECS);
                        sleep.call1((slice,))?;
                        left -= slice;
                    }
                }
                Step::Pending(None) => park(py, &parker, None)?,
            }
        })();
        if outcome.is_err() {
            self.cancel(py);
        }
        outcome
    }

    /// Gives up: drops the core wait, which returns its queue place, slot and reservation.
    /// Idempotent.
    fn cancel(&self, py: Python<'_>) {
        let taken = match self.wait.lock_py_attached(py) {
            Ok(mut slot) => slot.take(),
            Err(poison) => poison.into_inner().take(),
        };
        drop(taken);
    }

    /// Whether the wait has finished or was cancelled.
    #[getter]
    fn done(&self, py: Python<'_>) -> bool {
        self.wait.lock_py_attached(py).map_or(true, |slot| slot.is_none())
    }
}
