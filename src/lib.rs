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
// With `std` on, what `alloc` has still comes from `alloc`, so the no-`std` build sees the same
// imports (the workspace lints add `std_instead_of_core` and `alloc_instead_of_core`).
#![warn(clippy::std_instead_of_alloc)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod acquire;
mod adapter_aliases;
pub mod bucket;
mod error;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod keyed;
pub mod limiter;
mod manual_clock;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod model;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod provider;
mod rate;
mod refusal;
pub mod semaphore;
pub mod stream;
mod sync;
pub mod time;
mod wait;
pub mod window;
mod wrap;

// The root lists the types a user starts from (inlined, so its page shows them as its own);
// the futures, permits and secondary errors they lead to live in the modules above.
#[doc(inline)]
pub use bucket::TokenBucket;
#[doc(inline)]
pub use error::{Error, InvalidConfig};
#[cfg(feature = "alloc")]
#[doc(inline)]
pub use keyed::KeyedRateLimiter;
#[doc(inline)]
pub use limiter::AsyncRateLimiter;
#[cfg(feature = "alloc")]
#[doc(inline)]
pub use model::{ModelRateLimiter, ModelStats, RateLimitConfig, Usage};
#[doc(inline)]
pub use rate::Rate;
#[doc(inline)]
pub use refusal::Refusal;
#[doc(inline)]
pub use semaphore::Semaphore;
#[doc(inline)]
pub use stream::StreamRateLimitExt;
#[doc(inline)]
pub use time::{Clock, Instant, ManualClock, Timer};
#[doc(inline)]
pub use window::SlidingWindow;
