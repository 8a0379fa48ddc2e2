//! Integration tests of the fair semaphore: FIFO hand-off, no barging, cancel safety (including
//! embassy-sync #6964), capacity errors, owned permits, and a multi-threaded stress run.
#![cfg(not(tollgate_loom))]

use core::future::Future;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};
use std::sync::Arc;

use futures_executor::block_on;
use futures_util::task::{ArcWake, noop_waker, waker};
use tollgate::semaphore::{SemaphorePermit, TryAcquireError};
use tollgate::{Error, Semaphore};

/// A waker that counts how often it was woken.
struct Counter(AtomicUsize);

impl ArcWake for Counter {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<Counter>, Waker) {
    let counter = Arc::new(Counter(AtomicUsize::new(0)));
    (counter.clone(), waker(counter))
}

impl Counter {
    fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn poll_with<F: Future>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    poll_with(fut, &noop_waker())
}

#[test]
fn many_waiters_are_served_in_arrival_order() {
    let sem = Semaphore::new(1);
    let held = sem.try_acquire().unwrap();
    let mut waiters: Vec<_> = (0..10).map(|_| Box::pin(sem.acquire())).collect();
    let (counters, wakers): (Vec<_>, Vec<_>) = (0..10).map(|_| counting_waker()).unzip();
    for (w, waker) in waiters.iter_mut().zip(&wakers) {
        assert!(poll_with(w.as_mut(), waker).is_pending());
    }
    assert_eq!(sem.waiters(), 10);
    drop(held);
    for i in 0..10 {
        // Waiters up to i have been woken once each, the later ones not yet.
        for (j, c) in counters.iter().enumerate() {
            assert_eq!(c.wakes(), usize::from(j <= i), "after {i} releases, waiter {j}");
        }
        for (w, waker) in waiters[i + 1..].iter_mut().zip(&wakers[i + 1..]) {
            assert!(poll_with(w.as_mut(), waker).is_pending());
        }
        let Poll::Ready(permit) = poll_once(waiters[i].as_mut()) else {
            panic!("waiter {i} should hold the permit");
        };
        assert_eq!(sem.available_permits(), 0);
        drop(permit);
    }
    assert_eq!(sem.available_permits(), 1);
    assert_eq!(sem.waiters(), 0);
}

#[test]
fn try_acquire_never_barges_past_waiters() {
    let sem = Semaphore::new(3);
    let one = sem.try_acquire().unwrap();
    let mut big = pin!(sem.acquire_many(3));
    assert!(poll_once(big.as_mut()).is_pending());
    // Two permits are free, but the big request is first in line.
    assert_eq!(sem.available_permits(), 2);
    assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    assert_eq!(sem.try_acquire_many(2).unwrap_err(), TryAcquireError::NoPermits);
    // A new async acquire queues behind it too.
    let mut late = pin!(sem.acquire());
    assert!(poll_once(late.as_mut()).is_pending());
    drop(one);
    let Poll::Ready(Ok(big_permit)) = poll_once(big.as_mut()) else { panic!("big not served") };
    assert_eq!(big_permit.num_permits(), 3);
    assert!(poll_once(late.as_mut()).is_pending());
    drop(big_permit);
    assert!(poll_once(late.as_mut()).is_ready());
}

#[test]
fn big_request_is_not_starved_by_later_small_ones() {
    let sem = Semaphore::new(4);
    let held: Vec<SemaphorePermit<'_>> = (0..4).map(|_| sem.try_acquire().unwrap()).collect();
    let (big_counter, big_waker) = counting_waker();
    let mut big = pin!(sem.acquire_many(4));
    assert!(poll_with(big.as_mut(), &big_waker).is_pending());
    let mut smalls: Vec<_> = (0..8).map(|_| Box::pin(sem.acquire())).collect();
    for s in &mut smalls {
        assert!(poll_once(s.as_mut()).is_pending());
    }
    // Permits trickle back one at a time; none goes to the small waiters.
    for (i, permit) in held.into_iter().enumerate() {
        drop(permit);
        for s in &mut smalls {
            assert!(poll_once(s.as_mut()).is_pending(), "a small waiter barged at release {i}");
        }
    }
    assert_eq!(big_counter.wakes(), 1);
    let Poll::Ready(Ok(big_permit)) = poll_once(big.as_mut()) else { panic!("big not served") };
    drop(big_permit);
    // Now the four oldest small waiters are served.
    let polled: Vec<_> = smalls.iter_mut().map(|s| poll_once(s.as_mut())).collect();
    let ready: Vec<_> = polled.iter().map(Poll::is_ready).collect();
    assert_eq!(ready, [true, true, true, true, false, false, false, false]);
}

