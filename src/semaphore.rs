//! [`Semaphore`]: a fair (FIFO), waker-based, allocation-free async semaphore for "at most N
//! at once" limits such as max parallel requests.
//!
//! # How it works
//!
//! The permit count and a doubly-linked list of waiters live behind one short lock (the crate's
//! sync facade: `std` mutex, `critical-section`, a spin lock, or loom). The list nodes are not
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
//! [`add_permits`]: Semaphore::add_permits

use core::cell::Cell;
use core::fmt;
use core::future::Future;
use core::marker::PhantomPinned;
use core::ops::Deref;
use core::pin::Pin;
use core::ptr;
use core::task::{Context, Poll, Waker};

#[cfg(feature = "alloc")]
use alloc::sync::Arc;

use crate::error::Error;
use crate::sync::{Mutex, const_fn};

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
pub struct Semaphore {
    state: Mutex<State>,
}

/// Everything the lock protects.
struct State {
    /// Permits free right now.
    permits: usize,
    /// Permits in existence: free plus held (created + added − forgotten).
    capacity: usize,
    /// Oldest waiter, or null.
    head: *const NodeCell,
    /// Newest waiter, or null.
    tail: *const NodeCell,
    /// Length of the list.
    waiters: usize,
    /// Queued waiters that may be failed for capacity; when there are none, shrinking the
    /// capacity need not walk the list.
    fallible_waiters: usize,
}

// SAFETY: the raw pointers name nodes inside pinned acquire futures. They are only followed
// while this semaphore's lock is held, and a future unlinks its node under the same lock before
// its memory can go away (`Waiter::drop`), so no thread ever reaches a node except through the
// lock; moving `State` between threads (as the mutex does) shares nothing unprotected.
unsafe impl Send for State {}

/// Where a waiter is in its life. Written only under the semaphore's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not polled yet.
    Idle,
    /// Linked in the list, waiting.
    Queued,
    /// Unlinked by a hand-off; its permits are already taken from the pool and belong to it.
    Granted,
    /// Unlinked because the capacity fell below its request (see [`Semaphore::forget_permits`]).
    Failed { capacity: usize },
    /// The future returned its output; the node is inert.
    Done,
}

/// The mutable part of a list node.
struct Node {
    prev: *const NodeCell,
    next: *const NodeCell,
    phase: Phase,
    /// Present while `Queued`; taken by whoever grants or fails the waiter.
    waker: Option<Waker>,
}

/// A list node as it sits inside an acquire future.
struct NodeCell {
    /// Permits requested. Never written after construction, so readable without the lock.
    needed: usize,
    /// Whether the future can report [`Error::InsufficientCapacity`] (`acquire_many*`), so it
    /// may be failed when the capacity shrinks below `needed`.
    fallible: bool,
    node: NodeUnsafeCell<Node>,
    /// Other threads hold raw pointers to this node while it is linked.
    _pinned: PhantomPinned,
}

#[cfg(not(tollgate_loom))]
type NodeUnsafeCell<T> = core::cell::UnsafeCell<T>;
// Under loom, its `UnsafeCell` checks that every node access is ordered by the lock.
#[cfg(tollgate_loom)]
type NodeUnsafeCell<T> = loom::cell::UnsafeCell<T>;

impl NodeCell {
    fn new(needed: usize, fallible: bool) -> Self {
        Self {
            needed,
            fallible,
            node: NodeUnsafeCell::new(Node {
                prev: ptr::null(),
                next: ptr::null(),
                phase: Phase::Idle,
                waker: None,
            }),
            _pinned: PhantomPinned,
        }
    }

    /// Runs `f` on the node's mutable part.
    ///
    /// # Safety
    ///
    /// The caller holds the lock of the semaphore this node waits on (every access to a `Node`
    /// happens under that lock), and does not call `with` on the same node again inside `f`.
    unsafe fn with<R>(&self, f: impl FnOnce(&mut Node) -> R) -> R {
        #[cfg(not(tollgate_loom))]
        {
            // SAFETY: the lock serialises every access to the node, and `with` is not nested
            // on one node, so this is the only reference to it.
            f(unsafe { &mut *self.node.get() })
        }
        #[cfg(tollgate_loom)]
        {
            // SAFETY: as above; loom additionally checks the claim.
            self.node.with_mut(|node| f(unsafe { &mut *node }))
        }
    }
}

