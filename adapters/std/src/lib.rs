//! tollgate for std threads: a fast monotonic [`StdClock`], the blocking [`RateLimiter`] and
//! the blocking [`ModelRateLimiter`].
//!
//! Everything in [`tollgate`] is re-exported, with the generic names specialised to the std
//! clock: `tollgate_std::AsyncRateLimiter` is `tollgate::AsyncRateLimiter<StdTimer>`, so
//! `AsyncRateLimiter::per_second(10)` needs no type parameter. The core's modules come along
//! too; [`limiter`] and [`model`] are the core's modules with the blocking types added.
//!
//! The blocking limiters add no accounting of their own. A blocking wait is never cancelled,
//! so [`RateLimiter`] reserves its tokens in the core's bucket and sleeps the thread until the
//! reservation's instant (arrival order across threads follows from the order of the
//! reservations). [`ModelRateLimiter`] builds the core's model futures and drives them on the
//! calling thread with [`block_on`] (park/unpark waker, `park_timeout` until the next
//! deadline). `block_on` is public so other blocking wrappers can do the same.
//!
//! ```
//! use tollgate_std::RateLimiter;
//!
//! let limiter = RateLimiter::per_second(10); // burst of 10, then one every 100 ms
//! for _ in 0..10 {
//!     limiter.acquire(); // the burst: no wait
//! }
//! assert!(limiter.try_acquire().is_err());
//! assert!(limiter.acquire_n(11).is_err()); // can never fit: fails at once
//! ```
//!
//! [`limit_rate`] (from `tollgate-macros`) rate-limits every call of a plain `fn`, blocking the
//! calling thread: `#[limit_rate(requests_per_second = 5)]` for its own limiter, or
//! `#[limit_rate(limiter = SHARED)]` to share a `static` [`RateLimiter`] between functions.
//!
//! # Feature flags
//!
//! From `Cargo.toml`, where each feature is declared:
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod block_on;
mod clock;
// Public under the core's module names: each is the core module plus its blocking types.
pub mod limiter;
pub mod model;
mod park;
mod timer;

pub use tollgate::*;

pub use block_on::block_on;
pub use clock::StdClock;
pub use limiter::RateLimiter;
pub use model::{ModelPermit, ModelRateLimiter};
pub use timer::{StdSleep, StdTimer};

#[doc(inline)]
pub use tollgate_macros::limit_rate_std as limit_rate;

tollgate::__adapter_aliases! {
    timer: StdTimer,
    flavor: blocking,
    alloc: [],
    /// Await it under [`block_on`] (or any executor, through the timer's helper thread).
    ///
    /// ```
    /// use tollgate_std::{block_on, AsyncRateLimiter};
    ///
    /// let limiter = AsyncRateLimiter::per_second(5);
    /// block_on(async {
    ///     limiter.acquire().await;
    ///     assert_eq!(limiter.available(), 4);
    /// });
    /// ```
    AsyncRateLimiter
}

#[cfg(test)]
mod tests {
    #[test]
    fn shared_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::RateLimiter>();
        check::<crate::AsyncRateLimiter>();
        check::<crate::StdSleep>();
        check::<crate::ModelRateLimiter>();
    }
}
