//! `tollgate._tollgate`: the compiled half of the Python package. Limiter state and every
//! admission decision live here, in the tollgate core; the Python modules only wait (with
//! `asyncio.sleep` / `time.sleep`) for the instants this module names.

mod clock;
mod driver;
mod errors;
mod feedback;
mod keyed;
mod limit;
mod model;
mod rps;
mod seed;

use pyo3::prelude::*;

/// The extension module. Everything in it is private API of the `tollgate` and `rate_limiter`
/// packages, which wrap it.
///
/// `gil_used = false` (PyO3's default, said here because it is a claim about this code): the
/// module is safe without the GIL because
/// - every class is `frozen` (no `&mut self`, so no runtime borrow errors under contention)
///   over `Send + Sync` state: the core's limiters behind an `Arc`, or a `Mutex`;
/// - no lock is held while Python runs, except the binding's own mutexes (a `Waiting` while
///   it polls, which reads `time.monotonic`; the drop-in's state while it builds an
///   exception), and those are taken with `lock_py_attached`, which detaches while it
///   blocks, so a holder that runs Python cannot deadlock against a waiter (with the GIL,
///   or with a free-threaded interpreter's stop-the-world pauses);
/// - the core reads the clock and calls wakers (Python callbacks) outside its own locks,
///   and its locks are held for a few arithmetic operations, never across Python code;
/// - the only global state is an atomic (the last clock reading) and a thread-local (the
///   deadline a poll left pending, read by the same thread right after).
///
/// The `abi3` wheel does not load on a free-threaded interpreter; a `cp314t` build is
/// version-specific (PyO3 0.30 refuses 3.13t). `ci.sh` compiles it for that ABI; no 3.14t
/// interpreter is available to test it (see the README).
#[pymodule(gil_used = false)]
fn _tollgate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    clock::remember_real_sleep(m.py())?;
    m.add_class::<driver::Waiting>()?;
    m.add_class::<rps::RateLimiterCore>()?;
    m.add_class::<model::ModelLimiterCore>()?;
    m.add_class::<model::Permit>()?;
    m.add_class::<model::Usage>()?;
    m.add_class::<model::ModelStats>()?;
    m.add_class::<limit::Limit>()?;
    m.add_class::<limit::LimitUsage>()?;
    m.add_class::<feedback::HeaderReport>()?;
    m.add_class::<feedback::Observed>()?;
    m.add_class::<feedback::Ignored>()?;
    m.add_class::<feedback::Throttled>()?;
    m.add_class::<feedback::Cooldown>()?;
    m.add_class::<feedback::Learned>()?;
    m.add_class::<feedback::Drained>()?;
    m.add_class::<feedback::FeedbackReport>()?;
    m.add_function(wrap_pyfunction!(feedback::parse_headers, m)?)?;
    m.add_function(wrap_pyfunction!(feedback::classify_429, m)?)?;
    m.add_class::<keyed::KeyedLimiterCore>()?;
    m.add_class::<seed::SeedBucket>()?;
    m.add_class::<seed::SeedTicket>()?;
    m.add_class::<seed::SeedWindows>()?;
    m.add_class::<seed::SeedSlot>()?;
    m.add_function(wrap_pyfunction!(clock::monotonic, m)?)?;
    Ok(())
}
