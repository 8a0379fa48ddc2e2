//! Cancellation sweep: every acquire future (bucket limiter, semaphore, model limiter, with and
//! without a deadline) is polled by hand and dropped after its k-th poll, for every k until it
//! completes, among other waiters. Each run must end exactly like a run in which that caller
//! never came: the others are served at the same instants, and the limiter's state matches
//! (no leaked slot, no counted request, tokens given back).

mod support;

use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Wake;

use support::Sim;
use tollgate::{
    AsyncRateLimiter, Clock, Instant, ManualClock, ModelRateLimiter, Rate, RateLimitConfig,
    Semaphore, Timer,
};

type Log = Rc<RefCell<Vec<(usize, Instant)>>>;
type Subject = Pin<Box<dyn Future<Output = ()>>>;

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    /// When each other caller was served.
    others: Vec<(usize, Instant)>,
    /// The limiter's state once everything has settled, as the scenario describes it.
    state: String,
}

/// Runs one scenario. `subject` is polled only when woken (and once at the start, after the
/// others' first polls), and dropped right after its `drop_after`-th poll. Returns the
/// outcome and whether the subject completed before being dropped.
fn run(
    spawn_others: &dyn Fn(&Sim, Log),
    subject: Option<(Subject, usize)>,
    state: &dyn Fn(&Sim) -> String,
    sim: &mut Sim,
) -> (Outcome, bool) {
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    spawn_others(sim, log.clone());
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let (mut subject, drop_after) = match subject {
        Some((fut, k)) => (Some(fut), k),
        None => (None, 0),
    };
    let mut polls = 0;
    let mut completed = false;
    loop {
        sim.pool.run_until_stalled();
        if let Some(fut) = subject.as_mut() {
            if polls == drop_after {
                subject = None; // cancelled here
                continue;
            }
            if flag.0.swap(false, Ordering::SeqCst) {
                polls += 1;
                if fut.as_mut().poll(&mut cx).is_ready() {
                    completed = true;
                    subject = None;
                }
                continue;
            }
        }
        if !sim.clock.advance_to_next_deadline() {
            break;
        }
    }
    assert!(subject.is_none() || !completed);
    let others = log.borrow().clone();
    (Outcome { others, state: state(sim) }, completed)
}

