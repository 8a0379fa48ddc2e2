//! The waiter state machine: every [`Phase`] transition of a queued acquire — polling
//! ([`Waiter::poll_wait`]), the hand-off that grants or fails waiters ([`State::settle`]) and
//! cancellation ([`Waiter`]'s `Drop`).

use core::cell::Cell;
use core::ops::Deref;
use core::task::{Context, Poll, Waker};

use super::list::NodeCell;
use super::{Semaphore, State};
use crate::error::Error;

/// Where a waiter is in its life. Written only under the semaphore's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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

/// The state machine behind every acquire future: a list node plus the semaphore it waits on
/// (`&Semaphore` or `Arc<Semaphore>`).
pub(super) struct Waiter<S: Deref<Target = Semaphore>> {
    pub(super) sem: S,
    pub(super) node: NodeCell,
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
    pub(super) fn new(sem: S, needed: usize, fallible: bool) -> Self {
        Self { sem, node: NodeCell::new(needed, fallible), in_flight: Cell::new(false) }
    }

    /// Polls for the permits. `Ok(())` means `needed` permits now belong to the caller.
    ///
    /// Takes `&self` so no `&mut` to the node is ever formed while other threads may write it
    /// through the list; callers get here only from a pinned, exclusive reference.
    pub(super) fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
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
                    Phase::Idle if s.waiters.is_empty() && s.permits >= n => {
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
                unsafe { s.waiters.push_back(node_ptr) };
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
                Phase::Queued => unsafe { s.waiters.unlink(node_ptr) },
                Phase::Granted => s.permits = s.permits.saturating_add(node.needed),
                Phase::Idle | Phase::Failed { .. } | Phase::Done => {}
            }
            waker
        });
        drop(waker);
    }
}

fn insufficient(requested: usize, capacity: usize) -> Error {
    let (requested, capacity) = widen(requested, capacity);
    Error::InsufficientCapacity { requested, capacity }
}

/// Permit counts in the width of the crate's one capacity error.
pub(super) fn widen(requested: usize, capacity: usize) -> (u64, u64) {
    // usize is at most 64 bits on every supported target.
    (requested as u64, capacity as u64)
}

impl State {
    /// Serves waiters from the head while their requests fit, and, when `fail_oversized`, first
    /// fails every fallible waiter whose request exceeds the capacity (it could never be
    /// served and would block everyone behind it). The wakers of served and failed waiters go
    /// to `wakers`, to be woken after unlocking. Returns `true` if it stopped because `wakers`
    /// is full: unlock, wake, and call again.
    pub(super) fn settle(&mut self, wakers: &mut WakeList, fail_oversized: bool) -> bool {
        if fail_oversized && self.waiters.fallible() > 0 {
            let mut cursor = self.waiters.head();
            while !cursor.is_null() {
                if wakers.is_full() {
                    return true;
                }
                // SAFETY: linked nodes are alive (a future unlinks its node under this lock
                // before its memory goes away) and we hold the lock.
                let node = unsafe { &*cursor };
                // SAFETY: as above; not nested.
                let next = unsafe { self.waiters.next(cursor) };
                if node.fallible && node.needed > self.capacity {
                    // SAFETY: `cursor` is linked in this list.
                    unsafe { self.waiters.unlink(cursor) };
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
            let head = self.waiters.head();
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
            unsafe { self.waiters.unlink(head) };
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
pub(super) struct WakeList {
    wakers: [Option<Waker>; WakeList::CAPACITY],
    len: usize,
}

impl WakeList {
    const CAPACITY: usize = 8;

    pub(super) fn new() -> Self {
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

    pub(super) fn wake_all(&mut self) {
        for slot in &mut self.wakers[..self.len] {
            if let Some(waker) = slot.take() {
                waker.wake();
            }
        }
        self.len = 0;
    }
}
