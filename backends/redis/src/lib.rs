//! tollgate's limiters with their state in Redis (or Valkey): one budget shared by every
//! process and host that uses the same store and namespace.
//!
//! - [`RateLimiter`]: a GCRA token bucket (`try_acquire`, `acquire`, `acquire_within`, …).
//! - [`ModelRateLimiter`]: RPM, TPM, parallel requests and any further
//!   [`Limit`](tollgate::model::Limit) per model, reserve → settle, `stats()`.
//!
//! Both keep the in-process limiters' rule and names ([`tollgate`]'s DESIGN invariants); what
//! changes is where the state lives. Each operation is one Lua script (one round trip), timed
//! by the server's clock and computed in exact integers; each model's keys share one hash tag
//! (one cluster slot) and expire on their own. Waiting never polls: the server says how long,
//! the client sleeps once on its own timer, queued waiters are woken by a message. Parallel
//! slots are leases renewed by a heartbeat, so a crashed process gives its slots back within
//! one lease TTL. While Redis is unreachable nothing is admitted unless you choose otherwise
//! ([`Degraded`]).
//!
//! ```no_run
//! use tollgate::RateLimitConfig;
//! use tollgate_redis::{ModelRateLimiter, RateLimiter, RedisStore};
//!
//! # async fn demo() -> Result<(), tollgate_redis::Error> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
//!
//! // 10 calls per second, bursts of 10, for every process sharing "search-api".
//! let bucket = RateLimiter::per_second(store.clone(), "myapp", "search-api", 10)?;
//! bucket.acquire().await?;
//!
//! let models = ModelRateLimiter::new(
//!     store,
//!     "myapp",
//!     [("gpt-4", RateLimitConfig { rpm: 500, tpm: 40_000, max_parallel_requests: 10, ..Default::default() })],
//!     RateLimitConfig::default(),
//! )?;
//! let permit = models.acquire("gpt-4", 8_000).await?;
//! // ... call the model ...
//! permit.settle(7_500).await?;
//! # Ok(()) }
//! ```
//!
//! # Features
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bucket;
mod degraded;
mod encode;
mod error;
mod keys;
mod line;
mod model;
mod permit;
mod scripts;
mod store;
#[doc(hidden)]
pub mod testing;
mod waiting;

pub use bucket::RateLimiter;
pub use degraded::{Degraded, Share};
pub use error::{Error, StoreError};
pub use model::{ModelRateLimiter, ModelRateLimiterBuilder};
pub use permit::{ModelPermit, Settled};
pub use store::{RedisStore, StoreOptions};
