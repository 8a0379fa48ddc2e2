//! [`RateLimitConfig`]: one model's limits, and the error for a config that cannot work.

use alloc::string::String;
use core::fmt;

use crate::error::{Error, InvalidConfig};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimitConfig {
    /// Requests admitted in any 60-second window.
    pub rpm: u32,
    /// Tokens charged in any 60-second window (estimates at admission, actual after settling).
    pub tpm: u64,
    /// Requests in flight at once.
    pub max_parallel_requests: u32,
}

impl Default for RateLimitConfig {
    /// The Python seed's defaults: 10 RPM, 200 000 TPM, 5 parallel requests.
    fn default() -> Self {
        Self { rpm: 10, tpm: 200_000, max_parallel_requests: 5 }
    }
}

impl RateLimitConfig {
    /// Checks that every limit is non-zero.
    ///
    /// # Errors
    /// The first zero field, as an [`InvalidConfig`].
    pub const fn validate(&self) -> Result<(), InvalidConfig> {
        if self.rpm == 0 {
            return Err(InvalidConfig::new("rpm", "must be greater than zero"));
        }
        if self.tpm == 0 {
            return Err(InvalidConfig::new("tpm", "must be greater than zero"));
        }
        if self.max_parallel_requests == 0 {
            return Err(InvalidConfig::new("max_parallel_requests", "must be greater than zero"));
        }
        Ok(())
    }
}

/// A [`RateLimitConfig`] that cannot work, naming the model (or the default) and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfigError {
    /// The model whose config was rejected; `None` for the default config.
    pub model: Option<String>,
    /// What was wrong.
    pub error: InvalidConfig,
}

impl fmt::Display for ModelConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.model {
            Some(model) => write!(f, "model `{model}`: {}", self.error),
            None => write!(f, "default config: {}", self.error),
        }
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
