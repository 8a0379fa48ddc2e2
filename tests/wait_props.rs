//! The wait machine (`src/wait.rs`) against a reference: a property test of random starts,
//! polls, cancellations and clock moves, checked for FIFO, exact GCRA books and no lost
//! capacity; and the edge cases an adversarial review of it found (a coarse timer that fires
//! early, a bounded waiter granted the line after its deadline, the late-head rule, odd inputs,
//! clocks that step back, the `Arc`-owned future's life cycle).

use core::cell::Cell;
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll};
use core::time::Duration;

use futures_util::task::noop_waker;
use proptest::prelude::*;
use tollgate::{AsyncRateLimiter, Clock, Error, Instant, ManualClock, Rate, Timer, TokenBucket};

fn poll<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    let waker = noop_waker();
    f.poll(&mut Context::from_waker(&waker))
}

fn ms(m: u64) -> Instant {
    Instant::from_millis(m)
}

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

// ---------------------------------------------------------------------------------------------
// A timer with millisecond resolution that rounds deadlines DOWN (fires up to 1 ms early by the
// limiter's nanosecond clock), as a tick-based timer with a truncating conversion does. It
// counts `sleep_until` calls and panics past a limit, so a hot loop inside a single `poll`
// shows up as a panic instead of hanging the test.
// ---------------------------------------------------------------------------------------------

struct CoarseTimer<'a> {
    clock: &'a ManualClock,
    calls: Cell<u32>,
}

impl Clock for CoarseTimer<'_> {
    fn now(&self) -> Instant {
        self.clock.now()
    }
}

impl Timer for CoarseTimer<'_> {
    type Sleep<'b>
        = <ManualClock as Timer>::Sleep<'b>
    where
        Self: 'b;
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep<'_> {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        assert!(n < 10_000, "sleep_until called {n} times: the wait machine spins inside poll");
        let floor = Instant::from_nanos(deadline.as_nanos() / 1_000_000 * 1_000_000);
        self.clock.sleep_until(floor)
    }
}

/// Head phase: ready at 1.5 ms, the clock reads 1.2 ms; the timer's tick for 1.5 ms is 1 ms,
/// already passed, so every re-armed sleep is ready at once and `poll` never returns.
#[test]
fn a_timer_firing_early_never_spins_inside_poll_as_head() {
    let clock = ManualClock::new();
    let timer = CoarseTimer { clock: &clock, calls: Cell::new(0) };
    // One token every 1.5 ms.
    let l = AsyncRateLimiter::with_timer(Rate::new(2, Duration::from_millis(3)), 1, timer);
    l.try_acquire().unwrap();
    let mut w = pin!(l.acquire_n(1));
    assert!(poll(w.as_mut()).is_pending()); // head, due at 1.5 ms; sleeps on the 1 ms tick
    clock.set(Instant::from_micros(1_200));
    // Should return Pending (re-armed, waiting for the clock). Spins instead.
    assert!(poll(w.as_mut()).is_pending());
}

/// Queued phase of a bounded waiter: the deadline sleep has the same problem.
#[test]
fn a_timer_firing_early_never_spins_inside_poll_while_queued() {
    let clock = ManualClock::new();
    let timer = CoarseTimer { clock: &clock, calls: Cell::new(0) };
    let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, timer);
    l.try_acquire().unwrap();
    let mut head = pin!(l.acquire_n(1));
    assert!(poll(head.as_mut()).is_pending()); // due at 1 s
    // Deadline 2.5005 s: its tick is 2.500 s.
    let mut bounded = pin!(l.acquire_within(Duration::from_micros(2_500_500)));
    assert!(poll(bounded.as_mut()).is_pending());
    clock.set(Instant::from_micros(2_500_200)); // head not polled (stalled); tick passed
    let _ = poll(bounded.as_mut()); // must return (Pending or the refusal); spins instead
}

// ---------------------------------------------------------------------------------------------
// Late heads (booking_instant_at).
// ---------------------------------------------------------------------------------------------

/// Found in review: the first late-head rule credited one interval even after a long stall, so
/// a whole extra burst went out at one real instant beside the late head. A real pause is not
/// credited: beside the late head, at most the burst goes at once.
#[test]
fn a_stall_is_not_credited_to_the_next_head() {
    let clock = ManualClock::new();
    let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 2, &clock);
    l.try_acquire_n(2).unwrap();
    let mut a = pin!(l.acquire_n(2));
    let mut b = pin!(l.acquire_n(2));
    assert!(poll(a.as_mut()).is_pending()); // due at 2 s
    assert!(poll(b.as_mut()).is_pending());
    clock.set(secs(10)); // the executor stalls 8 s
    assert_eq!(poll(a.as_mut()), Poll::Ready(Ok(()))); // the late one
    let mut at_ten = 0;
    if poll(b.as_mut()) == Poll::Ready(Ok(())) {
        at_ten += 2;
    }
    if l.try_acquire_n(2).is_ok() {
        at_ten += 2;
    }
    assert!(
        at_ten <= l.burst(),
        "{at_ten} tokens at one real instant beside the late head (burst 2)"
    );
}

