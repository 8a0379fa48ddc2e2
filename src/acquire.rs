//! The named futures of [`AsyncRateLimiter`]'s `acquire_*` methods: [`AcquireTokens`] borrows
//! the limiter, [`AcquireTokensOwned`] holds it in an `Arc` (for spawned tasks and tower
//! services). Both are thin shells around the one wait machine in `wait.rs`.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

#[cfg(feature = "alloc")]
use alloc::sync::Arc;

use pin_project_lite::pin_project;

use crate::wait::{Limit, TokenWait};
use crate::{AsyncRateLimiter, Error, Timer};

pin_project! {
    /// Future of [`AsyncRateLimiter::acquire_n`] and its bounded forms: `Ok(())` once the
    /// tokens are taken.
    ///
    /// # Cancel safety
    /// Dropping it at any point costs nothing: it leaves the waiting line and gives back any
    /// reservation it held.
    #[must_use = "futures do nothing unless polled"]
    pub struct AcquireTokens<'a, T: Timer> {
        #[pin]
        wait: TokenWait<'a, T>,
    }
}

impl<'a, T: Timer + 'a> AcquireTokens<'a, T> {
    pub(crate) fn new(limiter: &'a AsyncRateLimiter<T>, n: u64, limit: Limit) -> Self {
        Self { wait: TokenWait::new(limiter, n, limit) }
    }
}

impl<'a, T: Timer + 'a> Future for AcquireTokens<'a, T> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().wait.poll_wait(cx)
    }
}

impl<T: Timer> fmt::Debug for AcquireTokens<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireTokens").field("wait", &self.wait).finish()
    }
}

#[cfg(feature = "alloc")]
pin_project! {
    /// Future of [`AsyncRateLimiter::acquire_n_owned`] and its bounded forms: as
    /// [`AcquireTokens`], holding the limiter's `Arc`, so it is `'static`.
    ///
    /// # Cancel safety
    /// As [`AcquireTokens`].
    #[must_use = "futures do nothing unless polled"]
    pub struct AcquireTokensOwned<T>
    where
        T: Timer,
        T: 'static,
    {
        // Declared before `limiter`, so it is dropped first: it borrows from it.
        #[pin]
        wait: TokenWait<'static, T>,
        limiter: Arc<AsyncRateLimiter<T>>,
    }
}

/// The `'static` borrow that an owned future or stream takes of something inside the
/// allocation of an `Arc` it owns (a wait borrows the limiter, or a sleep the limiter's
/// timer; the owned forms hold the limiter's `Arc` beside it). The one place this is written;
/// every owner states at its call how it keeps the rules.
///
/// # Safety
/// `inside` must point into the allocation of an `Arc` the caller owns, and the result must
/// not be used once that `Arc` is dropped. Owners keep the reference (or what borrows through
/// it) in a private field declared *before* the field holding the `Arc`, so it is dropped
/// first; they never replace that `Arc` or give it away; and nothing they return borrows from
/// the reference. The allocation is on the heap, so it does not move when the owner does.
#[cfg(feature = "alloc")]
pub(crate) unsafe fn borrow_for_static<X: ?Sized>(inside: &X) -> &'static X {
    // SAFETY: the caller keeps the reference from outliving the allocation (above).
    unsafe { &*(inside as *const X) }
}

#[cfg(feature = "alloc")]
impl<T: Timer + 'static> AcquireTokensOwned<T> {
    pub(crate) fn new(limiter: Arc<AsyncRateLimiter<T>>, n: u64, limit: Limit) -> Self {
        // SAFETY: `wait` is dropped before `limiter` (field order), which this future never
        // replaces or hands out; the output borrows nothing.
        let borrowed = unsafe { borrow_for_static(&*limiter) };
        Self { wait: TokenWait::new(borrowed, n, limit), limiter }
    }

    /// The limiter this waits on.
    pub fn limiter(&self) -> &Arc<AsyncRateLimiter<T>> {
        &self.limiter
    }
}

#[cfg(feature = "alloc")]
impl<T: Timer + 'static> Future for AcquireTokensOwned<T> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().wait.poll_wait(cx)
    }
}

#[cfg(feature = "alloc")]
impl<T: Timer + 'static> fmt::Debug for AcquireTokensOwned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireTokensOwned").field("wait", &self.wait).finish()
    }
}
