//! tollgate: rate limiting that runs anywhere.
//!
//! A `#![no_std]` core of accounting primitives (lock-free on targets with 64-bit atomics) ([`TokenBucket`], sliding windows,
//! a fair semaphore) over an injected [`Clock`], with limiters built on them. Runtime adapter
//! crates (`tollgate-tokio`, `tollgate-async-std`, `tollgate-std`, `tollgate-embassy`) add a
//! clock and timer and re-export everything here.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod acquire;
mod adapter_aliases;
mod bucket;
mod error;
mod limiter;
mod manual_clock;
#[cfg(feature = "alloc")]
mod model;
mod rate;
mod refusal;
mod semaphore;
mod stream;
mod sync;
mod time;
mod wait;
mod window;
mod wrap;

pub use acquire::AcquireTokens;
#[cfg(feature = "alloc")]
pub use acquire::AcquireTokensOwned;
pub use bucket::{Reservation, TokenBucket};
pub use error::{Error, InvalidConfig};
pub use limiter::AsyncRateLimiter;
pub use manual_clock::ManualClock;
#[cfg(feature = "alloc")]
pub use manual_clock::ManualSleep;
#[cfg(feature = "alloc")]
pub use model::{
    ModelConfigError, ModelPermit, ModelRateLimiter, ModelStats, OwnedModelPermit, RateLimitConfig,
    Usage,
};
pub use rate::Rate;
pub use refusal::Refusal;
pub use semaphore::{
    Acquire, AcquireFuture, AcquireMany, Permit, Semaphore, SemaphorePermit, TryAcquireError,
};
#[cfg(feature = "alloc")]
pub use semaphore::{AcquireManyOwned, AcquireOwned, OwnedSemaphorePermit};
pub use stream::{RejectedItem, StreamRateLimitExt, Throttle, ThrottleBy};
pub use time::{Clock, Instant, Timer};
#[allow(unused_imports)] // filled in by the window work
pub use window::*;
pub use wrap::{Call, Run};
