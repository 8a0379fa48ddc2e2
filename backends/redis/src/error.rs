//! The backend's typed errors: a limiter's refusal exactly as the in-process limiters return
//! it ([`tollgate::Error`]), or what went wrong with the store.

use core::fmt;
use core::time::Duration;

/// What a `tollgate-redis` call can fail with.
///
/// ```
/// use tollgate_redis::{Error, StoreError};
///
/// let refused = Error::from(tollgate::Error::UnknownModel);
/// assert!(refused.limit().is_some());
/// let down = Error::Store(StoreError::Timeout { after: core::time::Duration::from_millis(200) });
/// assert!(down.limit().is_none() && down.is_store());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The limiter's answer, as [`tollgate`]'s limiters give it: `RateLimited` (with when),
    /// `InsufficientCapacity` (can never fit), `MaxWaitExceeded`, `InvalidConfig`,
    /// `UnknownModel`.
    Limit(tollgate::Error),
    /// The store could not be used (fail closed: nothing was admitted).
    Store(StoreError),
    /// Another process stores another config under the same name: the two would silently
    /// mix their limits, so neither may use it until they agree (or its state expires).
    ConfigMismatch {
        /// The key holding the other config.
        key: String,
    },
}

/// Why the store could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL could not be parsed.
    InvalidUrl(String),
    /// No answer within the bound (the connect timeout, the response timeout, or the caller's
    /// own deadline, whichever came first).
    Timeout {
        /// How long it waited.
        after: Duration,
    },
    /// The connection failed.
    Redis(String),
    /// The server answered with an error (the connection is fine).
    Script(String),
    /// Not tried: a call failed moments ago and the breaker is open
    /// ([`StoreOptions::breaker_cooldown`](crate::StoreOptions::breaker_cooldown)), or the
    /// caller, with no bound of its own, waited behind that call in this process's line.
    Unavailable,
    /// A script answered something this version does not understand.
    Protocol(String),
}

impl Error {
    /// The limiter's refusal, if that is what this is.
    pub fn limit(&self) -> Option<&tollgate::Error> {
        match self {
            Error::Limit(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the store failed (as opposed to a limit refusing).
    pub fn is_store(&self) -> bool {
        matches!(self, Error::Store(_))
    }
}

impl From<tollgate::Error> for Error {
    fn from(e: tollgate::Error) -> Self {
        Error::Limit(e)
    }
}

impl From<tollgate::InvalidConfig> for Error {
    fn from(e: tollgate::InvalidConfig) -> Self {
        Error::Limit(e.into())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl From<tollgate::model::ModelConfigError> for Error {
    fn from(e: tollgate::model::ModelConfigError) -> Self {
        Error::Limit(e.into())
    }
}

impl StoreError {
    /// `e` of a call bounded by `bound`: the client's own timeout is the call's, `after`
    /// `bound` (a `Timeout` whose `after` is below the response timeout says the caller's
    /// bound cut the call short, which is not a fault; the client's timeout is one).
    pub(crate) fn within(e: redis::RedisError, bound: Duration) -> Self {
        if e.is_timeout() { StoreError::Timeout { after: bound } } else { e.into() }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_timeout() {
            StoreError::Timeout { after: Duration::ZERO }
        } else {
            StoreError::Redis(e.to_string())
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Limit(e) => fmt::Display::fmt(e, f),
            Error::Store(e) => write!(f, "rate-limit store unavailable: {e}"),
            Error::ConfigMismatch { key } => write!(
                f,
                "another process configured `{key}` differently; refusing to mix two configs"
            ),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InvalidUrl(e) => write!(f, "invalid Redis URL: {e}"),
            StoreError::Timeout { after } => write!(f, "no answer from Redis within {after:?}"),
            StoreError::Redis(e) => write!(f, "Redis connection error: {e}"),
            StoreError::Script(e) => write!(f, "Redis answered with an error: {e}"),
            StoreError::Unavailable => f.write_str("not tried: Redis failed moments ago"),
            StoreError::Protocol(e) => write!(f, "unexpected script reply: {e}"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Limit(e) => Some(e),
            Error::Store(e) => Some(e),
            Error::ConfigMismatch { .. } => None,
        }
    }
}

impl core::error::Error for StoreError {}