#[test]
fn hand_off_wakes_exactly_the_waiters_that_fit() {
    let sem = Semaphore::new(3);
    let all = sem.try_acquire_many(3).unwrap();
    let wants = [1, 1, 2, 1];
    let mut futs: Vec<_> = wants.iter().map(|&n| Box::pin(sem.acquire_many(n))).collect();
    let counters: Vec<_> = futs
        .iter_mut()
        .map(|f| {
            let (counter, waker) = counting_waker();
            assert!(poll_with(f.as_mut(), &waker).is_pending());
            counter
        })
        .collect();
    drop(all);
    // 1 + 1 fit; the 2 does not fit in the remaining 1, and the last 1 must not pass it.
    let wakes: Vec<_> = counters.iter().map(|c| c.wakes()).collect();
    assert_eq!(wakes, [1, 1, 0, 0]);
    assert_eq!(sem.available_permits(), 1);
    assert_eq!(sem.waiters(), 2);
    let Poll::Ready(Ok(first)) = poll_once(futs[0].as_mut()) else { panic!() };
    drop(first);
    let wakes: Vec<_> = counters.iter().map(|c| c.wakes()).collect();
    assert_eq!(wakes, [1, 1, 1, 0]);
    let Poll::Ready(Ok(second)) = poll_once(futs[1].as_mut()) else { panic!() };
    drop(second);
    let wakes: Vec<_> = counters.iter().map(|c| c.wakes()).collect();
    assert_eq!(wakes, [1, 1, 1, 1]);
}

#[test]
fn more_waiters_than_one_wake_batch_are_all_woken() {
    let sem = Semaphore::new(0);
    let mut futs: Vec<_> = (0..50).map(|_| Box::pin(sem.acquire())).collect();
    let counters: Vec<_> = futs
        .iter_mut()
        .map(|f| {
            let (counter, waker) = counting_waker();
            assert!(poll_with(f.as_mut(), &waker).is_pending());
            counter
        })
        .collect();
    sem.add_permits(50);
    assert!(counters.iter().all(|c| c.wakes() == 1));
    assert_eq!(sem.waiters(), 0);
    assert_eq!(sem.available_permits(), 0);
    for f in &mut futs {
        assert!(poll_once(f.as_mut()).is_ready());
    }
}

/// embassy-sync #6964: cap 1; A holds; B and C wait; A releases (B is granted); B is dropped
/// before it is polled again. C must be woken and get the permit.
#[test]
fn cancelling_a_granted_head_wakes_the_next_waiter() {
    let sem = Semaphore::new(1);
    let a = sem.try_acquire().unwrap();
    let (b_counter, b_waker) = counting_waker();
    let (c_counter, c_waker) = counting_waker();
    let mut b = Box::pin(sem.acquire());
    let mut c = Box::pin(sem.acquire());
    assert!(poll_with(b.as_mut(), &b_waker).is_pending());
    assert!(poll_with(c.as_mut(), &c_waker).is_pending());
    drop(a);
    assert_eq!((b_counter.wakes(), c_counter.wakes()), (1, 0));
    drop(b);
    assert_eq!(c_counter.wakes(), 1, "C was left asleep with a permit free");
    let Poll::Ready(permit) = poll_once(c.as_mut()) else { panic!("C should hold the permit") };
    assert_eq!(permit.num_permits(), 1);
    assert_eq!(sem.available_permits(), 0);
    drop(permit);
    assert_eq!(sem.available_permits(), 1);
}

/// The other shape of #6964: the head waits for more than is free, blocking a waiter that
/// would fit; cancelling the head must hand the free permits to that waiter at once.
#[test]
fn cancelling_a_blocked_head_hands_free_permits_to_the_next() {
    let sem = Semaphore::new(2);
    let one = sem.try_acquire().unwrap();
    let mut head = Box::pin(sem.acquire_many(2));
    let (c_counter, c_waker) = counting_waker();
    let mut next = pin!(sem.acquire());
    assert!(poll_once(head.as_mut()).is_pending());
    assert!(poll_with(next.as_mut(), &c_waker).is_pending());
    drop(head);
    assert_eq!(c_counter.wakes(), 1);
    assert!(poll_once(next.as_mut()).is_ready());
    drop(one);
}