impl State {
    /// Links `node` at the tail.
    ///
    /// # Safety
    ///
    /// `node` is pinned, not linked, and waits on the semaphore owning this state (whose lock
    /// the caller holds, being inside it).
    unsafe fn push_back(&mut self, node: *const NodeCell) {
        let tail = self.tail;
        // SAFETY: `node` is alive (pinned) and we hold the lock.
        unsafe { (*node).with(|n| (n.prev, n.next) = (tail, ptr::null())) };
        if tail.is_null() {
            self.head = node;
        } else {
            // SAFETY: linked nodes are alive (they unlink before dying); we hold the lock and
            // `tail != node`, so this is not a nested access.
            unsafe { (*tail).with(|t| t.next = node) };
        }
        self.tail = node;
        self.waiters += 1;
        // SAFETY: `node` is alive (pinned); `fallible` is never written after construction.
        self.fallible_waiters += usize::from(unsafe { (*node).fallible });
    }

    /// Unlinks `node`.
    ///
    /// # Safety
    ///
    /// `node` is linked in this list, and the caller holds the lock (is inside it).
    unsafe fn unlink(&mut self, node: *const NodeCell) {
        // SAFETY: linked nodes are alive and we hold the lock.
        let (prev, next) = unsafe {
            (*node).with(|n| {
                let links = (n.prev, n.next);
                (n.prev, n.next) = (ptr::null(), ptr::null());
                links
            })
        };
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: the neighbours are linked too, so alive; distinct from `node`.
            unsafe { (*prev).with(|p| p.next = next) };
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: as above.
            unsafe { (*next).with(|n| n.prev = prev) };
        }
        self.waiters -= 1;
        // SAFETY: as above.
        self.fallible_waiters -= usize::from(unsafe { (*node).fallible });
    }

    /// Serves waiters from the head while their requests fit, and, when `fail_oversized`, first
    /// fails every fallible waiter whose request exceeds the capacity (it could never be
    /// served and would block everyone behind it). The wakers of served and failed waiters go
    /// to `wakers`, to be woken after unlocking. Returns `true` if it stopped because `wakers`
    /// is full: unlock, wake, and call again.
    fn settle(&mut self, wakers: &mut WakeList, fail_oversized: bool) -> bool {
        if fail_oversized && self.fallible_waiters > 0 {
            let mut cursor = self.head;
            while !cursor.is_null() {
                if wakers.is_full() {
                    return true;
                }
                // SAFETY: linked nodes are alive (a future unlinks its node under this lock
                // before its memory goes away) and we hold the lock.
                let node = unsafe { &*cursor };
                // SAFETY: as above; not nested.
                let next = unsafe { node.with(|n| n.next) };
                if node.fallible && node.needed > self.capacity {
                    // SAFETY: `cursor` is linked in this list.
                    unsafe { self.unlink(cursor) };
                    let capacity = self.capacity;
                    // SAFETY: still alive (its future must lock to drop it); we hold the lock.
                    let waker = unsafe {
                        node.with(|n| {
                            n.phase = Phase::Failed { capacity };
                            n.waker.take()
                        })
                    };
                    wakers.push(waker);
                }
                cursor = next;
            }
        }
        loop {
            let head = self.head;
            if head.is_null() {
                return false;
            }
            // SAFETY: linked, so alive; we hold the lock.
            let node = unsafe { &*head };
            if node.needed > self.permits {
                // Strict FIFO: nobody behind the head is served before it.
                return false;
            }
            if wakers.is_full() {
                return true;
            }
            self.permits -= node.needed;
            // SAFETY: `head` is linked in this list.
            unsafe { self.unlink(head) };
            // SAFETY: still alive (its future must lock to drop it); we hold the lock. From
            // here on the permits belong to the future: it takes them when polled, or returns
            // them when dropped unpolled.
            let waker = unsafe {
                node.with(|n| {
                    n.phase = Phase::Granted;
                    n.waker.take()
                })
            };
            wakers.push(waker);
        }
    }
}