/// A waiter that joins after a long pause gets nothing back from it.
#[test]
fn a_waiter_joining_after_a_pause_books_at_the_hand_over() {
    let clock = ManualClock::new();
    let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
    l.try_acquire().unwrap();
    let mut a = pin!(l.acquire_n(1));
    assert!(poll(a.as_mut()).is_pending()); // due at 1 s
    clock.set(ms(9_900));
    let mut b = pin!(l.acquire_n(1)); // arrives at 9.9 s
    assert!(poll(b.as_mut()).is_pending());
    clock.set(secs(10));
    assert_eq!(poll(a.as_mut()), Poll::Ready(Ok(())));
    // The bucket has been full since 2 s (a pause, not a late hand-over): b books at 10 s and
    // goes at once...
    assert_eq!(poll(b.as_mut()), Poll::Ready(Ok(())));
    // ...and nothing is free before 11 s (to the bucket's fixed-point slack of a nanosecond).
    let ready = l.try_acquire().unwrap_err().ready_at().unwrap();
    assert!(ready >= secs(11) - Duration::from_nanos(1) && ready <= secs(11), "{ready:?}");
}

/// Found in review: a bounded waiter held past its deadline by a stalled line, then granted
/// the line, was admitted (booked as of an earlier reading) although its bound had passed.
/// Whether the executor polls it or the head first, it is refused.
#[test]
fn a_bounded_waiter_granted_the_line_after_its_deadline_is_refused() {
    let clock = ManualClock::new();
    let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
    l.try_acquire().unwrap();
    let mut a = pin!(l.acquire_n(1));
    assert!(poll(a.as_mut()).is_pending()); // due at 1 s
    clock.set(ms(600));
    let mut b = pin!(l.acquire_within(Duration::from_millis(1_500))); // deadline 2.1 s
    assert!(poll(b.as_mut()).is_pending()); // estimated 2 s: fits
    clock.set(secs(3)); // stall past b's deadline
    assert_eq!(poll(a.as_mut()), Poll::Ready(Ok(())));
    let got = poll(b.as_mut());
    assert!(
        matches!(got, Poll::Ready(Err(Error::MaxWaitExceeded { .. }))),
        "a wait bounded at 1.5 s from 0.6 s returned {got:?} at 3 s"
    );
}

// ---------------------------------------------------------------------------------------------
// Odd inputs.
// ---------------------------------------------------------------------------------------------

#[test]
fn odd_inputs_do_not_panic_or_hang() {
    let clock = ManualClock::new();
    let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 3, &clock);
    // n = 0, n = burst, n = u64::MAX
    assert_eq!(poll(pin!(l.acquire_n(0))), Poll::Ready(Ok(())));
    assert_eq!(poll(pin!(l.acquire_n(3))), Poll::Ready(Ok(())));
    assert_eq!(
        poll(pin!(l.acquire_n(u64::MAX))),
        Poll::Ready(Err(Error::InsufficientCapacity { requested: u64::MAX, capacity: 3 }))
    );
    // Duration::MAX, deadline in the past, Instant::MAX deadline
    let mut w = pin!(l.acquire_n_within(3, Duration::MAX));
    assert!(poll(w.as_mut()).is_pending());
    let r = poll(pin!(l.acquire_n_before(1, Instant::ZERO)));
    assert!(matches!(r, Poll::Ready(Err(Error::MaxWaitExceeded { .. }))), "{r:?}");
    // zero tokens behind a waiter, bounded with a past deadline: refused, not hung
    let r = poll(pin!(l.acquire_n_before(0, Instant::ZERO)));
    assert!(matches!(r, Poll::Ready(Err(Error::MaxWaitExceeded { .. }))), "{r:?}");
    let mut z = pin!(l.acquire_n_before(0, Instant::MAX));
    assert!(poll(z.as_mut()).is_pending());
    clock.set(secs(3));
    assert_eq!(poll(w.as_mut()), Poll::Ready(Ok(())));
    assert_eq!(poll(z.as_mut()), Poll::Ready(Ok(())));
    assert_eq!(l.waiters(), 0);
}

