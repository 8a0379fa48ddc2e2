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

#[cfg(feature = "alloc")]
impl<T: Timer + 'static> AcquireTokensOwned<T> {
    pub(crate) fn new(limiter: Arc<AsyncRateLimiter<T>>, n: u64, limit: Limit) -> Self {
        // SAFETY: the limiter lives on the heap behind `limiter`, which this future owns and
        // never hands out or replaces, so the pointee outlives `wait` (dropped first, by field
        // order) and does not move when the future does. The `'static` reference never leaves
        // this type: `wait` is private and the output borrows nothing.
        let borrowed: &'static AsyncRateLimiter<T> = unsafe { &*Arc::as_ptr(&limiter) };
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