/// Wakers collected under the lock and woken after it is released (a waker may poll, and so
/// lock, synchronously). Fixed size, so no allocation: when it fills, the hand-off unlocks,
/// wakes this batch and continues.
struct WakeList {
    wakers: [Option<Waker>; WakeList::CAPACITY],
    len: usize,
}

impl WakeList {
    const CAPACITY: usize = 8;

    fn new() -> Self {
        Self { wakers: [const { None }; Self::CAPACITY], len: 0 }
    }

    fn is_full(&self) -> bool {
        self.len == Self::CAPACITY
    }

    fn push(&mut self, waker: Option<Waker>) {
        if let Some(waker) = waker {
            self.wakers[self.len] = Some(waker);
            self.len += 1;
        }
    }

    fn wake_all(&mut self) {
        for slot in &mut self.wakers[..self.len] {
            if let Some(waker) = slot.take() {
                waker.wake();
            }
        }
        self.len = 0;
    }
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
                state: Mutex::new(State {
                    permits,
                    capacity: permits,
                    head: ptr::null(),
                    tail: ptr::null(),
                    waiters: 0,
                    fallible_waiters: 0,
                }),
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
        self.state.with(|s| s.waiters)
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
        // One permit may be added later even at capacity 0, so this is never `Insufficient`,
        // matching `acquire`, which waits.
        self.try_take(1, false).map(|permits| SemaphorePermit { sem: self, permits })
    }

    /// Takes `n` permits if they are free *and nobody is queued*; never waits. `n == 0`
    /// always succeeds.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::Insufficient`] if `n` exceeds the [`capacity`](Semaphore::capacity);
    /// [`TryAcquireError::NoPermits`] if too few are free or waiters are queued.
    ///
    /// ```
    /// use tollgate::{Semaphore, TryAcquireError};
    ///
    /// let sem = Semaphore::new(3);
    /// let two = sem.try_acquire_many(2).unwrap();
    /// assert_eq!(two.num_permits(), 2);
    /// assert_eq!(sem.try_acquire_many(2).unwrap_err(), TryAcquireError::NoPermits);
    /// assert_eq!(
    ///     sem.try_acquire_many(4).unwrap_err(),
    ///     TryAcquireError::Insufficient { requested: 4, capacity: 3 },
    /// );
    /// ```
    pub fn try_acquire_many(&self, n: usize) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_take(n, true).map(|permits| SemaphorePermit { sem: self, permits })
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
        Acquire { waiter: Waiter::new(self, 1, false) }
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
        AcquireMany { waiter: Waiter::new(self, n, true) }
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
        Ok(OwnedSemaphorePermit { sem: self, permits })
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
        Ok(OwnedSemaphorePermit { sem: self, permits })
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
        AcquireOwned { waiter: Waiter::new(self, 1, false) }
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
        AcquireManyOwned { waiter: Waiter::new(self, n, true) }
    }

    /// The non-waiting path shared by every `try_acquire*`: barging past queued waiters is
    /// exactly what FIFO forbids, so a non-empty queue means no.
    fn try_take(&self, n: usize, fallible: bool) -> Result<usize, TryAcquireError> {
        if n == 0 {
            return Ok(0);
        }
        self.state.with(|s| {
            if fallible && n > s.capacity {
                Err(TryAcquireError::Insufficient { requested: n, capacity: s.capacity })
            } else if s.head.is_null() && s.permits >= n {
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
        let (permits, capacity, waiters) = self.state.with(|s| (s.permits, s.capacity, s.waiters));
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
    Insufficient {
        /// Permits requested.
        requested: usize,
        /// The semaphore's [`capacity`](Semaphore::capacity).
        capacity: usize,
    },
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::NoPermits => {
                f.write_str("no permits free now, or other waiters are queued first")
            }
            TryAcquireError::Insufficient { requested, capacity } => write!(
                f,
                "request for {requested} permits exceeds the capacity of {capacity} and can never be granted"
            ),
        }
    }
}

impl core::error::Error for TryAcquireError {}

/// The state machine behind every acquire future: a list node plus the semaphore it waits on
/// (`&Semaphore` or `Arc<Semaphore>`).
struct Waiter<S: Deref<Target = Semaphore>> {
    sem: S,
    node: NodeCell,
    /// Owner-only: the node may be linked or granted, so dropping must lock and clean up.
    /// Lets never-polled and completed futures drop without locking.
    in_flight: Cell<bool>,
}

// SAFETY: the node's fields are only accessed under the semaphore's lock (whoever holds it,
// on any thread), `Waker` is `Send`, and `in_flight` is only touched by the owner through
// `Pin<&mut _>`/`&mut _`. So the waiter may move to another thread whenever its handle on
// the semaphore may.
unsafe impl<S: Deref<Target = Semaphore> + Send> Send for Waiter<S> {}
// SAFETY: through `&Waiter` one can only read the immutable `needed` (in `Debug`); every
// other access needs `Pin<&mut _>` or `&mut _`, i.e. exclusive access.
unsafe impl<S: Deref<Target = Semaphore> + Sync> Sync for Waiter<S> {}

impl<S: Deref<Target = Semaphore>> Waiter<S> {
    fn new(sem: S, needed: usize, fallible: bool) -> Self {
        Self { sem, node: NodeCell::new(needed, fallible), in_flight: Cell::new(false) }
    }

    /// Polls for the permits. `Ok(())` means `needed` permits now belong to the caller.
    ///
    /// Takes `&self` so no `&mut` to the node is ever formed while other threads may write it
    /// through the list; callers get here only from a pinned, exclusive reference.
    fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let node = &self.node;
        let node_ptr: *const NodeCell = node;
        let n = node.needed;
        let (poll, stale_waker, enqueued_now) = self.sem.state.with(|s| {
            // SAFETY: we hold the lock; `with` is not nested on this node (`push_back` runs
            // after it returns).
            let (poll, stale, enqueue) = unsafe {
                node.with(|me| match me.phase {
                    Phase::Idle if n == 0 => {
                        me.phase = Phase::Done;
                        (Some(Ok(())), None, false)
                    }
                    Phase::Idle if node.fallible && n > s.capacity => {
                        me.phase = Phase::Done;
                        (Some(Err(insufficient(n, s.capacity))), None, false)
                    }
                    // Free permits are taken only if nobody is queued: no barging.
                    Phase::Idle if s.head.is_null() && s.permits >= n => {
                        s.permits -= n;
                        me.phase = Phase::Done;
                        (Some(Ok(())), None, false)
                    }
                    Phase::Idle => {
                        // Cloned before any state changes, in case the clone panics.
                        let waker = cx.waker().clone();
                        me.phase = Phase::Queued;
                        me.waker = Some(waker);
                        (None, None, true)
                    }
                    Phase::Queued => {
                        // The waker is swapped under the same lock the hand-off takes it
                        // under: the hand-off either sees the new waker or has already
                        // granted us (and we see `Granted` next time). No lost wake-up.
                        let stale = match &me.waker {
                            Some(w) if w.will_wake(cx.waker()) => None,
                            _ => me.waker.replace(cx.waker().clone()),
                        };
                        (None, stale, false)
                    }
                    Phase::Granted => {
                        me.phase = Phase::Done;
                        (Some(Ok(())), None, false)
                    }
                    Phase::Failed { capacity } => {
                        me.phase = Phase::Done;
                        (Some(Err(insufficient(n, capacity))), None, false)
                    }
                    Phase::Done => (None, None, false),
                })
            };
            if enqueue {
                // SAFETY: the node is pinned (we were reached through `Pin<&mut _>`), was
                // `Idle` so is not linked, and waits on this semaphore.
                unsafe { s.push_back(node_ptr) };
            }
            (poll, stale, enqueue)
        });
        // Recorded before anything else can panic: a linked node must be unlinked on drop.
        let poll = match poll {
            Some(result) => {
                self.in_flight.set(false);
                Poll::Ready(result)
            }
            // A completed future is never in flight; a pending one always is.
            None if self.in_flight.get() => Poll::Pending,
            None if enqueued_now => {
                self.in_flight.set(true);
                Poll::Pending
            }
            None => panic!("tollgate::Semaphore acquire future polled after completion"),
        };
        // Dropped outside the lock: dropping a waker runs executor code.
        drop(stale_waker);
        poll
    }
}

