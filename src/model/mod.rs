//! The model rate limiter for LLM APIs: per model, requests per minute (RPM), tokens per
//! minute (TPM) and a cap on parallel requests.
//!
//! A request *reserves* its estimated tokens when it is admitted and *settles* the actual
//! count when it ends, so concurrent requests can never overrun TPM between admission and
//! completion (the Python seed counted tokens only after a call ended).

mod config;
mod limiter;
mod permit;
mod state;
mod stats;

pub use config::{ModelConfigError, RateLimitConfig};
pub use limiter::ModelRateLimiter;
pub use permit::{ModelPermit, OwnedModelPermit};
pub use stats::{ModelStats, Usage};