#[test]
fn cancelling_a_middle_waiter_keeps_the_order() {
    let sem = Semaphore::new(1);
    let held = sem.try_acquire().unwrap();
    let mut a = Box::pin(sem.acquire());
    let mut b = Box::pin(sem.acquire());
    let mut c = Box::pin(sem.acquire());
    for f in [&mut a, &mut b, &mut c] {
        assert!(poll_once(f.as_mut()).is_pending());
    }
    drop(b);
    assert_eq!(sem.waiters(), 2);
    drop(held);
    assert!(poll_once(c.as_mut()).is_pending());
    let Poll::Ready(pa) = poll_once(a.as_mut()) else { panic!() };
    drop(pa);
    assert!(poll_once(c.as_mut()).is_ready());
    assert_eq!(sem.waiters(), 0);
}

#[test]
fn cancelling_after_grant_returns_the_permits() {
    let sem = Semaphore::new(3);
    let all = sem.try_acquire_many(3).unwrap();
    let mut waiter = Box::pin(sem.acquire_many(2));
    assert!(poll_once(waiter.as_mut()).is_pending());
    drop(all);
    assert_eq!(sem.available_permits(), 1); // two are assigned to the waiter
    drop(waiter);
    assert_eq!(sem.available_permits(), 3);
    assert_eq!(sem.waiters(), 0);
}

#[test]
fn dropping_unpolled_and_completed_futures_changes_nothing() {
    let sem = Semaphore::new(1);
    drop(sem.acquire());
    drop(sem.acquire_many(5));
    let mut f = pin!(sem.acquire());
    let Poll::Ready(p) = poll_once(f.as_mut()) else { panic!() };
    drop(p);
    assert_eq!((sem.available_permits(), sem.waiters()), (1, 0));
}

#[test]
#[should_panic(expected = "polled after completion")]
fn polling_after_completion_panics() {
    let sem = Semaphore::new(1);
    let mut f = pin!(sem.acquire());
    let _p = poll_once(f.as_mut());
    let _ = poll_once(f.as_mut());
}

#[test]
fn the_latest_waker_is_the_one_woken() {
    let sem = Semaphore::new(1);
    let held = sem.try_acquire().unwrap();
    let (old, old_waker) = counting_waker();
    let (new, new_waker) = counting_waker();
    let mut f = pin!(sem.acquire());
    assert!(poll_with(f.as_mut(), &old_waker).is_pending());
    assert!(poll_with(f.as_mut(), &new_waker).is_pending());
    drop(held);
    assert_eq!((old.wakes(), new.wakes()), (0, 1));
}

#[test]
fn requests_above_capacity_fail_at_once() {
    let sem = Semaphore::new(3);
    let err = block_on(sem.acquire_many(4)).unwrap_err();
    assert_eq!(err, Error::InsufficientCapacity { requested: 4, capacity: 3 });
    assert_eq!(
        sem.try_acquire_many(4).unwrap_err(),
        TryAcquireError::InsufficientCapacity { requested: 4, capacity: 3 }
    );
    // Even while permits are held, or someone is queued: it can never fit.
    let _held = sem.try_acquire().unwrap();
    let mut queued = pin!(sem.acquire_many(3));
    assert!(poll_once(queued.as_mut()).is_pending());
    assert!(matches!(
        poll_once(pin!(sem.acquire_many(usize::MAX))),
        Poll::Ready(Err(Error::InsufficientCapacity { .. }))
    ));
    assert!(
        format!("{}", TryAcquireError::InsufficientCapacity { requested: 4, capacity: 3 })
            .contains("capacity of 3")
    );
}

#[test]
fn zero_permits_are_granted_at_once() {
    let sem = Semaphore::new(1);
    let _held = sem.try_acquire().unwrap();
    let mut queued = pin!(sem.acquire());
    assert!(poll_once(queued.as_mut()).is_pending());
    let zero = block_on(sem.acquire_many(0)).unwrap();
    assert_eq!(zero.num_permits(), 0);
    assert_eq!(sem.try_acquire_many(0).unwrap().num_permits(), 0);
    drop(zero);
    assert_eq!(sem.available_permits(), 0);
    // Even a semaphore with no permits at all.
    let empty = Semaphore::new(0);
    assert!(block_on(empty.acquire_many(0)).is_ok());
}

#[test]
fn forget_shrinks_the_capacity() {
    let sem = Semaphore::new(3);
    let two = sem.try_acquire_many(2).unwrap();
    two.forget();
    assert_eq!((sem.available_permits(), sem.capacity()), (1, 1));
    assert_eq!(
        sem.try_acquire_many(2).unwrap_err(),
        TryAcquireError::InsufficientCapacity { requested: 2, capacity: 1 }
    );
    sem.add_permits(2);
    assert_eq!((sem.available_permits(), sem.capacity()), (3, 3));
}

