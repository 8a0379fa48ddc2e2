//! The one wait machine: every async token wait — `acquire*`, `run`/`wrap`, `#[limit_rate]`,
//! the `Stream` adapters and the tower layer — goes through [`TokenWait`].
//!
//! # Implementation details
//!
//! *Queue first, reserve at the head.* A caller that cannot be admitted at once joins the
//! limiter's [`WaitLine`]: a FIFO queue (a one-permit [`Semaphore`], whose intrusive, cancel-safe
//! list is the queue) plus two counters. Only the caller holding the permit — the head —
//! reserves tokens in the bucket and sleeps on the timer; everyone behind it sleeps on the
//! queue and is woken exactly once, when the head hands the permit on.
//!
//! Why only the head reserves: a reservation can be undone exactly only while it is the newest
//! one in the bucket. If every waiter reserved on arrival, a waiter cancelled in the middle of
//! the queue (a `timeout` around `acquire`, a `select!`, a client that hangs up) would leave
//! its tokens spent, and a storm of timeouts would drain the limiter to a fraction of its rate.
//! With one reservation outstanding at a time, the head's is always the newest — nobody else
//! can take tokens while it sleeps (the fast path is closed while anyone waits, and the bucket
//! itself refuses everyone until the head's instant) — so a cancelled head gives its tokens
//! back exactly and the next waiter reserves as if it had never been there.
//!
//! The fast path (tokens free, nobody waiting) is one atomic load and the bucket's single CAS:
//! no lock where the target has native 64-bit atomics (elsewhere the CAS is one critical
//! section, see `sync.rs`). The line's counters are advisory and need no ordering with the bucket: the bucket's
//! compare-and-swap alone decides who gets tokens; the counters only keep newcomers from
//! overtaking waiters (FIFO) and let bounded waits estimate their instant up front.
//!
//! *Late heads.* A head is handed the line when its predecessor's task runs, which is after the
//! predecessor's instant by the timer's lateness (tokio rounds sleeps up to the millisecond)
//! plus a task switch. Booked at that later reading, a fast limiter with a small burst would
//! lose that lateness on every token (6 % at 1 000/s with a burst of 1). So when the bucket
//! has been full for less than one emission interval of the new head's tokens, the head books
//! as of the moment it became full (never before it arrived): exactly the schedule of a line
//! that is never late. A longer gap is a real pause and is not credited. The bucket's books
//! stay exact GCRA (its TAT only moves forward, and the bound of invariant 7 holds on booked
//! instants whatever clock readings they were made with); in real time admissions lag their
//! booked instants by the lateness that every timer has, and by no more.
//!
//! *Bounded waits.* The deadline is fixed at the first poll from the same clock reading as the
//! up-front check, so a zero budget admits exactly when the request fits now. If the tokens of
//! everyone in line plus the caller's own would not be ready by the deadline, the wait is
//! refused at once and takes nothing. A bounded waiter in line also sleeps on its deadline, so
//! a line slower than estimated (a timer that wakes the head late) cannot hold it past its
//! bound.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use pin_project_lite::pin_project;

use crate::bucket::Reservation;
use crate::semaphore::{Acquire, Semaphore, SemaphorePermit};
use crate::sync::{AtomicU64, AtomicUsize, Ordering, const_fn};
use crate::{AsyncRateLimiter, Error, Instant, Timer, TokenBucket};

/// The waiting line of one limiter: the FIFO queue and what is waiting in it.
#[derive(Debug)]
pub(crate) struct WaitLine {
    /// Whoever holds its one permit is the head: the only waiter that reserves.
    head: Semaphore,
    /// Callers in line, head included. Zero means the fast path is open.
    waiters: AtomicUsize,
    /// Tokens asked for by waiters that have not reserved yet (saturating), for estimates.
    queued_tokens: AtomicU64,
}