/// A clock that steps back while a waiter is in line: nothing panics, nobody goes early.
#[test]
fn clock_stepping_back() {
    let clock = ManualClock::starting_at(secs(100));
    let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
    l.try_acquire().unwrap();
    let mut a = pin!(l.acquire_n(1)); // due 101
    let mut b = pin!(l.acquire_within(Duration::from_secs(5))); // due 102, deadline 105
    assert!(poll(a.as_mut()).is_pending());
    assert!(poll(b.as_mut()).is_pending());
    clock.set(secs(50));
    assert!(poll(a.as_mut()).is_pending());
    assert!(poll(b.as_mut()).is_pending());
    clock.set(secs(101));
    assert_eq!(poll(a.as_mut()), Poll::Ready(Ok(())));
    assert!(poll(b.as_mut()).is_pending());
    clock.set(secs(90)); // back again, b is head now
    assert!(poll(b.as_mut()).is_pending());
    clock.set(secs(102));
    assert_eq!(poll(b.as_mut()), Poll::Ready(Ok(())));
}

/// The Arc-owned future: moved before the first poll, dropped as head / queued / granted,
/// forgotten while queued (leaks, never dangles), dropped from another thread. Not under miri:
/// the forgotten future is a deliberate leak, which miri reports as an error (the owned
/// future's `unsafe` is checked by miri in `src/wait.rs` `owned_waits_are_static_and_cancel_free`).
#[test]
#[cfg_attr(miri, ignore)]
fn owned_future_lifecycle() {
    use std::sync::Arc;
    let clock = Arc::new(ManualClock::new());
    let l = Arc::new(AsyncRateLimiter::with_timer(Rate::per_second(1), 1, Arc::clone(&clock)));
    l.try_acquire().unwrap();
    let moved = Arc::clone(&l).acquire_n_owned(1);
    let moved = core::convert::identity(moved); // moved while unpolled
    let mut head = Box::pin(moved);
    let mut second = Box::pin(Arc::clone(&l).acquire_n_owned(1));
    let mut third = Box::pin(Arc::clone(&l).acquire_n_owned(1));
    assert!(poll(head.as_mut()).is_pending());
    assert!(poll(second.as_mut()).is_pending());
    assert!(poll(third.as_mut()).is_pending());
    // Forget the middle one while queued: leaks its Arc, node stays linked in leaked memory.
    core::mem::forget(second);
    // Drop the head from another thread.
    std::thread::spawn(move || drop(head)).join().unwrap();
    // The forgotten one now holds the line forever (it is granted, never polled, never
    // dropped): the third waits behind it. That is the price of mem::forget, not unsound.
    clock.set(secs(5));
    assert!(poll(third.as_mut()).is_pending());
    drop(third);
    assert_eq!(Arc::strong_count(&l), 2); // ours + the forgotten future's
}

// ---------------------------------------------------------------------------------------------
// Property test: random start / try / cancel / advance, every live future polled (in arrival
// order, to a fixpoint) after every step, and the clock never jumps over a sleeper's deadline
// (no stall, so the late-head credit never applies). Checks:
//  * FIFO: no waiter completes while an earlier, still-live waiter is pending;
//  * GCRA conformance in real time: replaying every admission (waiters and try_acquire alike)
//    at its real instant into a fresh bucket of the same config succeeds every time
//    (invariant 7, and stronger: exact GCRA);
//  * no capacity lost (invariant 8): after all live waiters are dropped, the limiter's bucket is
//    in exactly the state of the replay bucket (cancelled callers left no trace);
//  * no hang: after the actions, the survivors all complete when time runs on.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Action {
    Start(u64),
    StartWithin(u64, u64), // n, max wait in microseconds
    Try(u64),
    Cancel(usize),
    Advance(u64), // microseconds, capped at the next deadline
}

fn action(burst: u64) -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..=burst).prop_map(Action::Start),
        2 => ((0..=burst), 0u64..4_000_000).prop_map(|(n, us)| Action::StartWithin(n, us)),
        1 => (1..=burst).prop_map(Action::Try),
        2 => any::<usize>().prop_map(Action::Cancel),
        4 => (0u64..3_000_000).prop_map(Action::Advance),
    ]
}

type Fut<'a> = Pin<Box<tollgate::limiter::AcquireTokens<'a, &'a ManualClock>>>;

struct Live<'a> {
    id: usize,
    n: u64,
    bounded: bool,
    fut: Fut<'a>,
}