#[test]
fn shrinking_below_a_queued_request_fails_it_instead_of_hanging() {
    let sem = Semaphore::new(3);
    let held = sem.try_acquire_many(2).unwrap();
    let (counter, w) = counting_waker();
    let mut big = pin!(sem.acquire_many(3));
    let mut small = pin!(sem.acquire());
    assert!(poll_with(big.as_mut(), &w).is_pending());
    assert!(poll_once(small.as_mut()).is_pending());
    held.forget(); // capacity 1: the big request can never be served
    assert_eq!(counter.wakes(), 1);
    assert!(matches!(
        poll_once(big.as_mut()),
        Poll::Ready(Err(Error::InsufficientCapacity { requested: 3, capacity: 1 }))
    ));
    // And the small waiter behind it gets the remaining permit.
    assert!(poll_once(small.as_mut()).is_ready());
}

#[test]
fn forget_permits_removes_only_free_permits() {
    let sem = Semaphore::new(4);
    let held = sem.try_acquire_many(3).unwrap();
    assert_eq!(sem.forget_permits(2), 1);
    assert_eq!((sem.available_permits(), sem.capacity()), (0, 3));
    drop(held);
    assert_eq!((sem.available_permits(), sem.capacity()), (3, 3));
}

#[test]
fn add_permits_serves_waiters_and_saturates() {
    let sem = Semaphore::new(0);
    let mut a = pin!(sem.acquire_many(2));
    let (counter, w) = counting_waker();
    // Capacity 0 < 2: refused at once.
    assert!(poll_with(a.as_mut(), &w).is_ready());
    let mut one = pin!(sem.acquire());
    assert!(poll_with(one.as_mut(), &w).is_pending()); // `acquire` waits for added permits
    sem.add_permits(1);
    assert_eq!(counter.wakes(), 1);
    assert!(poll_once(one.as_mut()).is_ready());
    sem.add_permits(usize::MAX);
    assert_eq!(sem.capacity(), usize::MAX);
}

#[test]
fn split_and_merge_move_permits_between_handles() {
    let sem = Semaphore::new(5);
    let mut p = sem.try_acquire_many(5).unwrap();
    assert!(p.split(6).is_none());
    let q = p.split(2).unwrap();
    assert_eq!((p.num_permits(), q.num_permits()), (3, 2));
    drop(q);
    assert_eq!(sem.available_permits(), 2);
    p.merge(sem.try_acquire_many(2).unwrap());
    assert_eq!(p.num_permits(), 5);
    drop(p);
    assert_eq!(sem.available_permits(), 5);
}

/// Issue 8: with `usize::MAX` permits out, `add_permits` (which saturates the
/// capacity) must not hand out permits beyond it: the permits out could then sum past
/// `usize::MAX`, and merging them panicked (debug) or wrapped and lost them (release). Free
/// plus held permits always equal the capacity, so a merge can never overflow.
#[test]
fn merging_with_usize_max_permits_out_neither_panics_nor_loses_permits() {
    let sem = Semaphore::new(usize::MAX);
    let mut all = sem.try_acquire_many(usize::MAX).unwrap();
    sem.add_permits(1);
    if let Ok(more) = sem.try_acquire() {
        all.merge(more);
    }
    assert_eq!(all.num_permits(), usize::MAX);
    assert_eq!((sem.available_permits(), sem.capacity()), (0, usize::MAX));
    // Halves merged back sum to exactly usize::MAX.
    let half = all.split(usize::MAX / 2 + 1).unwrap();
    all.merge(half);
    assert_eq!(all.num_permits(), usize::MAX);
    drop(all);
    assert_eq!((sem.available_permits(), sem.capacity()), (usize::MAX, usize::MAX));

    let sem = Arc::new(Semaphore::new(usize::MAX));
    let mut all = sem.clone().try_acquire_many_owned(usize::MAX).unwrap();
    sem.add_permits(usize::MAX);
    if let Ok(more) = sem.clone().try_acquire_owned() {
        all.merge(more);
    }
    drop(all);
    assert_eq!((sem.available_permits(), sem.capacity()), (usize::MAX, usize::MAX));
}

