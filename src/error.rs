//! The crate's typed errors: one small enum, `Display` by hand, `core::error::Error` always.

use core::fmt;
use core::time::Duration;

use crate::{Instant, Refusal};

/// Why a limiter refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The request asks for more than the limit can ever hold at once (`n > burst`,
    /// `estimated_tokens > tpm`). Waiting would never help, so it fails at once.
    InsufficientCapacity {
        /// What was asked for.
        requested: u64,
        /// The most that can ever be granted at once.
        capacity: u64,
    },
    /// A non-waiting call (`try_*`) found no room now. The [`Refusal`] says when room
    /// appears: [`Refusal::ready_at`], or [`Refusal::retry_after`] from a given instant.
    RateLimited(Refusal),
    /// The wait needed exceeds the caller's maximum wait or deadline. Nothing was reserved.
    MaxWaitExceeded {
        /// The earliest instant at which the request would succeed, if nothing else arrives.
        ready_at: Instant,
    },
    /// A rate, burst or limit was zero or out of range.
    InvalidConfig(InvalidConfig),
    /// A strict [`ModelRateLimiter`](crate::ModelRateLimiter) was asked for a model it was
    /// not configured with (a typo such as `"gpt4"` for `"gpt-4"`). Nothing was created or
    /// counted; retrying never helps.
    UnknownModel,
    /// The provider said the model's quota is used up (a spend limit, a daily quota): no
    /// request of it is admitted until `reset_at`, and waiting in line would not help.
    QuotaExhausted {
        /// When the quota resets, on the limiter's clock, if the provider said.
        reset_at: Option<Instant>,
    },
}

/// Which configuration value was rejected, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidConfig {
    /// The offending field, e.g. `"rate.count"`, `"burst"`, `"tpm"`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl InvalidConfig {
    pub(crate) const fn new(field: &'static str, reason: &'static str) -> Self {
        Self { field, reason }
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl core::error::Error for InvalidConfig {}

impl From<InvalidConfig> for Error {
    fn from(e: InvalidConfig) -> Self {
        Error::InvalidConfig(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InsufficientCapacity { requested, capacity } => write!(
                f,
                "request for {requested} exceeds the capacity of {capacity} and can never be granted"
            ),
            Error::RateLimited(refusal) => {
                write!(f, "rate limited; room at {:?}", refusal.ready_at())
            }
            Error::MaxWaitExceeded { ready_at } => {
                write!(f, "waiting would exceed the maximum wait; room at {ready_at:?}")
            }
            Error::InvalidConfig(e) => fmt::Display::fmt(e, f),
            Error::UnknownModel => {
                f.write_str("model not configured, and the limiter is strict about model names")
            }
            Error::QuotaExhausted { reset_at: Some(at) } => {
                write!(f, "the provider's quota is exhausted until {at:?}")
            }
            Error::QuotaExhausted { reset_at: None } => {
                f.write_str("the provider's quota is exhausted; its reset is unknown")
            }
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::InvalidConfig(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// The instant at which the refused request would succeed, for the errors that have one.
    ///
    /// ```
    /// use tollgate::{Error, Instant, Refusal};
    ///
    /// let refused = Error::RateLimited(Refusal::at(Instant::from_secs(2)));
    /// assert_eq!(refused.ready_at(), Some(Instant::from_secs(2)));
    /// assert_eq!(Error::UnknownModel.ready_at(), None);
    /// ```
    pub const fn ready_at(&self) -> Option<Instant> {
        match self {
            Error::RateLimited(refusal) => Some(refusal.ready_at()),
            Error::MaxWaitExceeded { ready_at } => Some(*ready_at),
            Error::QuotaExhausted { reset_at } => *reset_at,
            _ => None,
        }
    }

    /// How long to wait from `now` until [`ready_at`](Error::ready_at) (zero if that is
    /// past), for the errors that have one: what an HTTP `Retry-After` wants. `now` must
    /// come from the limiter's clock.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::{Error, Instant, Refusal};
    ///
    /// let refused = Error::RateLimited(Refusal::at(Instant::from_secs(2)));
    /// assert_eq!(refused.retry_after(Instant::from_secs(1)), Some(Duration::from_secs(1)));
    /// let too_long = Error::MaxWaitExceeded { ready_at: Instant::from_secs(2) };
    /// assert_eq!(too_long.retry_after(Instant::from_secs(3)), Some(Duration::ZERO));
    /// assert_eq!(Error::UnknownModel.retry_after(Instant::ZERO), None);
    /// ```
    pub const fn retry_after(&self, now: Instant) -> Option<Duration> {
        match self.ready_at() {
            Some(at) => Some(at.saturating_duration_since(now)),
            None => None,
        }
    }
}