impl<S: Deref<Target = Semaphore>> Drop for Waiter<S> {
    fn drop(&mut self) {
        if !self.in_flight.get() {
            return;
        }
        let node = &self.node;
        let node_ptr: *const NodeCell = node;
        // `update` re-runs the hand-off after our change: if we were first in line, the next
        // waiter may fit now (embassy-sync #6964 lost exactly that wake-up); if permits had
        // been assigned to us, they go to the next waiter instead of leaking.
        let waker = self.sem.update(false, |s| {
            // SAFETY: we hold the lock; not nested (`unlink` runs after it returns).
            let (phase, waker) = unsafe { node.with(|me| (me.phase, me.waker.take())) };
            match phase {
                // SAFETY: `Queued` means linked in this semaphore's list.
                Phase::Queued => unsafe { s.unlink(node_ptr) },
                Phase::Granted => s.permits = s.permits.saturating_add(node.needed),
                Phase::Idle | Phase::Failed { .. } | Phase::Done => {}
            }
            waker
        });
        drop(waker);
    }
}

fn insufficient(requested: usize, capacity: usize) -> Error {
    // usize is at most 64 bits on every supported target.
    Error::InsufficientCapacity { requested: requested as u64, capacity: capacity as u64 }
}

/// Future of [`Semaphore::acquire`]: one permit.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<'a> {
    waiter: Waiter<&'a Semaphore>,
}

