//! The model limiter against the Python seed's scenarios and its known bugs, on a manual clock.

mod support;

use core::cell::RefCell;
use core::future::Future;
use core::task::{Context, Poll};
use core::time::Duration;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::task::noop_waker;
use support::Sim;
use tollgate::{Error, Instant, ManualClock, ModelRateLimiter, RateLimitConfig};

type Limiter = ModelRateLimiter<Arc<ManualClock>>;

fn cfg(rpm: u32, tpm: u64, max_parallel_requests: u32) -> RateLimitConfig {
    RateLimitConfig { rpm, tpm, max_parallel_requests, ..Default::default() }
}

fn limiter(sim: &Sim, models: &[(&str, RateLimitConfig)]) -> Rc<Limiter> {
    Rc::new(
        ModelRateLimiter::with_timer(
            models.iter().map(|(n, c)| (*n, c.clone())),
            RateLimitConfig::default(),
            sim.clock.clone(),
        )
        .unwrap(),
    )
}

/// Spawns `n` requests of `tokens` on `model`, each settling at its estimate after `hold`;
/// returns the log of admission instants in admission order, tagged by request index.
fn spawn_requests(
    sim: &Sim,
    l: &Rc<Limiter>,
    model: &'static str,
    n: usize,
    tokens: u64,
    hold: Duration,
) -> Rc<RefCell<Vec<(usize, Instant)>>> {
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..n {
        let (l, log, clock) = (l.clone(), log.clone(), sim.clock.clone());
        sim.spawn(async move {
            let permit = l.acquire(model, tokens).await.unwrap();
            log.borrow_mut().push((i, tollgate::Clock::now(&*clock)));
            if !hold.is_zero() {
                tollgate::Timer::sleep_until(&*clock, tollgate::Clock::now(&*clock) + hold).await;
            }
            permit.settle(tokens);
        });
    }
    log
}

/// Admission instants rounded up to whole seconds: a window slot frees one nanosecond before
/// the second is complete (entries are at whole nanoseconds, windows are half-open).
fn secs(log: &[(usize, Instant)]) -> Vec<u64> {
    log.iter().map(|(_, t)| t.as_nanos().div_ceil(1_000_000_000)).collect()
}

/// One nanosecond before `s` seconds.
fn just_before(s: u64) -> Instant {
    Instant::from_nanos(s * 1_000_000_000 - 1)
}

#[test]
fn rpm_is_enforced_sequentially() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(3, 1_000_000, 10))]);
    futures_executor::block_on(async {
        for _ in 0..3 {
            l.acquire("m", 1).await.unwrap().settle(1);
        }
    });
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fourth = pin!(l.acquire("m", 1));
    assert!(fourth.as_mut().poll(&mut cx).is_pending());
    // Conservative one-second slots: the requests of second 0 count until the window no
    // longer reaches the end of that second.
    sim.clock.set(Instant::from_secs(60));
    assert!(fourth.as_mut().poll(&mut cx).is_pending());
    sim.clock.set(just_before(61) - Duration::from_nanos(1));
    assert!(fourth.as_mut().poll(&mut cx).is_pending());
    sim.clock.set(just_before(61));
    assert!(matches!(fourth.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
}

#[test]
fn rpm_is_enforced_concurrently_and_resets_after_the_window() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(3, 1_000_000, 10))]);
    let log = spawn_requests(&sim, &l, "m", 7, 1, Duration::ZERO);
    sim.run();
    assert_eq!(secs(&log.borrow()), [0, 0, 0, 61, 61, 61, 121]);
}

#[test]
fn tpm_makes_a_request_wait_for_room() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 1_000, 10))]);
    let log = spawn_requests(&sim, &l, "m", 3, 400, Duration::ZERO);
    sim.run();
    // 400 + 400 fit; the third waits until the first two leave the window.
    assert_eq!(secs(&log.borrow()), [0, 0, 61]);
}

#[test]
fn a_refund_admits_the_waiting_request_early() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 1_000, 10))]);
    let admitted = Rc::new(RefCell::new(None));
    {
        let (l, clock) = (l.clone(), sim.clock.clone());
        sim.spawn(async move {
            let p = l.acquire("m", 900).await.unwrap();
            tollgate::Timer::sleep_until(&*clock, Instant::from_secs(5)).await;
            p.settle(100); // used far less than estimated
        });
    }
    {
        let (l, clock, admitted) = (l.clone(), sim.clock.clone(), admitted.clone());
        sim.spawn(async move {
            let p = l.acquire("m", 500).await.unwrap();
            *admitted.borrow_mut() = Some(tollgate::Clock::now(&*clock));
            p.settle(500);
        });
    }
    sim.run();
    assert_eq!(*admitted.borrow(), Some(Instant::from_secs(5)));
}

