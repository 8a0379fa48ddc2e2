//! Per-model statistics: [`ModelStats`], its [`Usage`] figures, and one [`LimitUsage`] per
//! rate limit of the model.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt;

use super::limit::Counts;
use crate::Instant;

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

/// The usage of one rate limit of a model, named as in its config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitUsage {
    /// The limit's name (`"rpm"`, `"tpm"`, or the [`Limit::name`](crate::model::Limit::name) given).
    pub name: Cow<'static, str>,
    /// What it counts.
    pub counts: Counts,
    /// Charged in the window ending now (a bucket: its burst minus what it could admit now),
    /// against the maximum in force: the configured one, or one learned from the provider.
    pub usage: Usage,
    /// The maximum as configured ([`Limit::max`](crate::model::Limit::max)).
    pub configured: u64,
    /// The maximum learned from the provider's feedback, when one is in force (lower than
    /// `configured`, or higher only if the config opts in to raising).
    pub learned: Option<u64>,
}

/// One model's usage, from [`ModelRateLimiter::stats`](crate::ModelRateLimiter::stats).
///
/// ```
/// use core::time::Duration;
/// use tollgate::model::Limit;
/// use tollgate::{ManualClock, ModelRateLimiter, RateLimitConfig};
///
/// let config = RateLimitConfig {
///     limits: vec![Limit::requests("rpd", 1_000, Duration::from_secs(86_400))],
///     ..Default::default()
/// };
/// let limiter = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config)?;
/// limiter.try_acquire("m", 500)?.settle(400);
/// let stats = &limiter.stats()["m"];
/// let by_name: Vec<String> =
///     stats.limits.iter().map(|l| format!("{} {}", l.name, l.usage)).collect();
/// assert_eq!(by_name, ["rpm 1/10", "tpm 400/200000", "rpd 1/1000"]);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ModelStats {
    /// Requests admitted in the current 60-second window, against `rpm`.
    pub requests: Usage,
    /// Tokens charged in the current 60-second window (estimates until settled), against `tpm`.
    pub tokens: Usage,
    /// Parallel slots held (admitted or waiting for rate-limit room), against `max_parallel_requests`.
    pub active: Usage,
    /// Every rate limit of the model in list order (`rpm`, `tpm`, then
    /// [`RateLimitConfig::limits`](crate::RateLimitConfig::limits)), each with its usage.
    pub limits: Vec<LimitUsage>,
    /// The end of the cooldown in force (after a 429), if any: no request of the model (or of
    /// its shared quota) is admitted before it.
    pub cooldown_until: Option<Instant>,
    /// `Some` while the provider's quota is exhausted: admissions fail with
    /// [`Error::QuotaExhausted`](crate::Error::QuotaExhausted) until the reset it holds
    /// (`Some(None)`: reset unknown, until [`resume`](crate::ModelRateLimiter::resume)).
    pub quota_exhausted: Option<Option<Instant>>,
}
