//! The futures of [`KeyedRateLimiter`]'s `acquire_*` methods: [`KeyedAcquire`] borrows the
//! limiter and the key, [`KeyedAcquireOwned`] owns an `Arc` of the limiter and the key. Both
//! decide at their first poll under the key's shard lock; a key that must wait is handed to
//! the one wait machine (`wait.rs`) through the key's own [`AsyncRateLimiter`].

use alloc::borrow::ToOwned;
use alloc::sync::Arc;
use core::borrow::Borrow;
use core::fmt;
use core::future::Future;
use core::hash::{BuildHasher, Hash};
use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::{Begin, KeyedRateLimiter};
use crate::limiter::AcquireTokensOwned;
use crate::wait::Limit;
use crate::{Error, Timer};

pin_project! {
    /// What both futures share: the request, and once it has to wait, the key's wait.
    struct KeyedWait<T>
    where
        T: Timer,
        T: 'static,
    {
        n: u64,
        limit: Limit,
        started: bool,
        #[pin]
        wait: Option<AcquireTokensOwned<T>>,
    }
}

impl<T: Timer + 'static> KeyedWait<T> {
    fn new(n: u64, limit: Limit) -> Self {
        Self { n, limit, started: false, wait: None }
    }

    /// Polls the wait; at the first poll `begin` decides under the shard lock.
    fn poll_with(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        begin: impl FnOnce(u64, Limit) -> Begin<T>,
    ) -> Poll<Result<(), Error>> {
        let mut this = self.project();
        if let Some(wait) = this.wait.as_mut().as_pin_mut() {
            return wait.poll(cx);
        }
        // As an `async fn` does: a second answer could only be a wrong one.
        assert!(!*this.started, "tollgate: a keyed wait was polled after it completed");
        *this.started = true;
        match begin(*this.n, *this.limit) {
            Begin::Done(outcome) => Poll::Ready(outcome),
            Begin::Wait(limiter, limit) => {
                this.wait.set(Some(AcquireTokensOwned::new(limiter, *this.n, limit)));
                match this.wait.as_pin_mut() {
                    Some(wait) => wait.poll(cx),
                    None => unreachable!("set just above"),
                }
            }
        }
    }
}

pin_project! {
    /// Future of [`KeyedRateLimiter::acquire_n`] and its bounded forms: `Ok(())` once the
    /// key's tokens are taken.
    ///
    /// # Cancel safety
    /// Dropping it at any point costs nothing: it leaves the key's line and gives back any
    /// reservation it held.
    #[must_use = "futures do nothing unless polled"]
    pub struct KeyedAcquire<'a, K, Q, T, S>
    where
        Q: ?Sized,
        T: Timer,
        T: 'static,
    {
        limiter: &'a KeyedRateLimiter<K, T, S>,
        key: &'a Q,
        #[pin]
        wait: KeyedWait<T>,
    }
}

impl<'a, K, Q, T, S> KeyedAcquire<'a, K, Q, T, S>
where
    Q: ?Sized,
    T: Timer + 'static,
{
    pub(super) fn new(
        limiter: &'a KeyedRateLimiter<K, T, S>,
        key: &'a Q,
        n: u64,
        limit: Limit,
    ) -> Self {
        Self { limiter, key, wait: KeyedWait::new(n, limit) }
    }
}

impl<K, Q, T, S> Future for KeyedAcquire<'_, K, Q, T, S>
where
    K: Hash + Eq + Borrow<Q>,
    Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    T: Timer + Clone + 'static,
    S: BuildHasher,
{
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (limiter, key) = (*this.limiter, *this.key);
        this.wait.poll_with(cx, |n, limit| limiter.begin(key, n, limit))
    }
}

impl<K, Q: ?Sized, T: Timer + 'static, S> fmt::Debug for KeyedAcquire<'_, K, Q, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAcquire")
            .field("n", &self.wait.n)
            .field("waiting", &self.wait.wait.is_some())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Future of [`KeyedRateLimiter::acquire_n_owned`] and its bounded forms: as
    /// [`KeyedAcquire`], owning the limiter's `Arc` and the key, so it is `'static`.
    ///
    /// # Cancel safety
    /// As [`KeyedAcquire`].
    #[must_use = "futures do nothing unless polled"]
    pub struct KeyedAcquireOwned<K, T, S>
    where
        T: Timer,
        T: 'static,
    {
        limiter: Arc<KeyedRateLimiter<K, T, S>>,
        key: K,
        #[pin]
        wait: KeyedWait<T>,
    }
}

impl<K, T: Timer + 'static, S> KeyedAcquireOwned<K, T, S> {
    pub(super) fn new(
        limiter: Arc<KeyedRateLimiter<K, T, S>>,
        key: K,
        n: u64,
        limit: Limit,
    ) -> Self {
        Self { limiter, key, wait: KeyedWait::new(n, limit) }
    }

    /// The key this waits for.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<K, T, S> Future for KeyedAcquireOwned<K, T, S>
where
    K: Hash + Eq + Clone,
    T: Timer + Clone + 'static,
    S: BuildHasher,
{
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (limiter, key) = (&**this.limiter, &*this.key);
        this.wait.poll_with(cx, |n, limit| limiter.begin(key, n, limit))
    }
}

impl<K, T: Timer + 'static, S> fmt::Debug for KeyedAcquireOwned<K, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAcquireOwned")
            .field("n", &self.wait.n)
            .field("waiting", &self.wait.wait.is_some())
            .finish_non_exhaustive()
    }
}
