//! [`Permit`]: permits taken from a [`Semaphore`], one type for both ways of holding it
//! ([`SemaphorePermit`] borrows it, [`OwnedSemaphorePermit`] holds an `Arc`).

use core::fmt;
use core::ops::Deref;

#[cfg(feature = "alloc")]
use alloc::sync::Arc;

use super::{Holder, Semaphore};

/// Permits taken from a [`Semaphore`] held as `S`; dropping it gives them back (to the oldest
/// waiter first). Used through its two aliases, [`SemaphorePermit`] (borrowed) and
/// [`OwnedSemaphorePermit`] (an `Arc`, `'static`); everything but
/// [`semaphore`](OwnedSemaphorePermit::semaphore) works the same on both.
#[must_use = "the permits are released as soon as the permit is dropped"]
pub struct Permit<S: Deref<Target = Semaphore>> {
    sem: S,
    permits: usize,
}

/// Permits borrowed from a [`Semaphore`]; dropping it gives them back (to the oldest waiter
/// first).
///
/// ```
/// let sem = tollgate::Semaphore::new(2);
/// {
///     let _permit = sem.try_acquire_many(2).unwrap();
///     assert_eq!(sem.available_permits(), 0);
/// }
/// assert_eq!(sem.available_permits(), 2);
/// ```
pub type SemaphorePermit<'a> = Permit<&'a Semaphore>;

/// Permits from an `Arc<Semaphore>`: `'static`, for spawned tasks. Dropping it gives them
/// back (to the oldest waiter first).
///
/// ```
/// use std::sync::Arc;
/// use tollgate::Semaphore;
///
/// let sem = Arc::new(Semaphore::new(1));
/// let permit = sem.clone().try_acquire_owned().unwrap();
/// std::thread::spawn(move || drop(permit)).join().unwrap();
/// assert_eq!(sem.available_permits(), 1);
/// ```
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub type OwnedSemaphorePermit = Permit<Arc<Semaphore>>;

impl<S: Deref<Target = Semaphore>> Permit<S> {
    /// `permits` permits of `sem`, already taken from its pool.
    pub(super) fn new(sem: S, permits: usize) -> Self {
        Self { sem, permits }
    }

    /// How many permits this holds.
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(3);
    /// assert_eq!(sem.try_acquire_many(3).unwrap().num_permits(), 3);
    ///
    /// let sem = std::sync::Arc::new(tollgate::Semaphore::new(2));
    /// assert_eq!(sem.try_acquire_many_owned(2).unwrap().num_permits(), 2);
    /// ```
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// Destroys the permits instead of giving them back: the semaphore's
    /// [`capacity`](Semaphore::capacity) shrinks by [`num_permits`](Self::num_permits).
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(2);
    /// sem.try_acquire().unwrap().forget();
    /// assert_eq!((sem.available_permits(), sem.capacity()), (1, 1));
    ///
    /// let sem = std::sync::Arc::new(tollgate::Semaphore::new(2));
    /// sem.clone().try_acquire_owned().unwrap().forget();
    /// assert_eq!((sem.available_permits(), sem.capacity()), (1, 1));
    /// ```
    pub fn forget(mut self) {
        let n = core::mem::take(&mut self.permits);
        self.sem.forget_held(n);
    }

    /// Moves the permits of `other` into this one. Permits of one semaphore never sum past
    /// `usize::MAX` (its capacity saturates there), so this never overflows.
    ///
    /// # Panics
    ///
    /// If `other` comes from a different semaphore.
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(3);
    /// let mut a = sem.try_acquire().unwrap();
    /// a.merge(sem.try_acquire_many(2).unwrap());
    /// assert_eq!(a.num_permits(), 3);
    ///
    /// let sem = std::sync::Arc::new(tollgate::Semaphore::new(3));
    /// let mut a = sem.clone().try_acquire_owned().unwrap();
    /// a.merge(sem.clone().try_acquire_many_owned(2).unwrap());
    /// assert_eq!(a.num_permits(), 3);
    /// ```
    pub fn merge(&mut self, mut other: Self) {
        assert!(
            core::ptr::eq(&*self.sem, &*other.sem),
            "merging permits from different tollgate::Semaphores"
        );
        self.sem.merge_into(&mut self.permits, core::mem::take(&mut other.permits));
    }
}

impl<S: Deref<Target = Semaphore> + Clone> Permit<S> {
    /// Splits `n` permits off into a new permit, or returns `None` if this holds fewer.
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(3);
    /// let mut all = sem.try_acquire_many(3).unwrap();
    /// let one = all.split(1).unwrap();
    /// assert_eq!((all.num_permits(), one.num_permits()), (2, 1));
    /// drop(one);
    /// assert_eq!(sem.available_permits(), 1);
    ///
    /// let sem = std::sync::Arc::new(tollgate::Semaphore::new(3));
    /// let mut all = sem.try_acquire_many_owned(3).unwrap();
    /// let one = all.split(1).unwrap();
    /// assert_eq!((all.num_permits(), one.num_permits()), (2, 1));
    /// ```
    pub fn split(&mut self, n: usize) -> Option<Self> {
        self.permits = self.permits.checked_sub(n)?;
        Some(Self { sem: self.sem.clone(), permits: n })
    }
}

#[cfg(feature = "alloc")]
impl Permit<Arc<Semaphore>> {
    /// The semaphore these permits belong to.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let sem = Arc::new(tollgate::Semaphore::new(2));
    /// let permit = sem.clone().try_acquire_owned().unwrap();
    /// assert!(Arc::ptr_eq(permit.semaphore(), &sem));
    /// ```
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.sem
    }
}

impl<S: Deref<Target = Semaphore>> Drop for Permit<S> {
    fn drop(&mut self) {
        self.sem.release(self.permits);
    }
}

impl<S: Holder> fmt::Debug for Permit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(S::PERMIT).field("permits", &self.permits).finish()
    }
}

#[cfg(all(test, not(tollgate_loom)))]
mod tests {
    use super::*;

    /// The overflow branch of `merge` cannot be reached through the public API (free plus
    /// held permits equal the capacity, at most `usize::MAX`); forged counts show that, if it
    /// ever were, the permit keeps `usize::MAX` and the excess goes back to the semaphore.
    #[test]
    fn a_merge_past_usize_max_hands_the_excess_back() {
        let sem = Semaphore::new(0);
        let mut big = SemaphorePermit { sem: &sem, permits: usize::MAX - 2 };
        big.merge(SemaphorePermit { sem: &sem, permits: 5 });
        assert_eq!(big.num_permits(), usize::MAX);
        assert_eq!(sem.available_permits(), 3);
        big.forget();
        assert_eq!(sem.available_permits(), 3);
    }
}