/// `add_permits` near the top adds only what fits under `usize::MAX` to both the free permits
/// and the capacity, so free + held stays equal to the capacity.
#[test]
fn add_permits_saturates_free_and_capacity_together() {
    let sem = Semaphore::new(usize::MAX - 3);
    let held = sem.try_acquire_many(10).unwrap();
    sem.add_permits(5);
    assert_eq!(sem.capacity(), usize::MAX);
    assert_eq!(sem.available_permits(), usize::MAX - 10);
    drop(held);
    assert_eq!(sem.available_permits(), usize::MAX);
}

#[test]
#[should_panic(expected = "different")]
fn merging_permits_of_different_semaphores_panics() {
    let (a, b) = (Semaphore::new(1), Semaphore::new(1));
    let mut pa = a.try_acquire().unwrap();
    pa.merge(b.try_acquire().unwrap());
}

#[test]
fn owned_permits_hold_the_semaphore() {
    let sem = Arc::new(Semaphore::new(2));
    let p1 = block_on(sem.clone().acquire_owned());
    let p2 = sem.clone().try_acquire_owned().unwrap();
    assert!(sem.clone().try_acquire_owned().is_err());
    let mut waiting = Box::pin(sem.clone().acquire_many_owned(2));
    assert!(poll_once(waiting.as_mut()).is_pending());
    let released = std::thread::spawn(move || drop((p1, p2)));
    released.join().unwrap();
    let Poll::Ready(Ok(both)) = poll_once(waiting.as_mut()) else { panic!() };
    assert_eq!(both.num_permits(), 2);
    assert!(Arc::ptr_eq(both.semaphore(), &sem));
    assert_eq!(
        block_on(sem.clone().acquire_many_owned(3)).unwrap_err(),
        Error::InsufficientCapacity { requested: 3, capacity: 2 }
    );
    assert_eq!(
        sem.clone().try_acquire_many_owned(3).unwrap_err(),
        TryAcquireError::InsufficientCapacity { requested: 3, capacity: 2 }
    );
    drop(both);
    drop(waiting);
    assert_eq!(Arc::strong_count(&sem), 1);
    assert_eq!(sem.available_permits(), 2);
}

#[test]
fn futures_and_permits_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn owned<T: Send + Sync + 'static>(_: &T) {}
    let sem = Semaphore::new(1);
    send_sync(&sem);
    send_sync(&sem.acquire());
    send_sync(&sem.acquire_many(1));
    send_sync(&sem.try_acquire().unwrap());
    let sem = Arc::new(sem);
    owned(&sem.clone().acquire_owned());
    owned(&sem.clone().acquire_many_owned(1));
    owned(&sem.clone().try_acquire_owned().unwrap());
}

#[test]
fn works_in_a_static() {
    static SEM: Semaphore = Semaphore::new(2);
    let p = block_on(SEM.acquire_many(2)).unwrap();
    assert_eq!(SEM.available_permits(), 0);
    drop(p);
    assert!(format!("{SEM:?}").contains("available_permits: 2"));
}

#[test]
#[cfg_attr(miri, ignore)]
fn threads_never_exceed_the_permits() {
    const CAP: usize = 3;
    const THREADS: usize = 8;
    const ROUNDS: usize = 1000;
    let sem = Arc::new(Semaphore::new(CAP));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (sem, in_flight, max_seen) = (sem.clone(), in_flight.clone(), max_seen.clone());
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    let n = 1 + (t + i) % 2;
                    let permit = block_on(sem.acquire_many(n)).unwrap();
                    let now = in_flight.fetch_add(n, Ordering::SeqCst) + n;
                    max_seen.fetch_max(now, Ordering::SeqCst);
                    assert!(now <= CAP, "{now} permits in flight");
                    if i % 7 == 0 {
                        std::thread::yield_now();
                    }
                    in_flight.fetch_sub(n, Ordering::SeqCst);
                    drop(permit);
                    // Some cancellations mid-wait too.
                    if i % 5 == 0 {
                        let mut f = pin!(sem.acquire());
                        let _ = poll_once(f.as_mut());
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(max_seen.load(Ordering::SeqCst) <= CAP);
    assert_eq!((sem.available_permits(), sem.waiters()), (CAP, 0));
}

/// A small threaded run that Miri can afford: its data-race detector and borrow checker see
/// nodes linked on one thread and granted, unlinked and woken from another.
#[test]
fn a_few_threads_hand_permits_to_each_other() {
    let sem = Arc::new(Semaphore::new(1));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (sem, in_flight) = (sem.clone(), in_flight.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let permit = block_on(sem.acquire());
                    assert_eq!(in_flight.fetch_add(1, Ordering::SeqCst), 0);
                    std::thread::yield_now();
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!((sem.available_permits(), sem.waiters()), (1, 0));
}