#[test]
fn parallel_requests_are_capped() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(1_000, 1_000_000, 2))]);
    let peak = Rc::new(RefCell::new((0u32, 0u32)));
    for _ in 0..6 {
        let (l, clock, peak) = (l.clone(), sim.clock.clone(), peak.clone());
        sim.spawn(async move {
            let p = l.acquire("m", 10).await.unwrap();
            {
                let mut pk = peak.borrow_mut();
                pk.0 += 1;
                pk.1 = pk.1.max(pk.0);
            }
            let until = tollgate::Clock::now(&*clock) + Duration::from_secs(1);
            tollgate::Timer::sleep_until(&*clock, until).await;
            peak.borrow_mut().0 -= 1;
            p.settle(10);
        });
    }
    sim.run();
    assert_eq!(peak.borrow().1, 2);
    assert_eq!(sim.now(), Instant::from_secs(3));
    assert_eq!(l.stats()["m"].active.used, 0);
}

#[test]
fn combined_limits_bind_in_turn() {
    let mut sim = Sim::new();
    // RPM 4, TPM 1000, 2 in parallel, each request 300 tokens held 10 s.
    let l = limiter(&sim, &[("m", cfg(4, 1_000, 2))]);
    let log = spawn_requests(&sim, &l, "m", 5, 300, Duration::from_secs(10));
    sim.run();
    // Two run at once; the third starts when a slot frees (10 s); TPM (3×300 = 900) still
    // fits; the fourth would make 1200 > 1000, so it waits until second 0 leaves the window;
    // the fifth, queued behind it, then fits at once (900 tokens, 3 requests in the window).
    assert_eq!(secs(&log.borrow()), [0, 0, 10, 61, 61]);
}

#[test]
fn models_are_independent() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("slow", cfg(1, 1_000, 1)), ("fast", cfg(100, 100_000, 10))]);
    let slow = spawn_requests(&sim, &l, "slow", 3, 1, Duration::ZERO);
    let fast = spawn_requests(&sim, &l, "fast", 5, 1, Duration::ZERO);
    sim.run();
    assert_eq!(secs(&slow.borrow()), [0, 61, 121]);
    assert_eq!(secs(&fast.borrow()), [0, 0, 0, 0, 0]);
}

#[test]
fn stats_list_configured_and_used_models() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("gpt-4", cfg(500, 40_000, 10))]);
    let stats = l.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats["gpt-4"].tokens.to_string(), "0/40000");
    futures_executor::block_on(async {
        let p = l.acquire("gpt-4", 8_000).await.unwrap();
        let s = l.stats();
        assert_eq!(s["gpt-4"].tokens.to_string(), "8000/40000");
        assert_eq!(s["gpt-4"].active.to_string(), "1/10");
        assert_eq!(s["gpt-4"].requests.to_string(), "1/500");
        p.settle(7_500);
        l.acquire("some-new-model", 5).await.unwrap().settle(5);
    });
    let stats = l.stats();
    assert_eq!(stats["gpt-4"].tokens.to_string(), "7500/40000");
    assert_eq!(stats["gpt-4"].active.to_string(), "0/10");
    // Unknown models run under the default config (the seed's 10 / 200 000 / 5).
    assert_eq!(stats["some-new-model"].requests.to_string(), "1/10");
    assert_eq!(stats["some-new-model"].tokens.to_string(), "5/200000");
    assert_eq!(stats["some-new-model"].active.to_string(), "0/5");
}

#[test]
fn dropping_a_permit_keeps_the_estimate_and_settling_higher_charges_more() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 10_000, 10))]);
    futures_executor::block_on(async {
        drop(l.acquire("m", 1_000).await.unwrap());
        assert_eq!(l.stats()["m"].tokens.used, 1_000);
        l.acquire("m", 1_000).await.unwrap().settle(3_000);
        assert_eq!(l.stats()["m"].tokens.used, 4_000);
        l.acquire("m", 10).await.unwrap().settle(u64::MAX);
        assert!(l.stats()["m"].tokens.used >= 10_000);
    });
    assert_eq!(l.stats()["m"].active.used, 0);
}

