//! tollgate for tokio: a [`TokioTimer`] on `tokio::time` (so a paused tokio clock drives it)
//! and, with the `tower` feature, a `RateLimitLayer` whose services share one budget (with
//! `http`, an `http::HttpRateLimitLayer` for servers: per-client buckets, 429 answers).
//!
//! Everything in [`tollgate`] is re-exported, with the generic names specialised to tokio:
//! `tollgate_tokio::AsyncRateLimiter` is `tollgate::AsyncRateLimiter<TokioTimer>`.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tollgate_tokio::AsyncRateLimiter;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tollgate_tokio::Error> {
//! let limiter = Arc::new(AsyncRateLimiter::per_second(10)); // burst 10, then every 100 ms
//! let start = tokio::time::Instant::now();
//! for _ in 0..10 {
//!     limiter.acquire().await; // the burst: no wait
//! }
//! limiter.acquire_n(2).await?; // waits 200 ms
//! assert_eq!(start.elapsed(), Duration::from_millis(200));
//! assert!(limiter.try_acquire().is_err());
//! assert!(limiter.acquire_n(11).await.is_err()); // more than the burst: fails at once
//! # Ok(())
//! # }
//! ```
//!
//! [`limit_rate`] (from `tollgate-macros`) rate-limits every call of an `async fn`:
//! `#[limit_rate(requests_per_second = 5)]` for its own limiter, or
//! `#[limit_rate(limiter = SHARED)]` to share a `static` [`AsyncRateLimiter`] between functions.
//!
//! # Feature flags
//!
//! From `Cargo.toml`, where each feature is declared:
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod timer;
#[cfg(feature = "tower")]
mod tower;

pub use tollgate::*;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::HttpRateLimitLayer;
pub use timer::{TokioClock, TokioTimer};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use tower::{
    KeyedRateLimit, KeyedRateLimitLayer, KeyedResponseFuture, RateLimit, RateLimitLayer,
    RateLimited, ResponseFuture, WhenLimited,
};

#[doc(inline)]
pub use tollgate_macros::limit_rate_tokio as limit_rate;

tollgate::__adapter_aliases! {
    timer: TokioTimer,
    flavor: async,
    alloc: [],
    /// Share it with `Arc` or a `static`.
    ///
    /// ```
    /// use tollgate_tokio::{AsyncRateLimiter, Rate, TokioTimer};
    ///
    /// static LIMITER: AsyncRateLimiter =
    ///     AsyncRateLimiter::with_timer(Rate::per_second(5), 5, TokioTimer::new());
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// LIMITER.acquire().await;
    /// # }
    /// ```
    AsyncRateLimiter
}
