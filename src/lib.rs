// The README is the crate's front page: one text for the repository and docs.rs, and its Rust
// examples run as this crate's doctests (the adapters they use are dev-dependencies).
#![doc = include_str!("../README.md")]
//!
//! # Feature flags
//!
//! From `Cargo.toml`, where each feature is declared:
#![doc = document_features::document_features!()]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod acquire;
mod adapter_aliases;
pub mod bucket;
mod error;
pub mod limiter;
mod manual_clock;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod model;
mod rate;
mod refusal;
pub mod semaphore;
pub mod stream;
mod sync;
pub mod time;
mod wait;
pub mod window;
mod wrap;

// The root lists the types a user starts from; the futures, permits, guards and secondary
// errors they lead to live in the modules above.
pub use bucket::TokenBucket;
pub use error::{Error, InvalidConfig};
pub use limiter::AsyncRateLimiter;
#[cfg(feature = "alloc")]
pub use model::{ModelRateLimiter, ModelStats, RateLimitConfig, Usage};
pub use rate::Rate;
pub use refusal::Refusal;
pub use semaphore::Semaphore;
pub use stream::StreamRateLimitExt;
pub use time::{Clock, Instant, ManualClock, Timer};
pub use window::SlidingWindow;
