//! [`AcquireFuture`]: the one future behind `acquire`, `acquire_many` and their `_owned` forms,
//! generic over how the semaphore is held and over whether it may fail for capacity.

use core::fmt;
use core::future::Future;
use core::ops::Deref;
use core::pin::Pin;
use core::task::{Context, Poll};

#[cfg(feature = "alloc")]
use alloc::sync::Arc;

use super::waiter::Waiter;
use super::{Holder, Permit, Semaphore};
use crate::error::Error;

/// Future of the `acquire*` methods of [`Semaphore`], held as `S`. With `MANY == false` it
/// waits for one permit and cannot fail; with `MANY == true` it waits for `n` permits at once
/// and fails with [`Error::InsufficientCapacity`] if they exceed the capacity. Used through its
/// four aliases: [`Acquire`], [`AcquireMany`], [`AcquireOwned`], [`AcquireManyOwned`].
#[must_use = "futures do nothing unless polled"]
pub struct AcquireFuture<S: Deref<Target = Semaphore>, const MANY: bool> {
    waiter: Waiter<S>,
}

/// Future of [`Semaphore::acquire`]: one permit.
pub type Acquire<'a> = AcquireFuture<&'a Semaphore, false>;

/// Future of [`Semaphore::acquire_many`]: `n` permits at once, or
/// [`Error::InsufficientCapacity`].
pub type AcquireMany<'a> = AcquireFuture<&'a Semaphore, true>;

/// Future of [`Semaphore::acquire_owned`]: one permit, holding the `Arc`.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub type AcquireOwned = AcquireFuture<Arc<Semaphore>, false>;

/// Future of [`Semaphore::acquire_many_owned`]: `n` permits at once, holding the `Arc`.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub type AcquireManyOwned = AcquireFuture<Arc<Semaphore>, true>;

impl<S: Deref<Target = Semaphore>, const MANY: bool> AcquireFuture<S, MANY> {
    /// Waits on `sem` for `n` permits; only `MANY` futures may be failed for capacity.
    pub(super) fn new(sem: S, n: usize) -> Self {
        Self { waiter: Waiter::new(sem, n, MANY) }
    }
}

impl<S: Deref<Target = Semaphore> + Clone, const MANY: bool> AcquireFuture<S, MANY> {
    /// The permits this future was granted, once `poll_wait` said `Ok(())`.
    fn permit(&self) -> Permit<S> {
        Permit::new(self.waiter.sem.clone(), self.waiter.node.needed)
    }
}

impl<S: Deref<Target = Semaphore> + Clone> Future for AcquireFuture<S, false> {
    type Output = Permit<S>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit<S>> {
        let this = self.into_ref().get_ref();
        this.waiter.poll_wait(cx).map(|result| {
            // `acquire` is not fallible: it is never failed for capacity.
            debug_assert!(result.is_ok());
            this.permit()
        })
    }
}

impl<S: Deref<Target = Semaphore> + Clone> Future for AcquireFuture<S, true> {
    type Output = Result<Permit<S>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.into_ref().get_ref();
        this.waiter.poll_wait(cx).map_ok(|()| this.permit())
    }
}

impl<S: Holder, const MANY: bool> fmt::Debug for AcquireFuture<S, MANY> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if MANY {
            f.debug_struct(S::ACQUIRE_MANY).field("permits", &self.waiter.node.needed).finish()
        } else {
            f.debug_struct(S::ACQUIRE).finish_non_exhaustive()
        }
    }
}
