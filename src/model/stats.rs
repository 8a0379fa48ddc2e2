//! Per-model statistics: [`ModelStats`] and its [`Usage`] figures.

use core::fmt;

/// How much of a limit is in use. Displays as `"used/limit"`.
///
/// ```
/// use tollgate::Usage;
/// assert_eq!(Usage { used: 7_500, limit: 40_000 }.to_string(), "7500/40000");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Usage {
    /// In use now.
    pub used: u64,
    /// The limit.
    pub limit: u64,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.used, self.limit)
    }
}

/// One model's usage, from [`ModelRateLimiter::stats`](crate::ModelRateLimiter::stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ModelStats {
    /// Requests admitted in the current 60-second window, against `rpm`.
    pub requests: Usage,
    /// Tokens charged in the current 60-second window (estimates until settled), against `tpm`.
    pub tokens: Usage,
    /// Parallel slots held (admitted or waiting for RPM/TPM room), against `max_parallel_requests`.
    pub active: Usage,
}