#[test]
fn invalid_configs_name_the_model_and_field() {
    let err =
        ModelRateLimiter::<ManualClock>::new([("gpt-4", cfg(10, 0, 1))], cfg(1, 1, 1)).unwrap_err();
    assert_eq!(err.model.as_deref(), Some("gpt-4"));
    assert_eq!(err.error.field, "tpm");
    assert_eq!(err.to_string(), "model `gpt-4`: invalid `tpm`: must be greater than zero");
    let err =
        ModelRateLimiter::<ManualClock>::new([("a", cfg(1, 1, 1))], cfg(1, 1, 0)).unwrap_err();
    assert_eq!((err.model, err.error.field), (None, "max_parallel_requests"));
    let err =
        ModelRateLimiter::<ManualClock>::new([("a", cfg(0, 1, 1))], cfg(1, 1, 1)).unwrap_err();
    assert_eq!(err.error.field, "rpm");
    // `?` into the crate error works too.
    let as_crate_error: Error = err.into();
    assert!(matches!(as_crate_error, Error::InvalidConfig(_)));
}

#[test]
fn max_wait_refuses_up_front_with_the_admission_instant() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(1, 1_000, 5))]);
    futures_executor::block_on(async {
        l.acquire("m", 1).await.unwrap().settle(1);
        let err = l.acquire_within("m", 1, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(err, Error::MaxWaitExceeded { ready_at: just_before(61) });
    });
    let s = l.stats();
    assert_eq!((s["m"].requests.used, s["m"].active.used), (1, 0));
}

/// One slot, held for 30 s; a second request bounded to 5 s (by `bounded`) queues behind it and
/// must give up at 5 s, releasing its place: one request counted, none active afterwards.
fn a_bounded_waiter_behind_a_held_slot_gives_up_at_5s<F>(bounded: impl FnOnce(Rc<Limiter>) -> F)
where
    F: Future<Output = Result<(), Error>> + 'static,
{
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 1_000, 1))]);
    let result = Rc::new(RefCell::new(None));
    {
        let (l, clock) = (l.clone(), sim.clock.clone());
        sim.spawn(async move {
            let p = l.acquire("m", 1).await.unwrap();
            tollgate::Timer::sleep_until(&*clock, Instant::from_secs(30)).await;
            p.settle(1);
        });
    }
    {
        let (wait, result) = (bounded(l.clone()), result.clone());
        sim.spawn(async move {
            *result.borrow_mut() = Some(wait.await);
        });
    }
    sim.run();
    assert_eq!(
        *result.borrow(),
        Some(Err(Error::MaxWaitExceeded { ready_at: Instant::from_secs(5) }))
    );
    let s = l.stats()["m"].clone();
    assert_eq!((s.requests.used, s.active.used), (1, 0));
}

#[test]
fn a_waiter_queued_past_its_deadline_gives_up_its_place() {
    a_bounded_waiter_behind_a_held_slot_gives_up_at_5s(|l| async move {
        l.acquire_within("m", 1, Duration::from_secs(5)).await.map(drop)
    });
}

#[test]
fn owned_permits_work_in_static_futures() {
    let l = Arc::new(
        ModelRateLimiter::<ManualClock>::new([("m", cfg(10, 100, 1))], RateLimitConfig::default())
            .unwrap(),
    );
    fn assert_static<F: Future + 'static>(f: F) -> F {
        f
    }
    let fut = assert_static(l.clone().acquire_owned("m", 50));
    let permit = futures_executor::block_on(fut).unwrap();
    assert_eq!(permit.estimated_tokens(), 50);
    assert_eq!(l.stats()["m"].active.used, 1);
    permit.settle(20);
    assert_eq!(l.stats()["m"].tokens.used, 20);
    assert_eq!(l.stats()["m"].active.used, 0);
}

#[test]
fn limiter_and_futures_are_send_and_sync() {
    fn send_sync<X: Send + Sync>(_: &X) {}
    fn send<X: Send>(_: &X) {}
    let l = ModelRateLimiter::<Arc<ManualClock>>::new([("m", cfg(1, 1, 1))], cfg(1, 1, 1)).unwrap();
    send_sync(&l);
    let fut = l.acquire("m", 1);
    send(&fut);
}

// ---- The Python seed's bugs, each as a regression test. ----