impl<'a> Future for Acquire<'a> {
    type Output = SemaphorePermit<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SemaphorePermit<'a>> {
        let waiter = &self.into_ref().get_ref().waiter;
        waiter.poll_wait(cx).map(|result| {
            // `acquire` is not fallible: it is never failed for capacity.
            debug_assert!(result.is_ok());
            SemaphorePermit { sem: waiter.sem, permits: waiter.node.needed }
        })
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire").finish_non_exhaustive()
    }
}

/// Future of [`Semaphore::acquire_many`]: `n` permits at once, or
/// [`Error::InsufficientCapacity`].
#[must_use = "futures do nothing unless polled"]
pub struct AcquireMany<'a> {
    waiter: Waiter<&'a Semaphore>,
}

impl<'a> Future for AcquireMany<'a> {
    type Output = Result<SemaphorePermit<'a>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let waiter = &self.into_ref().get_ref().waiter;
        waiter
            .poll_wait(cx)
            .map_ok(|()| SemaphorePermit { sem: waiter.sem, permits: waiter.node.needed })
    }
}

impl fmt::Debug for AcquireMany<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireMany").field("permits", &self.waiter.node.needed).finish()
    }
}

/// Future of [`Semaphore::acquire_owned`]: one permit, holding the `Arc`.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
#[must_use = "futures do nothing unless polled"]
pub struct AcquireOwned {
    waiter: Waiter<Arc<Semaphore>>,
}

#[cfg(feature = "alloc")]
impl Future for AcquireOwned {
    type Output = OwnedSemaphorePermit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<OwnedSemaphorePermit> {
        let waiter = &self.into_ref().get_ref().waiter;
        waiter.poll_wait(cx).map(|result| {
            debug_assert!(result.is_ok());
            OwnedSemaphorePermit { sem: waiter.sem.clone(), permits: waiter.node.needed }
        })
    }
}

#[cfg(feature = "alloc")]
impl fmt::Debug for AcquireOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireOwned").finish_non_exhaustive()
    }
}

/// Future of [`Semaphore::acquire_many_owned`]: `n` permits at once, holding the `Arc`.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
#[must_use = "futures do nothing unless polled"]
pub struct AcquireManyOwned {
    waiter: Waiter<Arc<Semaphore>>,
}

#[cfg(feature = "alloc")]
impl Future for AcquireManyOwned {
    type Output = Result<OwnedSemaphorePermit, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let waiter = &self.into_ref().get_ref().waiter;
        waiter.poll_wait(cx).map_ok(|()| OwnedSemaphorePermit {
            sem: waiter.sem.clone(),
            permits: waiter.node.needed,
        })
    }
}

