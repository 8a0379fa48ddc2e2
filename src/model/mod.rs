//! The model rate limiter for LLM APIs: per model, a list of rate limits (requests per
//! minute, tokens per minute, and any further [`Limit`]: windows of any length and slot count,
//! token buckets) and a cap on parallel requests.
//!
//! A request *reserves* its estimated tokens when it is admitted and *settles* the actual
//! count when it ends, so concurrent requests can never overrun a token limit between
//! admission and completion (the Python seed counted tokens only after a call ended).
//!
//! The layers, one job per file:
//! - `limit.rs`, `config.rs`: the limits as data ([`Limit`], [`RateLimitConfig`]);
//! - `rule.rs`: the admission rule, pure functions over plain data ([`RateState`]), with
//!   `gcra.rs` for the token-bucket kind;
//! - `store.rs`: where that state lives ([`StateStore`]; [`MemoryStore`] in memory), and
//!   `parity.rs`: the harness that checks another store decides the same
//!   ([`check_store_parity`]);
//! - `state.rs`, `limiter.rs`, `permit.rs`: the waiting — FIFO gate, parallel slots (a
//!   semaphore, not a rate limit: a slot comes back when a request ends, not with time),
//!   refund wake-ups — and the permits;
//! - `estimate.rs`: a request's tokens, input and output apart ([`Estimate`]);
//! - `pause.rs`, `feedback.rs`: the cooldown and exhausted quota a provider's 429s start, and
//!   the typed reports of what feedback changed;
//! - `stats.rs`: what [`ModelRateLimiter::stats`] reports.

mod config;
mod estimate;
mod feedback;
mod gcra;
mod limit;
mod limiter;
mod metrics;
mod parity;
mod pause;
mod permit;
mod rule;
mod state;
mod stats;
mod store;

pub use config::{ModelConfigError, RateLimitConfig};
pub use estimate::Estimate;
pub use feedback::{Drained, FeedbackReport, Learned};
pub use limit::{Counts, Limit, LimitKind};
pub use limiter::ModelRateLimiter;
pub use parity::{ParityMismatch, ParityReport, check_store_parity};
pub use pause::Cooldown;
pub use permit::{ModelPermit, ModelPermitOf, OwnedModelPermit};
pub use rule::{Charge, RateState, Wait};
pub use stats::{LimitUsage, ModelStats, Usage};
pub use store::{MemoryStore, StateStore};
