//! [`Semaphore`]: a fair (FIFO), waker-based, allocation-free async semaphore for "at most N
//! at once" limits such as max parallel requests.
//!
//! # How it works
//!
//! The permit count and a doubly-linked list of waiters live behind one short lock (the crate's
//! sync facade: `std` mutex, `critical-section`, or loom). The list nodes are not
//! allocated: each one lives *inside* its pinned acquire future, which links itself at the tail
//! when it has to wait and unlinks itself when dropped. That is why the semaphore needs no
//! allocator and can sit in a `static`.
//!
//! Permits are *handed off*: whoever returns permits (a dropped permit, [`add_permits`]) assigns
//! them to waiters from the head of the queue while they fit, marks those waiters granted and
//! wakes them after unlocking. A woken future finds its permits already assigned, so there is
//! no thundering herd and no window in which a newcomer could barge in. Waiting is strictly
//! FIFO: a request for many permits blocks later small ones until it is served (head-of-line
//! blocking is the price of never starving large requests).
//!
//! # Implementation details
//!
//! Three layers, one job per file:
//!
//! - `list.rs`: the intrusive list (`WaitList`, and `NodeCell`, the node inside each future);
//!   raw links followed only under the lock.
//! - `waiter.rs`: the state machine of one waiter (`Waiter<S>`, generic over how the semaphore
//!   is held): every phase change — polled (`Idle` → `Queued`, or straight to `Done`), served
//!   or failed by the hand-off (`Queued` → `Granted` / `Failed`), completed, or cancelled by
//!   `Drop` — happens under the lock in that file.
//! - this file, `acquire.rs` and `permit.rs`: the public API. The four acquire futures are one
//!   [`AcquireFuture`] and the two permit types are one [`Permit`], each generic over
//!   `&Semaphore` / `Arc<Semaphore>`; they differ only in `Debug` names (`Holder`).
//!
//! # Memory ordering
//!
//! There are no atomics: the counts, the list and every node's phase and waker are read and
//! written only under the one lock, whose acquire/release orders them. A woken future reads
//! `Granted` under the same lock the hand-off wrote it under, so the permits it takes were
//! counted out before it sees them.
//!
//! # Cancel safety
//!
//! Every acquire future is cancel safe. Dropping it while it waits unlinks it and re-runs the
//! hand-off (if it was first in line, the next waiter may fit now); dropping it after permits
//! were assigned to it but before it saw them gives them to the next waiter. Nothing leaks and
//! no waiter is left asleep while permits it could take are free.
//!
//! [`add_permits`]: Semaphore::add_permits

mod acquire;
mod list;
mod permit;
mod waiter;

use core::fmt;

#[cfg(feature = "alloc")]
use alloc::sync::Arc;

pub use acquire::{Acquire, AcquireFuture, AcquireMany};
#[cfg(feature = "alloc")]
pub use acquire::{AcquireManyOwned, AcquireOwned};
#[cfg(feature = "alloc")]
pub use permit::OwnedSemaphorePermit;
pub use permit::{Permit, SemaphorePermit};

use crate::error::Error;
use crate::sync::{Mutex, const_fn};
use list::WaitList;
use waiter::WakeList;

/// A fair async semaphore: up to `capacity` permits out at once, waiters served strictly in
/// arrival order.
///
/// * **FIFO, no barging.** A released permit goes to the oldest waiter. [`try_acquire`] fails
///   while anyone is queued, even if permits are free, and a waiter asking for many permits is
///   never overtaken by later small requests.
/// * **Runtime-agnostic.** Waiting is plain [`Waker`]s; any executor drives it.
/// * **No allocation.** Waiters are linked through their own futures, so a semaphore can be a
///   `static` on a microcontroller. With `alloc`, the `*_owned` methods give `'static` permits
///   for spawned tasks.
/// * **Cancel safe.** Dropping an acquire future at any point gives back whatever it held and
///   passes freed permits on to the next waiter.
///
/// ```
/// use tollgate::Semaphore;
///
/// static PARALLEL: Semaphore = Semaphore::new(2);
///
/// futures_executor::block_on(async {
///     let a = PARALLEL.acquire().await;
///     let b = PARALLEL.acquire().await;
///     assert_eq!(PARALLEL.available_permits(), 0);
///     assert!(PARALLEL.try_acquire().is_err());
///     drop(a); // returns its permit
///     let _c = PARALLEL.acquire().await;
///     drop(b);
/// });
/// ```
///
/// [`try_acquire`]: Semaphore::try_acquire
/// [`Waker`]: core::task::Waker
pub struct Semaphore {
    state: Mutex<State>,
}

/// Everything the lock protects.
struct State {
    /// Permits free right now.
    permits: usize,
    /// Permits in existence: free plus held (created + added − forgotten).
    capacity: usize,
    /// The queued acquire futures, oldest first.
    waiters: WaitList,
}