impl WaitLine {
    const_fn! {
        /// An empty line.
        pub(crate) fn new() -> Self {
            Self {
                head: Semaphore::new(1),
                waiters: AtomicUsize::new(0),
                queued_tokens: AtomicU64::new(0),
            }
        }
    }

    /// Whether nobody is waiting, so a newcomer may take free tokens without queueing.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.waiters.load(Ordering::Acquire) == 0
    }

    /// Callers in line, head included.
    pub(crate) fn waiters(&self) -> usize {
        self.waiters.load(Ordering::Acquire)
    }

    /// When `n` more tokens would be ready for a caller joining the line now: after everyone
    /// already in line (their tokens, reserved or not) has been served.
    pub(crate) fn estimate_ready_at(&self, bucket: &TokenBucket, n: u64, now: Instant) -> Instant {
        let ahead = self.queued_tokens.load(Ordering::Acquire);
        bucket.estimate_ready_at(ahead.saturating_add(n), now)
    }

    /// Joins the line for `n` tokens; the ticket leaves it when dropped.
    fn join(&self, n: u64) -> Ticket<'_> {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        // Saturating, so the estimates degrade to "never" instead of wrapping; the ticket
        // remembers what it actually added so leaving subtracts exactly that.
        let mut added = 0;
        let _ = self.queued_tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
            added = n.min(u64::MAX - q);
            Some(q + added)
        });
        Ticket { line: self, tokens: added }
    }
}

/// A place in a [`WaitLine`]; dropping it leaves the line.
#[derive(Debug)]
struct Ticket<'a> {
    line: &'a WaitLine,
    /// What this ticket added to `queued_tokens` and has not taken back.
    tokens: u64,
}

impl Ticket<'_> {
    /// The holder's tokens are now reserved in the bucket: stop counting them as queued.
    fn reserved(&mut self) {
        let tokens = core::mem::take(&mut self.tokens);
        if tokens > 0 {
            self.line.queued_tokens.fetch_sub(tokens, Ordering::AcqRel);
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.reserved();
        self.line.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a caller is willing to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Until the tokens come (an error only if they never can).
    Forever,
    /// At most this long from the first poll.
    Within(Duration),
    /// Until this instant of the limiter's clock.
    Before(Instant),
}

impl Limit {
    fn deadline_at(self, now: Instant) -> Instant {
        match self {
            Limit::Forever => Instant::MAX,
            Limit::Within(d) => now.saturating_add(d),
            Limit::Before(t) => t,
        }
    }
}

/// Where a [`TokenWait`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started (a stream between items): polling completes at once.
    Idle,
    /// Finished: the outcome was returned, and there is nothing more to poll.
    Done,
    /// Started, not polled yet: the clock has not been read.
    Fresh,
    /// In line, waiting for the head permit (and, if bounded, for the deadline).
    Queued,
    /// The head: holds the permit and a reservation, sleeping until its instant.
    Head,
}

/// The head's holdings. Field order matters: the reservation is given back *before* the
/// permit passes the head on, so the next head reserves after the cancellation, never before.
struct Head<'a> {
    reservation: Option<Reservation>,
    bucket: &'a TokenBucket,
    _permit: SemaphorePermit<'a>,
}

impl Drop for Head<'_> {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            // The newest reservation in the bucket (see the module docs), so this is exact
            // — unless someone took tokens from `AsyncRateLimiter::bucket()` directly,
            // bypassing the line; then the bucket keeps them spent, which is safe.
            self.bucket.cancel(reservation);
        }
    }
}

pin_project! {
    /// One wait for tokens of an [`AsyncRateLimiter`], driven by [`TokenWait::poll_wait`].
    /// Reusable: [`TokenWait::start`] begins the next wait once the last one has finished.
    ///
    /// Dropped at any point, it costs nothing: it leaves the line, and if it was the head its
    /// reservation is given back exactly.
    pub(crate) struct TokenWait<'a, T: Timer> {
        limiter: &'a AsyncRateLimiter<T>,
        n: u64,
        limit: Limit,
        // Both fixed at the first poll.
        arrived: Instant,
        deadline: Instant,
        phase: Phase,
        // Dropped in this order: the queue place or the head (whose reservation goes back
        // before its permit passes on) first, the ticket last, so the line never looks empty
        // to a newcomer while a reservation is still out.
        #[pin]
        queue: Option<Acquire<'a>>,
        head: Option<Head<'a>>,
        ticket: Option<Ticket<'a>>,
        #[pin]
        sleep: Option<T::Sleep<'a>>,
    }
}