/// Seed bug: tokens were recorded only when a call ended, so concurrent calls all saw an
/// empty TPM window and overran it together.
#[test]
fn seed_bug_concurrent_calls_cannot_overrun_tpm() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(1_000, 1_000, 100))]);
    // Ten concurrent calls of 300 tokens, each running 30 s before it settles.
    let log = spawn_requests(&sim, &l, "m", 10, 300, Duration::from_secs(30));
    sim.run_until(Instant::from_secs(1));
    assert_eq!(log.borrow().len(), 3, "only 3 × 300 fit in 1000 at once");
    sim.run();
    assert_eq!(log.borrow().len(), 10);
}

/// Seed bug: only the last 100 token entries were kept, so TPM was undercounted at volume.
#[test]
fn seed_bug_tpm_counts_every_request_at_volume() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100_000, 500, 100_000))]);
    let log = spawn_requests(&sim, &l, "m", 1_000, 1, Duration::ZERO);
    sim.run_until(Instant::from_secs(60));
    assert_eq!(log.borrow().len(), 500);
}

/// Seed bug: a request larger than TPM went through on an empty window.
#[test]
fn seed_bug_an_oversized_request_fails_at_once() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(10, 1_000, 1))]);
    let err = futures_executor::block_on(l.acquire("m", 1_001)).unwrap_err();
    assert_eq!(err, Error::InsufficientCapacity { requested: 1_001, capacity: 1_000 });
    assert_eq!(l.stats()["m"].requests.used, 0);
}

/// Seed bug: a task cancelled while waiting for a parallel slot leaked the slot.
#[test]
fn seed_bug_a_cancelled_waiter_leaks_no_slot() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 1_000, 1))]);
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let holder = futures_executor::block_on(l.acquire("m", 1)).unwrap();
    {
        let mut waiting = pin!(l.acquire("m", 1));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(l.stats()["m"].active.used, 1);
    } // cancelled here
    holder.settle(1);
    let s = l.stats();
    assert_eq!((s["m"].active.used, s["m"].requests.used), (0, 1));
    futures_executor::block_on(l.acquire("m", 1)).unwrap().settle(1);
}

/// Seed bug: a waiter slept once and went ahead without re-checking; here every waiter
/// re-checks, and the second of two TPM waiters is not admitted with the first.
#[test]
fn seed_bug_waiters_recheck_after_sleeping() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 1_000, 10))]);
    let log = spawn_requests(&sim, &l, "m", 3, 600, Duration::ZERO);
    sim.run();
    assert_eq!(secs(&log.borrow()), [0, 61, 121]);
}

/// FIFO: a large request is not starved by small ones that arrive after it.
#[test]
fn a_large_request_is_not_overtaken_by_later_small_ones() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(1_000, 1_000, 100))]);
    let order = Rc::new(RefCell::new(Vec::new()));
    for (i, tokens) in [(0, 900), (1, 1_000), (2, 10), (3, 10)] {
        let (l, order) = (l.clone(), order.clone());
        sim.spawn(async move {
            l.acquire("m", tokens).await.unwrap().settle(tokens);
            order.borrow_mut().push(i);
        });
    }
    sim.run();
    assert_eq!(*order.borrow(), [0, 1, 2, 3]);
}

#[test]
#[cfg_attr(miri, ignore = "10^5 models take far too long under miri")]
fn a_hundred_thousand_distinct_models_work() {
    let sim = Sim::new();
    let l = limiter(&sim, &[]);
    futures_executor::block_on(async {
        for i in 0..100_000 {
            l.acquire(&format!("model-{i}"), 1).await.unwrap().settle(1);
        }
    });
    let stats = l.stats();
    assert_eq!(stats.len(), 100_000);
    assert!(stats.values().all(|s| s.requests.used == 1 && s.active.used == 0));
}

/// Found by fuzzing: at the end of the clock, "room only after `Instant::MAX`" must not read
/// as "room now" (it admitted past RPM); it is refused instead of spinning or hanging.
#[test]
fn nothing_is_admitted_after_the_end_of_the_clock() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(1, u64::MAX, u32::MAX))]);
    futures_executor::block_on(async {
        sim.clock.set(Instant::MAX - Duration::from_secs(10));
        l.acquire("m", 1).await.unwrap().settle(1);
        sim.clock.set(Instant::MAX);
        let err = l.acquire("m", 1).await.unwrap_err();
        assert_eq!(err, Error::MaxWaitExceeded { ready_at: Instant::MAX });
        let err = l.acquire_within("m", 1, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err, Error::MaxWaitExceeded { ready_at: Instant::MAX });
    });
    let s = l.stats()["m"].clone();
    assert_eq!((s.requests.used, s.active.used), (1, 0));
}