#[cfg(feature = "alloc")]
impl fmt::Debug for AcquireManyOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireManyOwned").field("permits", &self.waiter.node.needed).finish()
    }
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
#[must_use = "the permits are released as soon as the permit is dropped"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    permits: usize,
}

impl SemaphorePermit<'_> {
    /// How many permits this holds.
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(3);
    /// assert_eq!(sem.try_acquire_many(3).unwrap().num_permits(), 3);
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
    /// ```
    pub fn forget(mut self) {
        let n = core::mem::take(&mut self.permits);
        self.sem.forget_held(n);
    }

    /// Splits `n` permits off into a new permit, or returns `None` if this holds fewer.
    ///
    /// ```
    /// let sem = tollgate::Semaphore::new(3);
    /// let mut all = sem.try_acquire_many(3).unwrap();
    /// let one = all.split(1).unwrap();
    /// assert_eq!((all.num_permits(), one.num_permits()), (2, 1));
    /// drop(one);
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    pub fn split(&mut self, n: usize) -> Option<Self> {
        self.permits = self.permits.checked_sub(n)?;
        Some(Self { sem: self.sem, permits: n })
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
    /// ```
    pub fn merge(&mut self, mut other: Self) {
        assert!(
            ptr::eq(self.sem, other.sem),
            "merging permits from different tollgate::Semaphores"
        );
        self.sem.merge_into(&mut self.permits, core::mem::take(&mut other.permits));
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.release(self.permits);
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").field("permits", &self.permits).finish()
    }
}

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
#[must_use = "the permits are released as soon as the permit is dropped"]
pub struct OwnedSemaphorePermit {
    sem: Arc<Semaphore>,
    permits: usize,
}

#[cfg(feature = "alloc")]
impl OwnedSemaphorePermit {
    /// How many permits this holds.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let sem = Arc::new(tollgate::Semaphore::new(2));
    /// assert_eq!(sem.try_acquire_many_owned(2).unwrap().num_permits(), 2);
    /// ```
    pub fn num_permits(&self) -> usize {
        self.permits
    }

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

    /// Destroys the permits instead of giving them back: the semaphore's
    /// [`capacity`](Semaphore::capacity) shrinks by [`num_permits`](Self::num_permits).
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let sem = Arc::new(tollgate::Semaphore::new(2));
    /// sem.clone().try_acquire_owned().unwrap().forget();
    /// assert_eq!((sem.available_permits(), sem.capacity()), (1, 1));
    /// ```
    pub fn forget(mut self) {
        let n = core::mem::take(&mut self.permits);
        self.sem.forget_held(n);
    }

    /// Splits `n` permits off into a new permit, or returns `None` if this holds fewer.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let sem = Arc::new(tollgate::Semaphore::new(3));
    /// let mut all = sem.try_acquire_many_owned(3).unwrap();
    /// let one = all.split(1).unwrap();
    /// assert_eq!((all.num_permits(), one.num_permits()), (2, 1));
    /// ```
    pub fn split(&mut self, n: usize) -> Option<Self> {
        self.permits = self.permits.checked_sub(n)?;
        Some(Self { sem: self.sem.clone(), permits: n })
    }

    /// Moves the permits of `other` into this one. Permits of one semaphore never sum past
    /// `usize::MAX` (its capacity saturates there), so this never overflows.
    ///
    /// # Panics
    ///
    /// If `other` comes from a different semaphore.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// let sem = Arc::new(tollgate::Semaphore::new(3));
    /// let mut a = sem.clone().try_acquire_owned().unwrap();
    /// a.merge(sem.clone().try_acquire_many_owned(2).unwrap());
    /// assert_eq!(a.num_permits(), 3);
    /// ```
    pub fn merge(&mut self, mut other: Self) {
        assert!(
            Arc::ptr_eq(&self.sem, &other.sem),
            "merging permits from different tollgate::Semaphores"
        );
        self.sem.merge_into(&mut self.permits, core::mem::take(&mut other.permits));
    }
}

#[cfg(feature = "alloc")]
impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        self.sem.release(self.permits);
    }
}

#[cfg(feature = "alloc")]
impl fmt::Debug for OwnedSemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSemaphorePermit").field("permits", &self.permits).finish()
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