impl<'a, T: Timer + 'a> TokenWait<'a, T> {
    /// A wait for `n` tokens that starts at its first poll.
    pub(crate) fn new(limiter: &'a AsyncRateLimiter<T>, n: u64, limit: Limit) -> Self {
        Self {
            limiter,
            n,
            limit,
            arrived: Instant::ZERO,
            deadline: Instant::MAX,
            phase: Phase::Fresh,
            queue: None,
            head: None,
            ticket: None,
            sleep: None,
        }
    }

    /// A wait with nothing to wait for until [`TokenWait::start`].
    pub(crate) fn idle(limiter: &'a AsyncRateLimiter<T>) -> Self {
        let mut wait = Self::new(limiter, 0, Limit::Forever);
        wait.phase = Phase::Idle;
        wait
    }

    /// The limiter this waits on.
    pub(crate) fn limiter(&self) -> &'a AsyncRateLimiter<T> {
        self.limiter
    }

    /// Begins a new wait for `n` tokens (the last one must have finished).
    pub(crate) fn start(self: Pin<&mut Self>, n: u64, limit: Limit) {
        let this = self.project();
        debug_assert!(
            matches!(*this.phase, Phase::Idle | Phase::Done),
            "a wait started while another is under way"
        );
        *this.n = n;
        *this.limit = limit;
        *this.phase = Phase::Fresh;
    }

    /// Drives the wait. `Ok(())`: the tokens are taken. An error takes nothing:
    /// [`Error::InsufficientCapacity`] if `n` exceeds the burst, [`Error::MaxWaitExceeded`] if
    /// the tokens would not be ready by the deadline (`ready_at` says when they would be;
    /// `Instant::MAX` if never).
    pub(crate) fn poll_wait(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut this = self.project();
        let limiter: &'a AsyncRateLimiter<T> = this.limiter;
        let line = &limiter.line;
        let bucket = limiter.bucket();
        let timer = limiter.timer();
        let n = *this.n;
        let outcome = loop {
            match *this.phase {
                Phase::Idle => return Poll::Ready(Ok(())),
                // As an `async fn` does: a second answer could only be a wrong one ("taken"
                // after a refusal, or tokens taken twice).
                Phase::Done => panic!("tollgate: a token wait was polled after it completed"),
                Phase::Fresh => {
                    let now = timer.now();
                    let deadline = this.limit.deadline_at(now);
                    *this.arrived = now;
                    *this.deadline = deadline;
                    if n > bucket.burst() {
                        break Err(Error::InsufficientCapacity {
                            requested: n,
                            capacity: bucket.burst(),
                        });
                    }
                    if line.is_empty() {
                        match bucket.try_acquire_at(n, now) {
                            Ok(()) => break Ok(()),
                            // Only a bounded wait asks the refusal for its instant.
                            Err(Error::RateLimited(refused)) if deadline != Instant::MAX => {
                                let ready_at = refused.ready_at();
                                if ready_at > deadline {
                                    break Err(Error::MaxWaitExceeded { ready_at });
                                }
                            }
                            Err(Error::RateLimited(_)) => {}
                            Err(e) => break Err(e),
                        }
                    } else if n == 0 {
                        // Takes nothing, so it can delay nobody; but it never overtakes the
                        // line: it goes in and comes out in order like everyone else.
                    } else if deadline != Instant::MAX {
                        let ready_at = line.estimate_ready_at(bucket, n, now);
                        if ready_at > deadline {
                            break Err(Error::MaxWaitExceeded { ready_at });
                        }
                    }
                    *this.ticket = Some(line.join(n));
                    this.queue.set(Some(line.head.acquire()));
                    if deadline != Instant::MAX {
                        this.sleep.set(Some(timer.sleep_until(deadline)));
                    }
                    *this.phase = Phase::Queued;
                }
                Phase::Queued => {
                    let queue = this.queue.as_mut().as_pin_mut().expect("queued without a queue");
                    if let Poll::Ready(permit) = queue.poll(cx) {
                        this.queue.set(None);
                        this.sleep.set(None);
                        let now = timer.now();
                        let book_at = booking_instant_at(bucket, n, *this.arrived, now);
                        match bucket.reserve_before_at(n, book_at, *this.deadline) {
                            Err(e) => break Err(e), // the permit passes on as it drops
                            // Granted the line only after its deadline (the line was slower
                            // than estimated): a booking as of an earlier reading may still
                            // fit, but the caller's bound is real time, so refuse.
                            Ok(reservation) if reservation.ready_at().max(now) > *this.deadline => {
                                let ready_at = reservation.ready_at().max(now);
                                bucket.cancel(reservation); // the newest: exact
                                break Err(Error::MaxWaitExceeded { ready_at });
                            }
                            Ok(reservation) if reservation.ready_at() <= now => break Ok(()),
                            Ok(reservation) => {
                                if let Some(ticket) = this.ticket.as_mut() {
                                    ticket.reserved();
                                }
                                let ready_at = reservation.ready_at();
                                *this.head = Some(Head {
                                    reservation: Some(reservation),
                                    bucket,
                                    _permit: permit,
                                });
                                this.sleep.set(Some(timer.sleep_until(ready_at)));
                                *this.phase = Phase::Head;
                            }
                        }
                        continue;
                    }
                    if *this.deadline == Instant::MAX {
                        return Poll::Pending;
                    }
                    // Bounded: give up at the deadline (re-checked on the clock: a timer may
                    // fire early, and must not end the wait early either).
                    let now = timer.now();
                    if now >= *this.deadline {
                        let ready_at = line.estimate_ready_at(bucket, n, now);
                        break Err(Error::MaxWaitExceeded { ready_at: ready_at.max(now) });
                    }
                    if poll_sleep(this.sleep.as_mut(), timer, *this.deadline, cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                Phase::Head => {
                    let ready_at = match this.head.as_ref().and_then(|h| h.reservation.as_ref()) {
                        Some(reservation) => reservation.ready_at(),
                        None => unreachable!("the head always holds its reservation"),
                    };
                    // A timer that fires early must not let us through early.
                    if timer.now() >= ready_at {
                        if let Some(head) = this.head.as_mut() {
                            // Ours now: spent, not given back.
                            head.reservation = None;
                        }
                        break Ok(());
                    }
                    if poll_sleep(this.sleep.as_mut(), timer, ready_at, cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        };
        // Finished either way: leave the line (the reservation, if any, is already spent or
        // was never made), pass the head on, and go idle.
        this.queue.set(None);
        this.sleep.set(None);
        *this.head = None;
        *this.ticket = None;
        *this.phase = Phase::Done;
        Poll::Ready(outcome)
    }
}

/// The clock reading a new head books its reservation at. Normally `now`. But if the bucket
/// has been full since a moment less than one emission interval of the head's own `n` tokens
/// ago — the line was kept from its tokens only by the lateness of the hand-over — it books as
/// of that moment (never before it arrived): the line keeps its rate. A longer gap is a real
/// pause (a stalled executor, a line that was empty) and is not credited.
fn booking_instant_at(bucket: &TokenBucket, n: u64, arrived: Instant, now: Instant) -> Instant {
    let full_at = bucket.full_at();
    if now <= full_at {
        return now; // not full yet: booking at `now` already continues the schedule
    }
    let rate = bucket.rate();
    let interval = u128::from(n) * rate.period().as_nanos() / u128::from(rate.count());
    let interval = Duration::from_nanos(u64::try_from(interval).unwrap_or(u64::MAX));
    if now.saturating_duration_since(full_at) <= interval { full_at.max(arrived) } else { now }
}

/// Polls the sleep in `slot` until `deadline`. `Ready` means it fired: the caller re-checks
/// the clock and, if it is still early, comes back to arm a new sleep. A sleep armed in this
/// call that fires at once while the clock is still early (a coarse timer that rounds
/// deadlines down) is not re-armed again in the same poll — that would spin inside `poll`
/// forever — but yields: the task is woken to try again.
fn poll_sleep<'a, T: Timer + 'a>(
    mut slot: Pin<&mut Option<T::Sleep<'a>>>,
    timer: &'a T,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let fresh = slot.is_none();
    if fresh {
        slot.set(Some(timer.sleep_until(deadline)));
    }
    let sleep = slot.as_mut().as_pin_mut().expect("set just above");
    match sleep.poll(cx) {
        Poll::Ready(()) => {
            slot.set(None);
            if fresh && timer.now() < deadline {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        }
        Poll::Pending => Poll::Pending,
    }
}

impl<T: Timer> core::fmt::Debug for TokenWait<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenWait")
            .field("n", &self.n)
            .field("limit", &self.limit)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "alloc", not(tollgate_loom)))]
mod tests {
    use alloc::boxed::Box;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use core::pin::pin;

    use futures_util::task::noop_waker;

    use super::*;
    use crate::{ManualClock, Rate, Refusal};

    fn poll<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
        let waker = noop_waker();
        f.poll(&mut Context::from_waker(&waker))
    }

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    #[test]
    fn waiters_are_served_in_order_and_only_the_head_sleeps() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        l.try_acquire().unwrap();
        let mut waits: Vec<_> = (0..5).map(|_| Box::pin(l.acquire_n(1))).collect();
        for w in &mut waits {
            assert!(poll(w.as_mut()).is_pending());
        }
        assert_eq!((l.waiters(), clock.sleepers()), (5, 1));
        for (i, w) in waits.iter_mut().enumerate() {
            clock.set(secs(i as u64 + 1));
            assert_eq!(poll(w.as_mut()), Poll::Ready(Ok(())), "waiter {i} at {}s", i + 1);
        }
        assert_eq!((l.waiters(), clock.sleepers()), (0, 0));
    }

    #[test]
    fn try_acquire_refuses_while_anyone_waits_and_says_when_after_them() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        l.try_acquire().unwrap();
        let mut a = pin!(l.acquire_n(1));
        let mut b = pin!(l.acquire_n(1));
        assert!(poll(a.as_mut()).is_pending()); // head: due at 1 s
        assert!(poll(b.as_mut()).is_pending()); // behind: due at 2 s
        assert_eq!(l.try_acquire(), Err(Error::RateLimited(Refusal::at(secs(3)))));
        assert_eq!(
            l.try_acquire_n(2),
            Err(Error::InsufficientCapacity { requested: 2, capacity: 1 })
        );
    }

    #[test]
    fn a_big_request_is_not_overtaken_by_small_ones() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 3, &clock);
        l.try_acquire_n(3).unwrap();
        let mut big = pin!(l.acquire_n(3));
        let mut small = pin!(l.acquire_n(1));
        assert!(poll(big.as_mut()).is_pending());
        assert!(poll(small.as_mut()).is_pending());
        for t in 1..3 {
            clock.set(secs(t));
            assert!(poll(small.as_mut()).is_pending(), "small overtook big at {t}s");
            assert!(l.try_acquire().is_err());
        }
        clock.set(secs(3));
        assert!(poll(small.as_mut()).is_pending());
        assert_eq!(poll(big.as_mut()), Poll::Ready(Ok(())));
        clock.set(secs(4));
        assert_eq!(poll(small.as_mut()), Poll::Ready(Ok(())));
    }

    #[test]
    fn cancelling_the_head_hands_its_instant_to_the_next() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        l.try_acquire().unwrap();
        let mut head = Box::pin(l.acquire_n(1));
        let mut next = pin!(l.acquire_n(1));
        assert!(poll(head.as_mut()).is_pending());
        assert!(poll(next.as_mut()).is_pending());
        clock.set(Instant::from_millis(500));
        drop(head);
        assert!(poll(next.as_mut()).is_pending());
        assert_eq!(clock.next_deadline(), Some(secs(1)));
        clock.set(secs(1));
        assert_eq!(poll(next.as_mut()), Poll::Ready(Ok(())));
    }

    /// A head whose task runs late (a timer that fires late, a busy executor) hands the line
    /// on late; if the bucket has been full for less than one interval, the next head books as
    /// of the moment it became full, so the line keeps its rate. A longer pause is not
    /// credited, and nothing is booked before its caller arrived.
    #[test]
    fn a_late_hand_over_loses_no_time() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        l.try_acquire().unwrap();
        let mut a = pin!(l.acquire_n(1));
        let mut b = pin!(l.acquire_n(1));
        let mut c = pin!(l.acquire_n(1));
        assert!(poll(a.as_mut()).is_pending()); // due at 1 s
        assert!(poll(b.as_mut()).is_pending());
        assert!(poll(c.as_mut()).is_pending());
        clock.set(Instant::from_millis(2_500)); // a's task runs 1.5 s late
        assert_eq!(poll(a.as_mut()), Poll::Ready(Ok(())));
        // The bucket has been full since 2 s, 0.5 s ago: b books as of 2 s (due already).
        assert_eq!(poll(b.as_mut()), Poll::Ready(Ok(())));
        assert!(poll(c.as_mut()).is_pending());
        // Had b booked at 2.5 s, c would be due at 3.5 s; it is due at 3 s.
        assert_eq!(clock.next_deadline(), Some(secs(3)));
        clock.set(secs(3));
        assert_eq!(poll(c.as_mut()), Poll::Ready(Ok(())));
        // A real pause is not credited: after a 6 s stall the next head books at 10 s, so
        // nothing else is free at 10 s.
        let mut e = pin!(l.acquire_n(1));
        let mut f = pin!(l.acquire_n(1));
        assert!(poll(e.as_mut()).is_pending()); // due at 4 s
        assert!(poll(f.as_mut()).is_pending());
        clock.set(secs(10));
        assert_eq!(poll(e.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(poll(f.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(l.try_acquire(), Err(Error::RateLimited(Refusal::at(secs(11)))));
    }

    /// Found in review: polled again after it completed, a wait answered `Ok(())` ("taken")
    /// even after a refusal. Now it panics, as an `async fn` does.
    #[test]
    #[should_panic(expected = "polled after it completed")]
    fn a_wait_polled_after_it_completed_panics() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        l.try_acquire().unwrap();
        let mut refused = pin!(l.acquire_within(Duration::ZERO));
        assert!(matches!(poll(refused.as_mut()), Poll::Ready(Err(_))));
        let _ = poll(refused.as_mut());
    }

    #[test]
    fn max_wait_zero_admits_exactly_when_free_now() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        assert_eq!(poll(pin!(l.acquire_within(Duration::ZERO))), Poll::Ready(Ok(())));
        assert_eq!(
            poll(pin!(l.acquire_within(Duration::ZERO))),
            Poll::Ready(Err(Error::MaxWaitExceeded { ready_at: secs(1) }))
        );
        assert_eq!(l.waiters(), 0);
    }

    #[test]
    fn the_budget_counts_from_the_first_poll() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        l.try_acquire().unwrap();
        let mut w = pin!(l.acquire_within(Duration::from_millis(500)));
        clock.set(Instant::from_millis(600)); // made at 0, first polled at 600 ms
        assert!(poll(w.as_mut()).is_pending());
        clock.set(secs(1));
        assert_eq!(poll(w.as_mut()), Poll::Ready(Ok(())));
    }

    #[test]
    fn a_bounded_wait_counts_the_line_ahead_up_front() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        l.try_acquire().unwrap();
        let mut a = pin!(l.acquire_n(1));
        let mut b = pin!(l.acquire_n(1));
        assert!(poll(a.as_mut()).is_pending());
        assert!(poll(b.as_mut()).is_pending());
        // After a (1 s) and b (2 s): 3 s.
        let refused = poll(pin!(l.acquire_within(Duration::from_millis(2_500))));
        assert_eq!(refused, Poll::Ready(Err(Error::MaxWaitExceeded { ready_at: secs(3) })));
        assert_eq!(l.waiters(), 2);
        let mut fits = pin!(l.acquire_within(Duration::from_secs(3)));
        assert!(poll(fits.as_mut()).is_pending());
        clock.set(secs(1));
        assert_eq!(poll(a.as_mut()), Poll::Ready(Ok(())));
        assert!(poll(b.as_mut()).is_pending());
        clock.set(secs(2));
        assert_eq!(poll(b.as_mut()), Poll::Ready(Ok(())));
        assert!(poll(fits.as_mut()).is_pending());
        clock.set(secs(3));
        assert_eq!(poll(fits.as_mut()), Poll::Ready(Ok(())));
    }

    #[test]
    fn a_bounded_waiter_behind_a_slow_head_gives_up_at_its_deadline() {
        let clock = ManualClock::new();
        let l = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, &clock);
        l.try_acquire().unwrap();
        let mut head = pin!(l.acquire_n(1));
        assert!(poll(head.as_mut()).is_pending()); // due at 1 s
        let mut bounded = pin!(l.acquire_within(Duration::from_millis(2_500)));
        assert!(poll(bounded.as_mut()).is_pending()); // estimated 2 s: fits
        // The head's task is not polled (a busy executor): the line stalls.
        clock.set(Instant::from_millis(2_500));
        assert!(matches!(poll(bounded.as_mut()), Poll::Ready(Err(Error::MaxWaitExceeded { .. }))));
        assert_eq!(l.waiters(), 1);
        assert_eq!(poll(head.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(l.waiters(), 0);
    }

    #[test]
    fn a_token_that_never_comes_is_an_error_not_a_pass() {
        let clock = ManualClock::new();
        clock.set(Instant::MAX);
        let l = AsyncRateLimiter::with_timer(Rate::per_day(1), 1, &clock);
        let _ = l.try_acquire();
        let mut w = pin!(l.acquire_n(1));
        match poll(w.as_mut()) {
            Poll::Ready(Err(Error::MaxWaitExceeded { ready_at })) => {
                assert_eq!(ready_at, Instant::MAX)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(l.waiters(), 0);
        // `acquire` waits forever instead.
        let mut forever = pin!(l.acquire());
        assert!(poll(forever.as_mut()).is_pending());
        assert!(poll(forever.as_mut()).is_pending());
    }

    #[test]
    fn owned_waits_are_static_and_cancel_free() {
        fn assert_static<X: 'static>(_: &X) {}
        let clock = Arc::new(ManualClock::new());
        let l = Arc::new(AsyncRateLimiter::with_timer(Rate::per_second(1), 1, Arc::clone(&clock)));
        l.try_acquire().unwrap();
        let mut first = Box::pin(Arc::clone(&l).acquire_n_owned(1));
        assert_static(&first);
        let mut second = Box::pin(Arc::clone(&l).acquire_n_within_owned(1, Duration::from_secs(5)));
        assert!(poll(first.as_mut()).is_pending());
        assert!(poll(second.as_mut()).is_pending());
        drop(first);
        clock.set(secs(1));
        assert_eq!(poll(second.as_mut()), Poll::Ready(Ok(())));
        drop(second);
        assert_eq!(Arc::strong_count(&l), 1);
    }
}