#[test]
fn empty_and_very_long_model_names_are_ordinary_models() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("", cfg(2, 100, 1))]);
    let long = "m".repeat(1 << 20);
    futures_executor::block_on(async {
        l.acquire("", 10).await.unwrap().settle(7);
        l.acquire(&long, 10).await.unwrap().settle(3);
    });
    let stats = l.stats();
    assert_eq!(stats[""].tokens.to_string(), "7/100");
    assert_eq!(stats[long.as_str()].tokens.to_string(), "3/200000"); // the default config
}

// ---- Issue 8: bounded waiting is measured from the first poll. ----

/// ARCHITECTURE.md "Bounded waiting": `max_wait` counts from the first poll, not from when the
/// future was made. A future made, left unpolled while the clock moves 20 ms, then polled with
/// a 5 ms budget on an idle limiter is admitted (it fits now); so is a zero budget.
#[test]
fn max_wait_is_measured_from_the_first_poll() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 1_000, 5))]);
    let five_ms = l.acquire_within("m", 1, Duration::from_millis(5));
    let zero = l.acquire_within("m", 1, Duration::ZERO);
    sim.clock.advance(Duration::from_millis(20));
    let permit = futures_executor::block_on(five_ms).expect("fits now, within 5 ms of the poll");
    assert_eq!(permit.admitted_at(), Instant::from_millis(20));
    permit.settle(1);
    futures_executor::block_on(zero).expect("max_wait = 0 admits when it fits now").settle(1);
    assert_eq!(l.stats()["m"].requests.used, 2);
}

/// The budget of a request that must wait also runs from the first poll: made at 0 s with a
/// 10 s budget, first polled at 55 s, room at ~61 s: it waits and is admitted.
#[test]
fn a_waiting_request_gets_its_whole_budget_from_the_first_poll() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(1, 1_000, 5))]);
    futures_executor::block_on(l.acquire("m", 1)).unwrap().settle(1);
    let result = Rc::new(RefCell::new(None));
    {
        let (l, result, clock) = (l.clone(), result.clone(), sim.clock.clone());
        sim.spawn(async move {
            let admitted = l.acquire_within("m", 1, Duration::from_secs(10));
            clock.set(Instant::from_secs(55)); // made at 0 s, first polled at 55 s
            let r = admitted.await.map(|p| p.admitted_at());
            *result.borrow_mut() = Some(r);
        });
    }
    sim.run();
    assert_eq!(*result.borrow(), Some(Ok(just_before(61))));
}

// ---- Issue 8: a settle above the estimate is charged even when it comes late. ----

/// A long streaming call admitted with an under-estimate settles after its admission slot has
/// left the 60 s window: the excess is charged at the settle (the current slot), so later
/// requests wait for it to leave the window, instead of the excess being dropped.
#[test]
fn late_excess_is_charged_at_the_settle() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 1_000, 5))]);
    let permit = futures_executor::block_on(l.acquire("m", 100)).unwrap();
    sim.clock.set(Instant::from_secs(70)); // slot 0 left the window at ~61 s
    assert_eq!(l.stats()["m"].tokens.used, 0);
    permit.settle(900);
    assert_eq!(l.stats()["m"].tokens.used, 800, "the 800 over the estimate count from 70 s");
    let err = futures_executor::block_on(l.acquire_within("m", 300, Duration::ZERO)).unwrap_err();
    assert_eq!(err, Error::MaxWaitExceeded { ready_at: just_before(131) });
    futures_executor::block_on(l.acquire_within("m", 200, Duration::ZERO)).unwrap().settle(200);
}

/// A late settle *below* the estimate refunds nothing: the estimate already left the window.
#[test]
fn a_late_refund_refunds_nothing() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 1_000, 5))]);
    let permit = futures_executor::block_on(l.acquire("m", 900)).unwrap();
    sim.clock.set(Instant::from_secs(70));
    let other = futures_executor::block_on(l.acquire("m", 500)).unwrap();
    permit.settle(0);
    assert_eq!(l.stats()["m"].tokens.used, 500);
    other.settle(500);
}