/// Sweeps k = 1, 2, … until the subject completes; every cancelled run must match the run
/// without the subject. Returns how many cancellation points were checked.
fn sweep(
    make_subject: &dyn Fn(&Sim) -> Subject,
    spawn_others: &dyn Fn(&Sim, Log),
    state: &dyn Fn(&Sim) -> String,
    fresh: &dyn Fn() -> Sim,
) -> usize {
    let (baseline, _) = run(spawn_others, None, state, &mut fresh());
    for k in 1.. {
        let mut sim = fresh();
        let subject = make_subject(&sim);
        let (outcome, completed) = run(spawn_others, Some((subject, k)), state, &mut sim);
        if completed {
            return k - 1;
        }
        assert_eq!(outcome, baseline, "dropped after poll {k}");
    }
    unreachable!()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

thread_local! {
    static BUCKET: RefCell<Option<Rc<AsyncRateLimiter<Arc<ManualClock>>>>> = const { RefCell::new(None) };
    static SEMAPHORE: RefCell<Option<Rc<Semaphore>>> = const { RefCell::new(None) };
    static MODEL: RefCell<Option<Rc<ModelRateLimiter<Arc<ManualClock>>>>> = const { RefCell::new(None) };
}

fn bucket() -> Rc<AsyncRateLimiter<Arc<ManualClock>>> {
    BUCKET.with(|b| b.borrow().clone().unwrap())
}
fn semaphore() -> Rc<Semaphore> {
    SEMAPHORE.with(|s| s.borrow().clone().unwrap())
}
fn model() -> Rc<ModelRateLimiter<Arc<ManualClock>>> {
    MODEL.with(|m| m.borrow().clone().unwrap())
}

fn fresh_bucket_sim() -> Sim {
    let sim = Sim::new();
    let limiter = AsyncRateLimiter::with_timer(Rate::per_second(1), 1, sim.clock.clone());
    BUCKET.with(|b| *b.borrow_mut() = Some(Rc::new(limiter)));
    sim
}

/// The instant a fresh reservation would be ready: moves if any token leaked or was lost.
fn bucket_state(sim: &Sim) -> String {
    let b = bucket();
    let r = b.bucket().reserve_at(1, sim.clock.now()).unwrap();
    let s = format!("next token at {:?}", r.ready_at());
    assert!(b.bucket().cancel(r));
    s
}

#[test]
fn cancelled_bucket_waiters_at_the_back_of_the_queue_leave_no_trace() {
    let spawn_others = |sim: &Sim, log: Log| {
        for i in 0..3 {
            let (log, clock) = (log.clone(), sim.clock.clone());
            sim.spawn(async move {
                bucket().acquire().await;
                log.borrow_mut().push((i, clock.now()));
            });
        }
    };
    let subject = |_: &Sim| -> Subject { Box::pin(async { bucket().acquire().await }) };
    let points = sweep(&subject, &spawn_others, &bucket_state, &fresh_bucket_sim);
    assert!(points >= 1);
    let deadline = |_: &Sim| -> Subject {
        Box::pin(async { bucket().acquire_n_within(1, Duration::from_secs(10)).await.unwrap() })
    };
    sweep(&deadline, &spawn_others, &bucket_state, &fresh_bucket_sim);
}

/// Found in review (issue 8): a waiter cancelled in the middle of the line used to keep its
/// token spent, so a storm of timeouts drained the limiter. Now only the head reserves, and a
/// waiter cancelled anywhere costs nothing: the one behind it goes at 1 s, not 2 s.
#[test]
fn a_bucket_waiter_cancelled_mid_queue_costs_nothing() {
    let sim = fresh_bucket_sim();
    let clock = sim.clock.clone();
    let b = bucket();
    b.try_acquire().unwrap();
    let waker = Waker::from(Arc::new(Flag(AtomicBool::new(false))));
    let mut cx = Context::from_waker(&waker);
    let mut middle = Box::pin(b.acquire());
    let mut last = Box::pin(b.acquire());
    assert!(middle.as_mut().poll(&mut cx).is_pending()); // first in line: due at 1 s
    assert!(last.as_mut().poll(&mut cx).is_pending()); // behind it
    drop(middle);
    assert!(last.as_mut().poll(&mut cx).is_pending());
    clock.set(Instant::from_secs(1));
    assert_eq!(last.as_mut().poll(&mut cx), Poll::Ready(()));
    assert_eq!(bucket_state(&sim), "next token at Instant(2s)");
}

fn fresh_semaphore_sim() -> Sim {
    SEMAPHORE.with(|s| *s.borrow_mut() = Some(Rc::new(Semaphore::new(1))));
    Sim::new()
}

#[test]
fn cancelled_semaphore_waiters_leave_no_trace() {
    // A holder keeps the only permit for 5 s; two waiters queue; the subject queues between
    // them (it is first polled after the others' first polls, so it is last; the holder
    // releasing hands off in order either way).
    let spawn_others = |sim: &Sim, log: Log| {
        for (i, hold) in [(0, 5_000), (1, 1_000), (2, 1_000)] {
            let (log, clock) = (log.clone(), sim.clock.clone());
            sim.spawn(async move {
                let sem = semaphore();
                let _permit = sem.acquire().await;
                log.borrow_mut().push((i, clock.now()));
                let until = clock.now() + ms(hold);
                clock.sleep_until(until).await;
            });
        }
    };
    let state = |_: &Sim| {
        let s = semaphore();
        format!("free {} of {}, {} queued", s.available_permits(), s.capacity(), s.waiters())
    };
    let subject = |sim: &Sim| -> Subject {
        let clock = sim.clock.clone();
        Box::pin(async move {
            let sem = semaphore();
            let _p = sem.acquire().await;
            let until = clock.now() + ms(1);
            clock.sleep_until(until).await;
        })
    };
    let points = sweep(&subject, &spawn_others, &state, &fresh_semaphore_sim);
    assert!(points >= 1, "the subject must have waited at least once");
}

fn fresh_model_sim() -> Sim {
    let sim = Sim::new();
    let limiter = ModelRateLimiter::with_timer(
        [(
            "m",
            RateLimitConfig { rpm: 3, tpm: 1_000, max_parallel_requests: 1, ..Default::default() },
        )],
        RateLimitConfig::default(),
        sim.clock.clone(),
    )
    .unwrap();
    MODEL.with(|m| *m.borrow_mut() = Some(Rc::new(limiter)));
    sim
}

fn model_state(sim: &Sim) -> String {
    let l = model();
    let s = l.stats()["m"].clone();
    // Also where a fresh request would be admitted: catches any charge left behind.
    let next = {
        let waker = Waker::from(Arc::new(Flag(AtomicBool::new(false))));
        let mut cx = Context::from_waker(&waker);
        let mut probe = Box::pin(l.acquire_within("m", 1, Duration::ZERO));
        match probe.as_mut().poll(&mut cx) {
            Poll::Ready(Err(e)) => format!("{e}"),
            Poll::Ready(Ok(p)) => {
                drop(p);
                "admissible now".to_string()
            }
            Poll::Pending => "pending".to_string(),
        }
    };
    let _ = sim;
    format!("requests {} tokens {} active {}; probe: {next}", s.requests, s.tokens, s.active)
}

#[test]
fn cancelled_model_requests_leave_no_trace_at_any_await_point() {
    // Others: a long request holding the only slot, then requests that hit TPM and RPM.
    let spawn_others = |sim: &Sim, log: Log| {
        for (i, tokens, hold) in [(0, 400, 3_000), (1, 500, 1_000), (2, 300, 500), (3, 200, 500)] {
            let (log, clock) = (log.clone(), sim.clock.clone());
            sim.spawn(async move {
                let l = model();
                let p = l.acquire("m", tokens).await.unwrap();
                log.borrow_mut().push((i, clock.now()));
                let until = clock.now() + ms(hold);
                clock.sleep_until(until).await;
                p.settle(tokens / 2);
            });
        }
    };
    let subject = |_: &Sim| -> Subject {
        Box::pin(async {
            let l = model();
            l.acquire("m", 250).await.unwrap().settle(250);
        })
    };
    let points = sweep(&subject, &spawn_others, &model_state, &fresh_model_sim);
    assert!(points >= 2, "only {points} cancellation points exercised");
    let with_deadline = |_: &Sim| -> Subject {
        Box::pin(async {
            let l = model();
            if let Ok(p) = l.acquire_within("m", 250, Duration::from_secs(600)).await {
                p.settle(250);
            }
        })
    };
    sweep(&with_deadline, &spawn_others, &model_state, &fresh_model_sim);
}

// ---------------------------------------------------------------------------------------------
// Cancel many waiters in random orders
// ---------------------------------------------------------------------------------------------
//
// N waiters queue on one bucket limiter (rate 1/s, drained at the start), each polled only when
// woken. A seeded random subset is cancelled (dropped) at random instants — several at the same
// instant in a random order, some just before and some just after the woken waiters are polled
// at that instant, the head included. The survivors must be admitted at exactly the instants of
// a run in which the cancelled waiters never existed, and afterwards the bucket's next token
// must be where that run leaves it: no capacity lost, no capacity gained.

/// One waiter of a random scenario.
#[derive(Debug, Clone, Copy)]
struct Planned {
    tokens: u64,
    /// Which acquire form: `acquire`, `acquire_n`, `acquire_n_within`, `acquire_n_before`.
    form: u8,
    /// When to drop it if still waiting: (instant, before the polls at that instant, order
    /// among the cancellations of that instant).
    cancel: Option<(Instant, bool, u64)>,
}

/// A tiny xorshift for the scenarios (seeded, so a failure names its seed).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Debug)]
struct Played {
    /// (waiter, instant) of every admission, in the order they happened.
    admitted: Vec<(usize, Instant)>,
    /// Waiters dropped while still waiting.
    cancelled: Vec<usize>,
    /// Where a fresh request made at the last admission would get its token.
    state: String,
}

/// Plays the waiters `include`d from `plans` on a fresh limiter, honouring cancellations only
/// when `cancel` is set.
fn play(plans: &[Planned], burst: u64, include: &dyn Fn(usize) -> bool, cancel: bool) -> Played {
    let clock = Arc::new(ManualClock::new());
    let limiter = Rc::new(AsyncRateLimiter::with_timer(Rate::per_second(1), burst, clock.clone()));
    limiter.try_acquire_n(burst).unwrap(); // drained: everyone waits
    let mut waiters: Vec<(usize, Option<Subject>, Arc<Flag>)> = Vec::new();
    for (id, plan) in plans.iter().enumerate().filter(|(id, _)| include(*id)) {
        let (l, n) = (limiter.clone(), plan.tokens);
        let fut: Subject = match plan.form {
            0 => Box::pin(async move { l.acquire().await }),
            1 => Box::pin(async move { l.acquire_n(n).await.unwrap() }),
            2 => Box::pin(async move {
                l.acquire_n_within(n, Duration::from_secs(1_000)).await.unwrap();
            }),
            _ => Box::pin(async move {
                l.acquire_n_before(n, Instant::from_secs(1_000)).await.unwrap();
            }),
        };
        waiters.push((id, Some(fut), Arc::new(Flag(AtomicBool::new(true)))));
    }
    let mut admitted = Vec::new();
    let mut cancelled = Vec::new();
    // Polls every woken waiter, in arrival order, until none is woken.
    let poll_woken = |waiters: &mut Vec<(usize, Option<Subject>, Arc<Flag>)>,
                      admitted: &mut Vec<(usize, Instant)>| {
        loop {
            let mut any = false;
            for (id, fut, flag) in waiters.iter_mut() {
                if fut.is_some() && flag.0.swap(false, Ordering::SeqCst) {
                    any = true;
                    let waker = Waker::from(flag.clone());
                    let mut cx = Context::from_waker(&waker);
                    if fut.as_mut().unwrap().as_mut().poll(&mut cx).is_ready() {
                        *fut = None;
                        admitted.push((*id, clock.now()));
                    }
                }
            }
            if !any {
                break;
            }
        }
    };
    let mut due: Vec<(Instant, bool, u64, usize)> = if cancel {
        plans
            .iter()
            .enumerate()
            .filter(|(id, _)| include(*id))
            .filter_map(|(id, p)| p.cancel.map(|(at, before, order)| (at, !before, order, id)))
            .collect()
    } else {
        Vec::new()
    };
    // By instant; at an instant, the "before the polls" ones first; then by the random order.
    due.sort();
    let mut next_cancel = 0;
    loop {
        let now = clock.now();
        for after_polls in [false, true] {
            if after_polls {
                poll_woken(&mut waiters, &mut admitted);
            }
            while next_cancel < due.len()
                && due[next_cancel].0 <= now
                && due[next_cancel].1 == after_polls
            {
                let id = due[next_cancel].3;
                next_cancel += 1;
                let (_, fut, _) = waiters.iter_mut().find(|w| w.0 == id).unwrap();
                if fut.take().is_some() {
                    cancelled.push(id);
                }
            }
        }
        poll_woken(&mut waiters, &mut admitted);
        let pending = waiters.iter().filter(|w| w.1.is_some()).count();
        if pending == 0 {
            break; // later cancellations have nobody left to cancel
        }
        let next = match (clock.next_deadline(), due.get(next_cancel).map(|d| d.0)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match next {
            Some(t) if t > now => clock.set(t),
            // A cancellation due now but on the other side of the polls: already handled.
            Some(_) if next_cancel < due.len() && due[next_cancel].0 <= now => {}
            Some(_) => clock.set(now + Duration::from_nanos(1)),
            None if pending == 0 => break,
            None => panic!("{pending} waiters stalled at {now:?}: a lost wake-up"),
        }
    }
    // The state as seen from the last admission (the same instant in both runs when they
    // agree), not from the clock, which one run may have moved on to a later cancellation.
    let end = admitted.iter().map(|a| a.1).max().unwrap_or(Instant::ZERO);
    let r = limiter.bucket().reserve_at(1, end).unwrap();
    let state = format!("next token at {:?}", r.ready_at());
    assert!(limiter.bucket().cancel(r));
    Played { admitted, cancelled, state }
}

/// Checks one scenario against the run without its cancelled waiters.
fn check_random_cancellations(seed: u64, plans: &[Planned], burst: u64) {
    let played = play(plans, burst, &|_| true, true);
    let gone = played.cancelled.clone();
    let baseline = play(plans, burst, &|id| !gone.contains(&id), false);
    assert!(baseline.cancelled.is_empty());
    assert_eq!(
        played.admitted, baseline.admitted,
        "seed {seed}: survivors admitted elsewhere than if {gone:?} never came ({plans:?})"
    );
    assert_eq!(played.state, baseline.state, "seed {seed}: capacity lost or gained");
}

/// Seeds per random-cancellation test: a few under miri (which checks the same code paths for
/// undefined behaviour, a hundred times slower), hundreds natively.
const SEEDS: u64 = if cfg!(miri) { 3 } else { 300 };

#[test]
fn many_waiters_cancelled_at_random_instants_in_random_orders_cost_nothing() {
    // One token each: a waiter still waiting at t never held up a later one's instant (each
    // survivor's instant is a whole second no earlier than t), so "never existed" is exact.
    const N: usize = 12;
    let mut exercised = 0;
    for seed in 1..=SEEDS {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let plans: Vec<Planned> = (0..N)
            .map(|_| Planned {
                tokens: 1,
                form: rng.below(4) as u8,
                cancel: (rng.below(2) == 0).then(|| {
                    // Quarter seconds up to N s: often exactly when a token comes due.
                    let at = Instant::from_millis(250 * rng.below(4 * N as u64 + 1));
                    (at, rng.below(2) == 0, rng.below(1_000))
                }),
            })
            .collect();
        check_random_cancellations(seed, &plans, 1);
        exercised += plans.iter().filter(|p| p.cancel.is_some()).count();
    }
    assert!(exercised > 3 * SEEDS as usize);
}

#[test]
fn weighted_waiters_cancelled_in_random_orders_cost_nothing() {
    // Weights 1–3 on a burst of 3, cancelled at the start (all queued, before time moves) in a
    // random order, and some cancelled again later while a heavy one holds the head.
    const N: usize = 10;
    for seed in 1..=SEEDS {
        let mut rng = XorShift(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let plans: Vec<Planned> = (0..N)
            .map(|_| Planned {
                tokens: 1 + rng.below(3),
                form: 1 + rng.below(3) as u8,
                cancel: (rng.below(2) == 0)
                    .then(|| (Instant::ZERO, rng.below(2) == 0, rng.below(1_000))),
            })
            .collect();
        check_random_cancellations(seed, &plans, 3);
    }
}