mod holder {
    /// How a permit or acquire future holds its [`Semaphore`](super::Semaphore): borrowed or
    /// in an `Arc`. Names the public types in `Debug` output. Sealed: implemented for the two
    /// handles the semaphore hands out, and nameable by no one outside the crate.
    pub trait Holder: core::ops::Deref<Target = super::Semaphore> {
        /// `Debug` name of [`Permit<Self>`](super::Permit).
        const PERMIT: &'static str;
        /// `Debug` name of the one-permit [`AcquireFuture`](super::AcquireFuture).
        const ACQUIRE: &'static str;
        /// `Debug` name of the many-permit [`AcquireFuture`](super::AcquireFuture).
        const ACQUIRE_MANY: &'static str;
    }
}
use holder::Holder;

impl Holder for &Semaphore {
    const PERMIT: &'static str = "SemaphorePermit";
    const ACQUIRE: &'static str = "Acquire";
    const ACQUIRE_MANY: &'static str = "AcquireMany";
}

#[cfg(feature = "alloc")]
impl Holder for Arc<Semaphore> {
    const PERMIT: &'static str = "OwnedSemaphorePermit";
    const ACQUIRE: &'static str = "AcquireOwned";
    const ACQUIRE_MANY: &'static str = "AcquireManyOwned";
}

impl Semaphore {
    const_fn! {
        /// A semaphore with `permits` permits, all free.
        ///
        /// `const`, so it can initialise a `static`:
        ///
        /// ```
        /// static RADIO: tollgate::Semaphore = tollgate::Semaphore::new(1);
        /// assert_eq!(RADIO.available_permits(), 1);
        /// ```
        pub fn new(permits: usize) -> Self {
            Self {
                state: Mutex::new(State { permits, capacity: permits, waiters: WaitList::new() }),
            }
        }
    }

    /// Permits free right now (waiters may already be queued for them).
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(3);
    /// let _p = sem.try_acquire_many(2).unwrap();
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    pub fn available_permits(&self) -> usize {
        self.state.with(|s| s.permits)
    }

    /// Permits in existence, free or held: those the semaphore was created with, plus
    /// [`add_permits`](Semaphore::add_permits), minus forgotten ones
    /// ([`SemaphorePermit::forget`], [`forget_permits`](Semaphore::forget_permits)).
    /// [`acquire_many`](Semaphore::acquire_many) refuses requests larger than this.
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(3);
    /// sem.add_permits(2);
    /// sem.try_acquire().unwrap().forget();
    /// assert_eq!(sem.capacity(), 4);
    /// ```
    pub fn capacity(&self) -> usize {
        self.state.with(|s| s.capacity)
    }

    /// How many acquire futures are queued (polled, not yet served, not dropped).
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(0);
    /// assert_eq!(sem.waiters(), 0);
    /// ```
    pub fn waiters(&self) -> usize {
        self.state.with(|s| s.waiters.len())
    }

    /// Adds `n` permits and hands them to queued waiters in order. The
    /// [`capacity`](Semaphore::capacity) saturates at `usize::MAX`: only the permits that fit
    /// under it are added.
    ///
    /// So free plus held permits always equal the capacity, and no set of permits ever sums
    /// past `usize::MAX` (which [`SemaphorePermit::merge`] relies on). Adding permits beyond the
    /// capacity while it was saturated used to put more than `usize::MAX` permits out.
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(0);
    /// sem.add_permits(2);
    /// assert_eq!(sem.available_permits(), 2);
    /// assert_eq!(sem.capacity(), 2);
    /// ```
    pub fn add_permits(&self, n: usize) {
        self.update(false, |s| {
            // `permits <= capacity`, so adding what fits under the capacity cannot overflow.
            let added = n.min(usize::MAX - s.capacity);
            s.permits += added;
            s.capacity += added;
        });
    }

    /// Removes up to `n` *free* permits for good and returns how many were removed; the
    /// capacity shrinks by as much. Held permits are untouched (forget them with
    /// [`SemaphorePermit::forget`] to shrink further). Queued
    /// [`acquire_many`](Semaphore::acquire_many) requests that no longer fit the capacity fail
    /// with [`Error::InsufficientCapacity`] rather than wait forever.
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(5);
    /// assert_eq!(sem.forget_permits(3), 3);
    /// assert_eq!(sem.forget_permits(3), 2);
    /// assert_eq!(sem.capacity(), 0);
    /// ```
    pub fn forget_permits(&self, n: usize) -> usize {
        self.update(true, |s| {
            let removed = n.min(s.permits);
            s.permits -= removed;
            s.capacity -= removed;
            removed
        })
    }