fn run_case(rate: u32, burst: u64, actions: &[Action], stall: bool) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let l = AsyncRateLimiter::with_timer(Rate::per_second(rate), burst, &clock);
    let replay = TokenBucket::new(Rate::per_second(rate), burst);
    let mut live: Vec<Live<'_>> = Vec::new();
    let mut next_id = 0;
    let mut admitted: Vec<(Instant, u64, &'static str)> = Vec::new();

    let settle = |live: &mut Vec<Live<'_>>,
                  admitted: &mut Vec<(Instant, u64, &'static str)>|
     -> Result<(), TestCaseError> {
        loop {
            let mut progressed = false;
            let mut i = 0;
            while i < live.len() {
                match poll(live[i].fut.as_mut()) {
                    Poll::Ready(Err(e)) => {
                        // Only a bounded waiter may give up, and only at its deadline.
                        prop_assert!(live[i].bounded, "unbounded waiter failed: {:?}", e);
                        prop_assert!(matches!(e, Error::MaxWaitExceeded { .. }), "{:?}", e);
                        live.remove(i);
                        progressed = true;
                    }
                    Poll::Ready(Ok(())) => {
                        // FIFO: everyone before it in `live` arrived earlier and is still live.
                        prop_assert!(
                            i == 0,
                            "waiter {} completed while earlier waiter {} still waits",
                            live[i].id,
                            live[0].id
                        );
                        let w = live.remove(i);
                        admitted.push((clock.now(), w.n, "waiter"));
                        progressed = true;
                    }
                    Poll::Pending => i += 1,
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    };

    for a in actions {
        match *a {
            Action::Start(n) | Action::StartWithin(n, _) => {
                let bounded = matches!(a, Action::StartWithin(..));
                let mut fut: Fut<'_> = match *a {
                    Action::StartWithin(_, us) => {
                        Box::pin(l.acquire_n_within(n, Duration::from_micros(us)))
                    }
                    _ => Box::pin(l.acquire_n(n)),
                };
                match poll(fut.as_mut()) {
                    Poll::Ready(Ok(())) => {
                        prop_assert!(live.is_empty(), "a newcomer overtook {} waiters", live.len());
                        admitted.push((clock.now(), n, "fast"));
                    }
                    Poll::Ready(Err(e)) => {
                        prop_assert!(bounded, "unbounded start failed: {:?}", e);
                    }
                    Poll::Pending => {
                        live.push(Live { id: next_id, n, bounded, fut });
                    }
                }
                next_id += 1;
            }
            Action::Try(n) => {
                if l.try_acquire_n(n).is_ok() {
                    prop_assert!(live.is_empty(), "try_acquire overtook the line");
                    admitted.push((clock.now(), n, "try"));
                }
            }
            Action::Cancel(i) => {
                if !live.is_empty() {
                    let i = i % live.len();
                    drop(live.remove(i));
                }
            }
            Action::Advance(us) => {
                let target = clock.now().saturating_add(Duration::from_micros(us));
                let target = match clock.next_deadline() {
                    Some(d) if d < target && !stall => d.max(clock.now()),
                    _ => target,
                };
                clock.set(target);
            }
        }
        settle(&mut live, &mut admitted)?;
    }
    // No hang: run time on until everyone is served.
    let mut guard = 0;
    while !live.is_empty() {
        guard += 1;
        prop_assert!(guard < 10_000, "survivors never served: {} left", live.len());
        prop_assert!(clock.advance_to_next_deadline(), "{} waiters but no sleeper", live.len());
        settle(&mut live, &mut admitted)?;
    }
    // Replay at real instants.
    for &(t, n, kind) in &admitted {
        if n == 0 {
            continue;
        }
        prop_assert!(
            replay.try_acquire_at(n, t).is_ok(),
            "{kind} admission of {n} at {t:?} does not conform to GCRA; admissions: {admitted:?}"
        );
    }
    // Same state as the replay: probe when `k` tokens are ready, for every k.
    let now = clock.now();
    for k in 1..=burst {
        prop_assert_eq!(
            l.bucket().peek_at(k, now),
            replay.peek_at(k, now),
            "bucket differs from the replay for {} tokens (capacity lost or gained)",
            k
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    #[cfg_attr(miri, ignore)] // thousands of schedules: too slow under miri
    fn random_schedules_keep_fifo_exact_books_and_lose_nothing(
        rate in prop::sample::select(vec![1u32, 2, 4, 5, 10]),
        burst in 1u64..4,
        actions in prop::collection::vec(action(3), 1..60),
    ) {
        let actions: Vec<Action> = actions
            .into_iter()
            .map(|a| match a {
                Action::Start(n) => Action::Start(n.min(burst)),
                Action::Try(n) => Action::Try(n.min(burst)),
                other => other,
            })
            .collect();
        run_case(rate, burst, &actions, false)?;
    }
}

/// The harness is not vacuous: with a stall (the clock jumping over the head's instant) the
/// late head and the one after it go together in real time, and the real-time GCRA replay
/// catches it.
#[test]
fn harness_catches_the_stall_credit() {
    let actions =
        [Action::Start(1), Action::Start(1), Action::Start(1), Action::Advance(2_900_000)];
    let r = run_case(1, 1, &actions, true);
    assert!(r.is_err(), "expected the replay to refuse the credited admission");
    eprintln!("{r:?}");
}
