//! [`RateLimitConfig`]: one model's limits, and the error for a config that cannot work.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use super::limit::{Counts, Limit, LimitKind};
use crate::error::{Error, InvalidConfig};

/// `rpm` and `tpm` are minute windows in one-second slots.
const MINUTE: LimitKind =
    LimitKind::Window { window: Duration::from_secs(60), slots: Limit::DEFAULT_SLOTS };

/// One model's limits.
///
/// Build it with struct syntax and `..Default::default()`: new limits arrive as new fields
/// with defaults, so code written that way keeps compiling.
///
/// ```
/// use tollgate::RateLimitConfig;
///
/// let gpt4 = RateLimitConfig { rpm: 500, tpm: 40_000, ..Default::default() };
/// assert_eq!(gpt4.max_parallel_requests, 5);
/// ```
///
/// `rpm` and `tpm` are the first two entries of the model's list of rate limits
/// ([`rate_limits`](Self::rate_limits)); [`limits`](Self::limits) adds more, of any window or
/// bucket, without any change to the limiter. `max_parallel_requests` is not a rate but a cap
/// on concurrency (a slot is held while a request runs and comes back when its permit ends,
/// not with time), so it stays a semaphore beside the list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimitConfig {
    /// Requests admitted in any 60-second window.
    pub rpm: u32,
    /// Tokens charged in any 60-second window (estimates at admission, actual after settling).
    pub tpm: u64,
    /// Requests in flight at once.
    pub max_parallel_requests: u32,
    /// Further rate limits, checked and charged together with `rpm` and `tpm` (all or
    /// nothing): requests per day, tokens per 10 s, a token bucket… Empty by default.
    pub limits: Vec<Limit>,
    /// Whether feedback from the provider may raise a limit above its configured maximum
    /// ([`ModelRateLimiter::learn_limit`](crate::ModelRateLimiter::learn_limit)). `false` by
    /// default: feedback only tightens (it lowers limits, drains windows, pauses admissions).
    pub feedback_may_raise: bool,
    /// How long a 429 that says nothing of when to retry pauses the model's admissions
    /// ([`ModelRateLimiter::observe_429`](crate::ModelRateLimiter::observe_429)). 1 s by
    /// default.
    pub default_cooldown: Duration,
}

impl Default for RateLimitConfig {
    /// The Python seed's defaults: 10 RPM, 200 000 TPM, 5 parallel requests, no further
    /// limits; feedback only tightens, and a 429 without a delay pauses for 1 s.
    fn default() -> Self {
        Self {
            rpm: 10,
            tpm: 200_000,
            max_parallel_requests: 5,
            limits: Vec::new(),
            feedback_may_raise: false,
            default_cooldown: Duration::from_secs(1),
        }
    }
}

impl RateLimitConfig {
    /// Checks that every limit can work: `rpm`, `tpm` and `max_parallel_requests` non-zero,
    /// and every entry of [`limits`](Self::limits) valid ([`Limit::validate`]).
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::model::Limit;
    /// use tollgate::RateLimitConfig;
    ///
    /// let config = RateLimitConfig {
    ///     limits: vec![Limit::requests("rpd", 0, Duration::from_secs(86_400))],
    ///     ..Default::default()
    /// };
    /// let err = config.validate().unwrap_err();
    /// assert_eq!((err.limit, err.error.field), (Some(0), "max"));
    /// ```
    ///
    /// # Errors
    /// The first invalid field, as a [`ModelConfigError`] (with no model name) whose `limit`
    /// is the index into [`limits`](Self::limits) of the entry at fault, if any.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        let field = |error| ModelConfigError { model: None, limit: None, error };
        if self.rpm == 0 {
            return Err(field(InvalidConfig::new("rpm", "must be greater than zero")));
        }
        if self.tpm == 0 {
            return Err(field(InvalidConfig::new("tpm", "must be greater than zero")));
        }
        if self.max_parallel_requests == 0 {
            let e = InvalidConfig::new("max_parallel_requests", "must be greater than zero");
            return Err(field(e));
        }
        for (i, limit) in self.limits.iter().enumerate() {
            limit.validate().map_err(|error| ModelConfigError {
                model: None,
                limit: Some(i),
                error,
            })?;
        }
        Ok(())
    }

    /// The model's whole list of rate limits, in the order they are checked and reported:
    /// `rpm` (named `"rpm"`), `tpm` (`"tpm"`), then [`limits`](Self::limits).
    ///
    /// ```
    /// use tollgate::RateLimitConfig;
    ///
    /// let names: Vec<_> =
    ///     RateLimitConfig::default().rate_limits().into_iter().map(|l| l.name).collect();
    /// assert_eq!(names, ["rpm", "tpm"]);
    /// ```
    pub fn rate_limits(&self) -> Vec<Limit> {
        let mut all = Vec::with_capacity(2 + self.limits.len());
        all.push(Limit {
            name: "rpm".into(),
            counts: Counts::Requests,
            max: self.rpm.into(),
            kind: MINUTE,
        });
        all.push(Limit { name: "tpm".into(), counts: Counts::Tokens, max: self.tpm, kind: MINUTE });
        all.extend(self.limits.iter().cloned());
        all
    }
}

/// A [`RateLimitConfig`] that cannot work, naming the model (or the default), the limit and
/// the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfigError {
    /// The model whose config was rejected; `None` for the default config (or a config
    /// checked on its own with [`RateLimitConfig::validate`]).
    pub model: Option<String>,
    /// The index into [`RateLimitConfig::limits`] of the limit at fault; `None` when the
    /// field is `rpm`, `tpm` or `max_parallel_requests`.
    pub limit: Option<usize>,
    /// What was wrong.
    pub error: InvalidConfig,
}

impl fmt::Display for ModelConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.model {
            Some(model) => write!(f, "model `{model}`: ")?,
            None => f.write_str("default config: ")?,
        }
        if let Some(i) = self.limit {
            write!(f, "limits[{i}]: ")?;
        }
        fmt::Display::fmt(&self.error, f)
    }
}

impl core::error::Error for ModelConfigError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// So `?` works in functions returning [`Error`]; the model name is dropped.
impl From<ModelConfigError> for Error {
    fn from(e: ModelConfigError) -> Self {
        Error::InvalidConfig(e.error)
    }
}