// ---- Issue 9: the missing forms (`try_acquire`, `acquire_before`) and strict mode. ----

/// `try_acquire` admits when slot, RPM and TPM are all free now, and otherwise refuses at
/// once with the instant the windows would have room, counting nothing.
#[test]
fn try_acquire_admits_now_or_says_when_the_windows_have_room() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(1, 1_000, 5))]);
    let permit = l.try_acquire("m", 10).unwrap();
    assert_eq!(permit.admitted_at(), Instant::ZERO);
    permit.settle(10);
    assert_eq!(
        l.try_acquire("m", 10).unwrap_err(),
        Error::RateLimited(tollgate::Refusal::at(just_before(61)))
    );
    assert_eq!(
        l.try_acquire("m", 1_001).unwrap_err(),
        Error::InsufficientCapacity { requested: 1_001, capacity: 1_000 }
    );
    let s = l.stats()["m"].clone();
    assert_eq!((s.requests.used, s.tokens.used, s.active.used), (1, 10, 0));
    sim.clock.set(just_before(61));
    l.try_acquire("m", 10).expect("room again once the window moved on").settle(10);
}

/// No free parallel slot: `RateLimited` with the windows' instant (`now` when only the slot is
/// missing; a slot frees when a permit ends, which no clock predicts).
#[test]
fn try_acquire_without_a_free_slot_is_rate_limited() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 1_000, 1))]);
    let held = l.try_acquire("m", 10).unwrap();
    sim.clock.set(Instant::from_secs(3));
    assert_eq!(
        l.try_acquire("m", 10).unwrap_err(),
        Error::RateLimited(tollgate::Refusal::at(Instant::from_secs(3)))
    );
    assert_eq!(l.stats()["m"].active.used, 1);
    drop(held);
    l.try_acquire("m", 10).unwrap().settle(10);
    assert_eq!(l.stats()["m"].requests.used, 2);
}

/// `try_acquire` never overtakes a request already waiting for that model, even when its own
/// smaller request would fit the windows.
#[test]
fn try_acquire_does_not_overtake_a_waiting_request() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(100, 1_000, 5))]);
    let big = l.try_acquire("m", 900).unwrap();
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut waiting = pin!(l.acquire("m", 500));
    assert!(waiting.as_mut().poll(&mut cx).is_pending());
    let err = l.try_acquire("m", 50).unwrap_err();
    assert!(matches!(err, Error::RateLimited(_)), "{err}");
    assert_eq!(l.stats()["m"].requests.used, 1);
    big.settle(100);
    let Poll::Ready(Ok(p)) = waiting.as_mut().poll(&mut cx) else { panic!("refund admits it") };
    p.settle(500);
    l.try_acquire("m", 50).unwrap().settle(50);
}

/// `acquire_before(t)`: refused up front when the windows show room only after `t`, admitted
/// when room comes by `t`, and a request whose deadline has passed is refused even when it
/// would fit.
#[test]
fn acquire_before_waits_until_the_deadline_and_no_longer() {
    let mut sim = Sim::new();
    let l = limiter(&sim, &[("m", cfg(1, 1_000, 5))]);
    futures_executor::block_on(async {
        l.acquire_before("m", 1, Instant::from_secs(1)).await.unwrap().settle(1);
        let err = l.acquire_before("m", 1, Instant::from_secs(10)).await.unwrap_err();
        assert_eq!(err, Error::MaxWaitExceeded { ready_at: just_before(61) });
    });
    let result = Rc::new(RefCell::new(None));
    {
        let (l, result) = (l.clone(), result.clone());
        sim.spawn(async move {
            let r = l.acquire_before("m", 1, just_before(61)).await.map(|p| p.admitted_at());
            *result.borrow_mut() = Some(r);
        });
    }
    sim.run();
    assert_eq!(*result.borrow(), Some(Ok(just_before(61))));
    let other = limiter(&sim, &[("m", cfg(100, 1_000, 5))]);
    sim.clock.set(Instant::from_secs(200));
    let err = futures_executor::block_on(other.acquire_before("m", 1, Instant::from_secs(199)))
        .unwrap_err();
    assert_eq!(err, Error::MaxWaitExceeded { ready_at: Instant::from_secs(200) });
    assert_eq!(other.stats()["m"].requests.used, 0);
}

