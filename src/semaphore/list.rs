//! The intrusive waiter list: a doubly-linked FIFO of nodes that live inside pinned acquire
//! futures, reached only under the semaphore's lock.

use core::marker::PhantomPinned;
use core::ptr;
use core::task::Waker;

use super::waiter::Phase;

/// The queue of waiting acquire futures, oldest first. Part of the semaphore's locked state.
pub(super) struct WaitList {
    /// Oldest waiter, or null.
    head: *const NodeCell,
    /// Newest waiter, or null.
    tail: *const NodeCell,
    /// Length of the list.
    len: usize,
    /// Queued waiters that may be failed for capacity; when there are none, shrinking the
    /// capacity need not walk the list.
    fallible: usize,
}

// SAFETY: the raw pointers name nodes inside pinned acquire futures. They are only followed
// while the owning semaphore's lock is held, and a future unlinks its node under the same lock
// before its memory can go away (`Waiter::drop`), so no thread ever reaches a node except
// through the lock; moving the list between threads (as the mutex does) shares nothing
// unprotected.
unsafe impl Send for WaitList {}

/// The mutable part of a list node.
pub(super) struct Node {
    prev: *const NodeCell,
    next: *const NodeCell,
    /// Where the waiter is in its life (see [`Phase`]).
    pub(super) phase: Phase,
    /// Present while `Queued`; taken by whoever grants or fails the waiter.
    pub(super) waker: Option<Waker>,
}

/// A list node as it sits inside an acquire future.
pub(super) struct NodeCell {
    /// Permits requested. Never written after construction, so readable without the lock.
    pub(super) needed: usize,
    /// Whether the future can report [`Error::InsufficientCapacity`] (`acquire_many*`), so it
    /// may be failed when the capacity shrinks below `needed`.
    ///
    /// [`Error::InsufficientCapacity`]: crate::Error::InsufficientCapacity
    pub(super) fallible: bool,
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
    pub(super) fn new(needed: usize, fallible: bool) -> Self {
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
    pub(super) unsafe fn with<R>(&self, f: impl FnOnce(&mut Node) -> R) -> R {
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

impl WaitList {
    pub(super) const fn new() -> Self {
        Self { head: ptr::null(), tail: ptr::null(), len: 0, fallible: 0 }
    }

    /// The oldest waiter, or null.
    pub(super) fn head(&self) -> *const NodeCell {
        self.head
    }

    /// Whether nobody is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// How many waiters are linked.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// How many linked waiters are fallible.
    pub(super) fn fallible(&self) -> usize {
        self.fallible
    }

    /// The node linked after `node`, or null.
    ///
    /// # Safety
    ///
    /// `node` is linked in this list, and the caller holds the lock (is inside it) and is not
    /// inside [`NodeCell::with`] on `node`.
    pub(super) unsafe fn next(&self, node: *const NodeCell) -> *const NodeCell {
        // SAFETY: linked nodes are alive (a future unlinks its node under this lock before its
        // memory goes away) and we hold the lock; not nested, by the contract.
        unsafe { (*node).with(|n| n.next) }
    }

    /// Links `node` at the tail.
    ///
    /// # Safety
    ///
    /// `node` is pinned, not linked, and waits on the semaphore owning this list (whose lock
    /// the caller holds, being inside it).
    pub(super) unsafe fn push_back(&mut self, node: *const NodeCell) {
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
        self.len += 1;
        // SAFETY: `node` is alive (pinned); `fallible` is never written after construction.
        self.fallible += usize::from(unsafe { (*node).fallible });
    }

    /// Unlinks `node`.
    ///
    /// # Safety
    ///
    /// `node` is linked in this list, and the caller holds the lock (is inside it).
    pub(super) unsafe fn unlink(&mut self, node: *const NodeCell) {
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
        self.len -= 1;
        // SAFETY: as above.
        self.fallible -= usize::from(unsafe { (*node).fallible });
    }
}
