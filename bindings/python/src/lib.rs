//! `tollgate._tollgate`: the compiled half of the Python package. Limiter state and every
//! admission decision live here, in the tollgate core; the Python modules only wait (with
//! `asyncio.sleep` / `time.sleep`) for the instants this module names.

mod clock;
mod driver;
mod errors;
mod model;
mod rps;
mod seed;

use pyo3::prelude::*;

/// The extension module. Everything in it is private API of the `tollgate` and `rate_limiter`
/// packages, which wrap it.
#[pymodule]
fn _tollgate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<driver::Waiting>()?;
    m.add_class::<rps::RateLimiterCore>()?;
    m.add_class::<model::ModelLimiterCore>()?;
    m.add_class::<model::Permit>()?;
    m.add_class::<model::Usage>()?;
    m.add_class::<model::ModelStats>()?;
    m.add_class::<seed::SeedBucket>()?;
    m.add_class::<seed::SeedTicket>()?;
    m.add_class::<seed::SeedWindows>()?;
    m.add_class::<seed::SeedSlot>()?;
    m.add_function(wrap_pyfunction!(clock::monotonic, m)?)?;
    Ok(())
}
