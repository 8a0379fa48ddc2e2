//! tollgate for embassy: an [`EmbassyTimer`] on `embassy-time`, `#![no_std]` and allocation-free.
//!
//! Everything in [`tollgate`] is re-exported, with the generic names specialised to embassy:
//! `tollgate_embassy::AsyncRateLimiter` is `tollgate::AsyncRateLimiter<EmbassyTimer>`. A limiter
//! lives happily in a `static`, shared by every task without `Arc` or a mutex:
//!
//! ```
//! use tollgate_embassy::{AsyncRateLimiter, EmbassyTimer, Rate};
//!
//! /// At most 5 radio packets per second, in bursts of up to 5.
//! static LIMITER: AsyncRateLimiter =
//!     AsyncRateLimiter::with_timer(Rate::per_second(5), 5, EmbassyTimer::new());
//!
//! async fn send_packet(packet: &[u8]) {
//!     LIMITER.acquire().await;
//!     // radio.send(packet).await;
//!     let _ = packet;
//! }
//! ```
//!
//! [`limit_rate`] (from `tollgate-macros`) rate-limits every call of an `async fn` with a
//! `static` limiter of its own (`#[limit_rate(requests_per_second = 5)]`) or a shared one
//! (`#[limit_rate(limiter = SHARED)]`); no allocator needed.
//!
//! # What the firmware provides
//!
//! This crate enables no `embassy-time` driver or tick-rate feature: like any embassy library
//! it leaves both to the binary. The firmware must
//!
//! - link exactly one time driver (your HAL's `time-driver-*` feature, e.g. `embassy-stm32`'s
//!   or `embassy-nrf`'s, or `embassy-time`'s `std`/`mock-driver` on a host), and
//! - pick the tick rate through that HAL or an `embassy-time/tick-hz-*` feature (1 MHz if
//!   none). Every rate works: conversions between ticks and nanoseconds are exact, and
//!   deadlines round *up* to the next tick, so a waiter never wakes early.
//!
//! On targets without 64-bit atomics (every Cortex-M, `riscv32imc`) each update of a bucket's
//! 64-bit state is one critical section, and the internal locks are `critical_section::Mutex`
//! everywhere without `std`: interrupt-safe, never a spin lock. So the firmware must provide a
//! `critical-section` implementation (embassy HALs do; on single-core Cortex-M,
//! `cortex-m/critical-section-single-core`). On targets without compare-and-swap (`thumbv6m`,
//! `riscv32imc`) also enable `tollgate`'s `critical-section` feature.
//!
//! # Feature flags
//!
//! From `Cargo.toml`, where each feature is declared:
#![doc = document_features::document_features!()]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod timer;

pub use tollgate::*;

pub use timer::{EmbassyClock, EmbassyTimer};

#[doc(inline)]
pub use tollgate_macros::limit_rate_embassy as limit_rate;

tollgate::__adapter_aliases! {
    timer: EmbassyTimer,
    flavor: async,
    alloc: [#[cfg(feature = "alloc")] #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]],
    /// `const`-constructible with [`with_timer`](tollgate::AsyncRateLimiter::with_timer) for a
    /// `static`, no allocator needed. `ModelRateLimiter`, its permits and `AcquireTokensOwned`
    /// need the `alloc` feature.
    AsyncRateLimiter
}

// Compiled on every target, thumbv7em included: a limiter can be a `static` (it is `Sync` and
// const-constructible there too, with the core's portable-atomic bucket).
const _: () = {
    #[allow(dead_code)]
    static LIMITER: AsyncRateLimiter =
        AsyncRateLimiter::with_timer(Rate::per_second(5), 5, EmbassyTimer::new());
};
