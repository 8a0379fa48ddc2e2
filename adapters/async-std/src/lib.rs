//! tollgate for async-std and smol: an [`AsyncIoTimer`] on `async-io`, the timer both
//! runtimes use.
//!
//! async-std itself is discontinued (RUSTSEC-2025-0052), so this crate depends only on
//! `async-io`; it works the same under async-std, smol, or any executor.
//!
//! Everything in [`tollgate`] is re-exported, with the generic names specialised to this
//! timer: `tollgate_async_std::AsyncRateLimiter` is `tollgate::AsyncRateLimiter<AsyncIoTimer>`.
//!
//! ```
//! use tollgate_async_std::AsyncRateLimiter;
//!
//! let limiter = AsyncRateLimiter::per_second(100); // burst 100, then one every 10 ms
//! smol::block_on(async {
//!     for _ in 0..100 {
//!         limiter.acquire().await; // the burst: no wait
//!     }
//!     limiter.acquire().await; // about 10 ms
//!     assert!(limiter.acquire_n(101).await.is_err()); // more than the burst: fails at once
//! });
//! ```
//!
//! [`limit_rate`] (from `tollgate-macros`) rate-limits every call of an `async fn`:
//! `#[limit_rate(requests_per_second = 5)]` for its own limiter, or
//! `#[limit_rate(limiter = SHARED)]` to share a `static` [`AsyncRateLimiter`] between functions.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod timer;

pub use tollgate::*;

pub use timer::{AsyncIoClock, AsyncIoSleep, AsyncIoTimer};

#[doc(inline)]
pub use tollgate_macros::limit_rate_async_std as limit_rate;

tollgate::__adapter_aliases! {
    timer: AsyncIoTimer,
    flavor: async,
    alloc: [],
    /// Share it with `Arc` or a `static`.
    ///
    /// ```
    /// use tollgate_async_std::{AsyncIoTimer, AsyncRateLimiter, Rate};
    ///
    /// static LIMITER: AsyncRateLimiter =
    ///     AsyncRateLimiter::with_timer(Rate::per_second(5), 5, AsyncIoTimer::new());
    /// async_std::task::block_on(LIMITER.acquire());
    /// ```
    AsyncRateLimiter
}
