//! The futures of [`KeyedRateLimiter`]'s `acquire_*` methods: [`KeyedAcquire`] borrows the
//! limiter and the key, [`KeyedAcquireOwned`] owns an `Arc` of the limiter and the key. Both
//! decide at their first poll under the key's shard lock; a key that must wait is handed to
//! the one wait machine (`wait.rs`) through the key's own [`AsyncRateLimiter`]. A new key that
//! finds its shard full (a key cap) sleeps on the limiter's timer until there could be room,
//! then decides again.

use alloc::borrow::ToOwned;
use alloc::sync::Arc;
use core::borrow::Borrow;
use core::fmt;
use core::future::Future;
use core::hash::{BuildHasher, Hash};
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::{Begin, KeyedRateLimiter};
use crate::acquire::borrow_for_static;
use crate::limiter::AcquireTokensOwned;
use crate::wait::Limit;
use crate::{Error, Timer};

pin_project! {
    /// What both futures share: the request, a sleep while the key's shard has no room, and
    /// once the key has to wait for tokens, the key's wait.
    struct KeyedWait<'a, T>
    where
        T: Timer,
        T: 'static,
    {
        n: u64,
        // Relative at first; absolute from the first decision on, so that waiting for room
        // does not stretch the bound.
        limit: Limit,
        done: bool,
        #[pin]
        room: Option<T::Sleep<'a>>,
        #[pin]
        wait: Option<AcquireTokensOwned<T>>,
    }
}

impl<'a, T: Timer + 'static> KeyedWait<'a, T> {
    fn new(n: u64, limit: Limit) -> Self {
        Self { n, limit, done: false, room: None, wait: None }
    }

    /// Polls the wait; `begin` decides under the shard lock at the first poll and after each
    /// sleep for room.
    fn poll_with(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        timer: &'a T,
        mut begin: impl FnMut(u64, Limit) -> Begin<T>,
    ) -> Poll<Result<(), Error>> {
        let mut this = self.project();
        if let Some(wait) = this.wait.as_mut().as_pin_mut() {
            return wait.poll(cx);
        }
        // As an `async fn` does: a second answer could only be a wrong one.
        assert!(!*this.done, "tollgate: a keyed wait was polled after it completed");
        loop {
            if let Some(room) = this.room.as_mut().as_pin_mut() {
                ready!(room.poll(cx));
                this.room.set(None);
            }
            match begin(*this.n, *this.limit) {
                Begin::Done(outcome) => {
                    *this.done = true;
                    return Poll::Ready(outcome);
                }
                Begin::Wait(limiter, limit) => {
                    this.wait.set(Some(AcquireTokensOwned::new(limiter, *this.n, limit)));
                    return match this.wait.as_pin_mut() {
                        Some(wait) => wait.poll(cx),
                        None => unreachable!("set just above"),
                    };
                }
                Begin::Room(until, limit) => {
                    *this.limit = limit;
                    this.room.set(Some(timer.sleep_until(until)));
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
        wait: KeyedWait<'a, T>,
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
        this.wait.poll_with(cx, limiter.timer(), |n, limit| limiter.begin(key, n, limit))
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
        // Declared before `limiter`, so it is dropped first: its sleep for room borrows the
        // limiter's timer.
        #[pin]
        wait: KeyedWait<'static, T>,
        // Borrowed as `'static` by `poll` (see there); never replaced or handed out.
        limiter: Arc<KeyedRateLimiter<K, T, S>>,
        key: K,
    }
}

impl<K, T: Timer + 'static, S> KeyedAcquireOwned<K, T, S> {
    pub(super) fn new(
        limiter: Arc<KeyedRateLimiter<K, T, S>>,
        key: K,
        n: u64,
        limit: Limit,
    ) -> Self {
        Self { wait: KeyedWait::new(n, limit), limiter, key }
    }

    /// The key this waits for.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The limiter this waits on (whose clock a refusal's instant is on).
    pub fn limiter(&self) -> &Arc<KeyedRateLimiter<K, T, S>> {
        &self.limiter
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
        // SAFETY: the timer is in the allocation of `limiter`'s `Arc`; the sleep in `wait`
        // that borrows it is dropped first (field order), and the `Arc` is never replaced.
        let timer = unsafe { borrow_for_static(limiter.timer()) };
        this.wait.poll_with(cx, timer, |n, limit| limiter.begin(key, n, limit))
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