/// A request queued behind a held slot gives up at its deadline, releasing its place.
#[test]
fn acquire_before_gives_up_its_queue_place_at_the_deadline() {
    a_bounded_waiter_behind_a_held_slot_gives_up_at_5s(|l| async move {
        l.acquire_before("m", 1, Instant::from_secs(5)).await.map(drop)
    });
}

#[test]
fn owned_try_and_before_forms_give_static_permits() {
    let l = Arc::new(
        ModelRateLimiter::<ManualClock>::new([("m", cfg(10, 100, 1))], RateLimitConfig::default())
            .unwrap(),
    );
    fn assert_static<F: 'static>(_: &F) {}
    let permit = l.clone().try_acquire_owned("m", 10).unwrap();
    assert_static(&permit);
    assert!(matches!(l.clone().try_acquire_owned("m", 10), Err(Error::RateLimited(_))));
    permit.settle(5);
    let fut = l.clone().acquire_before_owned("m", 10, Instant::from_secs(1));
    assert_static(&fut);
    futures_executor::block_on(fut).unwrap().settle(10);
    assert_eq!(l.stats()["m"].tokens.used, 15);
}

/// Strict mode: a model name that was not configured (a typo such as "gpt4") is an error at
/// once from every form, and creates no state.
#[test]
fn strict_mode_refuses_unknown_models_and_creates_no_state() {
    let sim = Sim::new();
    let l = Arc::new(
        ModelRateLimiter::strict_with_timer([("gpt-4", cfg(100, 1_000, 5))], sim.clock.clone())
            .unwrap(),
    );
    assert!(l.is_strict());
    assert_eq!(l.default_config(), None);
    assert!(l.is_configured("gpt-4") && !l.is_configured("gpt4"));
    assert_eq!(l.config("gpt-4"), cfg(100, 1_000, 5));
    futures_executor::block_on(async {
        assert_eq!(l.acquire("gpt4", 1).await.unwrap_err(), Error::UnknownModel);
        assert_eq!(
            l.acquire_within("gpt4", 1, Duration::from_secs(1)).await.unwrap_err(),
            Error::UnknownModel
        );
        assert_eq!(
            l.acquire_before("gpt4", 1, Instant::from_secs(1)).await.unwrap_err(),
            Error::UnknownModel
        );
        assert_eq!(l.clone().acquire_owned("gpt4", 1).await.unwrap_err(), Error::UnknownModel);
        assert_eq!(
            l.clone().acquire_within_owned("gpt4", 1, Duration::ZERO).await.unwrap_err(),
            Error::UnknownModel
        );
        assert_eq!(
            l.clone().acquire_before_owned("gpt4", 1, Instant::MAX).await.unwrap_err(),
            Error::UnknownModel
        );
        // Unknown beats oversized: the name is checked first.
        assert_eq!(l.acquire("gpt4", u64::MAX).await.unwrap_err(), Error::UnknownModel);
        l.acquire("gpt-4", 10).await.unwrap().settle(10);
    });
    assert_eq!(l.try_acquire("gpt4", 1).unwrap_err(), Error::UnknownModel);
    assert_eq!(l.clone().try_acquire_owned("gpt4", 1).unwrap_err(), Error::UnknownModel);
    assert_eq!(l.stats().keys().collect::<Vec<_>>(), ["gpt-4"]);
    assert_eq!(Error::UnknownModel.ready_at(), None);
    assert!(Error::UnknownModel.to_string().contains("not configured"));
}

/// The default mode is unchanged: an unknown name runs under the default config.
#[test]
fn the_default_mode_still_admits_unknown_models_under_the_default() {
    let sim = Sim::new();
    let l = limiter(&sim, &[("gpt-4", cfg(100, 1_000, 5))]);
    assert!(!l.is_strict());
    assert_eq!(l.default_config(), Some(RateLimitConfig::default()));
    assert!(!l.is_configured("gpt4"));
    assert_eq!(l.config("gpt4"), RateLimitConfig::default());
    l.try_acquire("gpt4", 1).unwrap().settle(1);
    assert_eq!(l.stats()["gpt4"].requests.to_string(), "1/10");
}

#[test]
fn strict_mode_validates_configs_like_new() {
    let err = ModelRateLimiter::<ManualClock>::strict([("m", cfg(0, 1_000, 5))]).unwrap_err();
    assert_eq!(err.model.as_deref(), Some("m"));
    assert_eq!(err.error.field, "rpm");
}
