//! Loom models of the fair semaphore: permits never over-granted, no lost wake-ups, and the
//! cancelled-head hand-off of embassy-sync #6964.
//!
//! `RUSTFLAGS="--cfg tollgate_loom" cargo test -p tollgate --test loom_semaphore --release`
//! (add `-- --nocapture --test-threads 1` to see how many executions each model explored).
#![cfg(tollgate_loom)]

mod loom_support;

use loom_support::{block_on, model, poll_once};
use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use tollgate::Semaphore;

/// Three tasks contend for two permits, one of them asking for both at once: the permits
/// in use never exceed two, and every task finishes (a lost wake-up would leave a thread parked
/// forever, which loom reports as a deadlock).
#[test]
fn permits_are_never_over_granted_and_no_wake_up_is_lost() {
    model("contention", || {
        let sem = Arc::new(Semaphore::new(2));
        let in_use = Arc::new(AtomicUsize::new(0));
        let task = |n: usize| {
            let (sem, in_use) = (sem.clone(), in_use.clone());
            move || {
                let permit = block_on(sem.acquire_many(n)).unwrap();
                let now = in_use.fetch_add(n, Ordering::SeqCst) + n;
                assert!(now <= 2, "{now} permits in use");
                in_use.fetch_sub(n, Ordering::SeqCst);
                drop(permit);
            }
        };
        let t1 = thread::spawn(task(2));
        let t2 = thread::spawn(task(1));
        // The third task uses the infallible `acquire`.
        {
            let permit = block_on(sem.acquire());
            let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(now <= 2, "{now} permits in use");
            in_use.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        }
        t1.join().unwrap();
        t2.join().unwrap();
        assert_eq!((sem.available_permits(), sem.waiters()), (2, 0));
    });
}

/// A two-permit request between one-permit holders: it is served once both are back, and the
/// permit count adds up at the end.
#[test]
fn a_big_request_is_served_between_small_ones() {
    model("big-and-small", || {
        let sem = Arc::new(Semaphore::new(2));
        let held = sem.try_acquire().unwrap();
        let big = {
            let sem = sem.clone();
            thread::spawn(move || {
                let permit = block_on(sem.acquire_many(2)).unwrap();
                assert_eq!(sem.available_permits(), 0);
                drop(permit);
            })
        };
        let small = {
            let sem = sem.clone();
            thread::spawn(move || drop(block_on(sem.acquire())))
        };
        drop(held);
        big.join().unwrap();
        small.join().unwrap();
        assert_eq!((sem.available_permits(), sem.waiters()), (2, 0));
    });
}

/// embassy-sync #6964: capacity 1; A holds; B (head) and C wait; A is released on one thread
/// while B is cancelled on another. Whichever order they land in, C must get the permit.
#[test]
fn cancelling_the_head_while_another_thread_releases_wakes_the_next() {
    model("cancel-head", || {
        let sem = Arc::new(Semaphore::new(1));
        let a = sem.clone().try_acquire_owned().unwrap();
        let mut b = Box::pin(sem.clone().acquire_owned());
        assert!(poll_once(b.as_mut()).is_pending());
        // C queues behind B here, so the order is fixed, then waits on its own thread (its
        // first poll there swaps in the real waker).
        let mut c = Box::pin(sem.clone().acquire_owned());
        assert!(poll_once(c.as_mut()).is_pending());
        let c_thread = {
            let sem = sem.clone();
            thread::spawn(move || {
                let permit = block_on(c);
                assert_eq!(sem.available_permits(), 0);
                drop(permit);
            })
        };
        let releaser = thread::spawn(move || drop(a));
        drop(b);
        releaser.join().unwrap();
        c_thread.join().unwrap();
        assert_eq!((sem.available_permits(), sem.waiters()), (1, 0));
    });
}

/// The blocked-head shape: capacity 2, one permit held; B (head) wants both, C behind it wants
/// one. B is cancelled while the held permit is released on another thread: B may be granted
/// first (and must return both permits) or cancelled while blocked (and must pass the free
/// permit on). Either way C gets a permit and everything is back at the end.
#[test]
fn cancelling_a_blocked_head_while_another_thread_releases_wakes_the_next() {
    model("cancel-blocked-head", || {
        let sem = Arc::new(Semaphore::new(2));
        let a = sem.clone().try_acquire_owned().unwrap();
        let mut b = Box::pin(sem.clone().acquire_many_owned(2));
        assert!(poll_once(b.as_mut()).is_pending());
        let mut c = Box::pin(sem.clone().acquire_owned());
        assert!(poll_once(c.as_mut()).is_pending());
        let c_thread = thread::spawn(move || drop(block_on(c)));
        let releaser = thread::spawn(move || drop(a));
        drop(b);
        releaser.join().unwrap();
        c_thread.join().unwrap();
        assert_eq!((sem.available_permits(), sem.waiters()), (2, 0));
    });
}