    /// Takes one permit if one is free *and nobody is queued*; never waits.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::NoPermits`] if no permit is free or waiters are queued (they come
    /// first).
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(1);
    /// let permit = sem.try_acquire().unwrap();
    /// assert!(sem.try_acquire().is_err());
    /// drop(permit);
    /// assert!(sem.try_acquire().is_ok());
    /// ```
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        // One permit may be added later even at capacity 0, so this is never `InsufficientCapacity`,
        // matching `acquire`, which waits.
        self.try_take(1, false).map(|permits| Permit::new(self, permits))
    }

    /// Takes `n` permits if they are free *and nobody is queued*; never waits. `n == 0`
    /// always succeeds.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::InsufficientCapacity`] if `n` exceeds the [`capacity`](Semaphore::capacity);
    /// [`TryAcquireError::NoPermits`] if too few are free or waiters are queued.
    ///
    /// ```
    /// use tollgate::Semaphore;
    /// use tollgate::semaphore::TryAcquireError;
    ///
    /// let sem = Semaphore::new(3);
    /// let two = sem.try_acquire_many(2).unwrap();
    /// assert_eq!(two.num_permits(), 2);
    /// assert_eq!(sem.try_acquire_many(2).unwrap_err(), TryAcquireError::NoPermits);
    /// assert_eq!(
    ///     sem.try_acquire_many(4).unwrap_err(),
    ///     TryAcquireError::InsufficientCapacity { requested: 4, capacity: 3 },
    /// );
    /// ```
    pub fn try_acquire_many(&self, n: usize) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_take(n, true).map(|permits| Permit::new(self, permits))
    }

    /// Waits for one permit, behind everyone already queued.
    ///
    /// Never fails: at capacity 0 it waits for [`add_permits`](Semaphore::add_permits).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropping the future while it waits removes it from the queue (and, if it
    /// was first in line, passes any free permits on to the next waiter); dropping it after
    /// permits were assigned to it but before it was polled again returns them. Either way
    /// it loses its place in the queue.
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(1);
    /// let permit = futures_executor::block_on(sem.acquire());
    /// assert_eq!(permit.num_permits(), 1);
    /// ```
    pub fn acquire(&self) -> Acquire<'_> {
        AcquireFuture::new(self, 1)
    }

    /// Waits for `n` permits at once, behind everyone already queued; later requests wait
    /// behind it, however small. `n == 0` completes at once.
    ///
    /// # Errors
    ///
    /// [`Error::InsufficientCapacity`] if `n` exceeds the [`capacity`](Semaphore::capacity)
    /// when first polled (or the capacity later shrinks below `n` while it waits): it could
    /// never be served, so it fails instead of hanging.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`acquire`](Semaphore::acquire): a dropped future never keeps or
    /// leaks permits, and never leaves the next waiter asleep with permits free.
    ///
    /// ```
    /// use tollgate::{Error, Semaphore};
    ///
    /// let sem = Semaphore::new(4);
    /// futures_executor::block_on(async {
    ///     let three = sem.acquire_many(3).await.unwrap();
    ///     assert_eq!(three.num_permits(), 3);
    ///     assert_eq!(
    ///         sem.acquire_many(5).await.unwrap_err(),
    ///         Error::InsufficientCapacity { requested: 5, capacity: 4 },
    ///     );
    /// });
    /// ```
    pub fn acquire_many(&self, n: usize) -> AcquireMany<'_> {
        AcquireFuture::new(self, n)
    }

    /// [`try_acquire`](Semaphore::try_acquire) for an `Arc`ed semaphore: the permit holds the
    /// `Arc` and is `'static`.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Semaphore::try_acquire).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate::Semaphore;
    ///
    /// let sem = Arc::new(Semaphore::new(1));
    /// let permit = sem.clone().try_acquire_owned().unwrap();
    /// assert!(sem.clone().try_acquire_owned().is_err());
    /// drop(permit);
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        let permits = self.try_take(1, false)?;
        Ok(Permit::new(self, permits))
    }

    /// [`try_acquire_many`](Semaphore::try_acquire_many) for an `Arc`ed semaphore: the permit
    /// holds the `Arc` and is `'static`.
    ///
    /// # Errors
    ///
    /// As [`try_acquire_many`](Semaphore::try_acquire_many).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate::Semaphore;
    ///
    /// let sem = Arc::new(Semaphore::new(3));
    /// let permit = sem.clone().try_acquire_many_owned(3).unwrap();
    /// assert_eq!(permit.num_permits(), 3);
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    pub fn try_acquire_many_owned(
        self: Arc<Self>,
        n: usize,
    ) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        let permits = self.try_take(n, true)?;
        Ok(Permit::new(self, permits))
    }

    /// [`acquire`](Semaphore::acquire) for an `Arc`ed semaphore: the future and the permit
    /// hold the `Arc` and are `'static`, for spawned tasks.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`acquire`](Semaphore::acquire).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate::Semaphore;
    ///
    /// let sem = Arc::new(Semaphore::new(1));
    /// let permit = futures_executor::block_on(sem.clone().acquire_owned());
    /// assert_eq!(sem.available_permits(), 0);
    /// drop(permit);
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    pub fn acquire_owned(self: Arc<Self>) -> AcquireOwned {
        AcquireFuture::new(self, 1)
    }

    /// [`acquire_many`](Semaphore::acquire_many) for an `Arc`ed semaphore: the future and the
    /// permit hold the `Arc` and are `'static`, for spawned tasks.
    ///
    /// # Errors
    ///
    /// As [`acquire_many`](Semaphore::acquire_many).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`acquire`](Semaphore::acquire).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate::Semaphore;
    ///
    /// let sem = Arc::new(Semaphore::new(4));
    /// let permit = futures_executor::block_on(sem.clone().acquire_many_owned(4)).unwrap();
    /// assert_eq!(permit.num_permits(), 4);
    /// ```
    #[cfg(feature = "alloc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
    pub fn acquire_many_owned(self: Arc<Self>, n: usize) -> AcquireManyOwned {
        AcquireFuture::new(self, n)
    }

    /// The non-waiting path shared by every `try_acquire*`: barging past queued waiters is
    /// exactly what FIFO forbids, so a non-empty queue means no.
    fn try_take(&self, n: usize, fallible: bool) -> Result<usize, TryAcquireError> {
        if n == 0 {
            return Ok(0);
        }
        self.state.with(|s| {
            if fallible && n > s.capacity {
                let (requested, capacity) = waiter::widen(n, s.capacity);
                Err(TryAcquireError::InsufficientCapacity { requested, capacity })
            } else if s.waiters.is_empty() && s.permits >= n {
                s.permits -= n;
                Ok(n)
            } else {
                Err(TryAcquireError::NoPermits)
            }
        })
    }

    /// Adds `n` permits of this semaphore to a permit holding `held`, losslessly.
    ///
    /// Free plus held permits always equal the capacity, at most `usize::MAX` (see
    /// [`add_permits`](Semaphore::add_permits)), so two permits never sum past it and the
    /// overflow branch is unreachable. Should it ever be reached, the permit keeps
    /// `usize::MAX` and the rest goes back to the semaphore: nothing panics, nothing is lost.
    fn merge_into(&self, held: &mut usize, n: usize) {
        match held.checked_add(n) {
            Some(sum) => *held = sum,
            None => {
                let excess = n - (usize::MAX - *held);
                *held = usize::MAX;
                self.release(excess);
            }
        }
    }

    /// Gives `n` held permits back and hands them on.
    fn release(&self, n: usize) {
        if n > 0 {
            self.update(false, |s| s.permits = s.permits.saturating_add(n));
        }
    }

    /// Destroys `n` held permits.
    fn forget_held(&self, n: usize) {
        if n > 0 {
            self.update(true, |s| s.capacity = s.capacity.saturating_sub(n));
        }
    }

    /// Runs `f` under the lock, then the hand-off (see [`State::settle`]), waking the served
    /// waiters outside the lock, in batches if there are many.
    fn update<R>(&self, fail_oversized: bool, f: impl FnOnce(&mut State) -> R) -> R {
        let mut wakers = WakeList::new();
        let (out, mut more) = self.state.with(|s| {
            let out = f(s);
            (out, s.settle(&mut wakers, fail_oversized))
        });
        wakers.wake_all();
        while more {
            more = self.state.with(|s| s.settle(&mut wakers, fail_oversized));
            wakers.wake_all();
        }
        out
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (permits, capacity, waiters) =
            self.state.with(|s| (s.permits, s.capacity, s.waiters.len()));
        f.debug_struct("Semaphore")
            .field("available_permits", &permits)
            .field("capacity", &capacity)
            .field("waiters", &waiters)
            .finish()
    }
}

/// Why a `try_acquire*` call got no permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryAcquireError {
    /// Too few permits are free now, or other waiters are queued ahead (they are served
    /// first). Waiting may help.
    NoPermits,
    /// More permits were requested than the semaphore has in total; waiting never helps.
    /// The same failure, with the same fields, as [`Error::InsufficientCapacity`], which the
    /// waiting forms return.
    InsufficientCapacity {
        /// Permits requested.
        requested: u64,
        /// The semaphore's [`capacity`](Semaphore::capacity).
        capacity: u64,
    },
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::NoPermits => {
                f.write_str("no permits free now, or other waiters are queued first")
            }
            &TryAcquireError::InsufficientCapacity { requested, capacity } => {
                fmt::Display::fmt(&Error::InsufficientCapacity { requested, capacity }, f)
            }
        }
    }
}

impl core::error::Error for TryAcquireError {}
