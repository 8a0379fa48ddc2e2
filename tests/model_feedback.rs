//! Provider feedback on the model limiter, on a manual clock: input and output token limits,
//! day windows, shared quotas, the cooldown after a 429 (FIFO, no admission inside it, the
//! slot released into it), an exhausted quota, learned limits and draining, and what `stats()`
//! shows of them.

mod support;

use core::cell::RefCell;
use core::time::Duration;
use std::rc::Rc;
use std::sync::Arc;

use support::Sim;
use tollgate::model::{Counts, Estimate, Limit};
use tollgate::{Clock, Error, Instant, ManualClock, ModelRateLimiter, RateLimitConfig, Timer};

type Limiter = ModelRateLimiter<Arc<ManualClock>>;

const MINUTE: Duration = Duration::from_secs(60);
const SEC: Duration = Duration::from_secs(1);

fn limiter(sim: &Sim, config: RateLimitConfig) -> Rc<Limiter> {
    Rc::new(
        ModelRateLimiter::with_timer([("m", config.clone())], config, sim.clock.clone()).unwrap(),
    )
}

fn roomy() -> RateLimitConfig {
    RateLimitConfig { rpm: 1_000, tpm: 1_000_000, max_parallel_requests: 10, ..Default::default() }
}

fn io_config() -> RateLimitConfig {
    RateLimitConfig {
        limits: vec![
            Limit::window("itpm", Counts::InputTokens, 1_000, MINUTE),
            Limit::window("otpm", Counts::OutputTokens, 500, MINUTE),
        ],
        ..roomy()
    }
}

fn used(l: &Limiter, model: &str) -> Vec<u64> {
    l.stats()[model].limits.iter().map(|l| l.usage.used).collect()
}

/// Spawns one request per entry of `tags` on `model` (in that order), each holding its permit
/// for `hold` and then settling; logs `(tag, admitted_at)` in admission order.
fn spawn_all(
    sim: &Sim,
    l: &Rc<Limiter>,
    model: &'static str,
    tags: &[usize],
    hold: Duration,
) -> Rc<RefCell<Vec<(usize, Instant)>>> {
    let log = Rc::new(RefCell::new(Vec::new()));
    for &tag in tags {
        let (l, log, clock) = (l.clone(), log.clone(), sim.clock.clone());
        sim.spawn(async move {
            let permit = l.acquire(model, 10).await.unwrap();
            log.borrow_mut().push((tag, permit.admitted_at()));
            clock.sleep_until(clock.now() + hold).await;
            permit.settle(10);
        });
    }
    log
}

// --- limit kinds ---

#[test]
fn input_tokens_are_reserved_at_admission_and_output_counted_when_settled() {
    let sim = Sim::new();
    let l = limiter(&sim, io_config());
    // max_tokens of 4 096 is above the OTPM of 500: output is not reserved, so it fits.
    let p = l.try_acquire_with("m", Estimate { input: 600, output: 4_096 }).unwrap();
    assert_eq!(used(&l, "m"), [1, 4_696, 600, 0]);
    // ITPM has 400 left: 500 more input does not fit now.
    let Err(Error::RateLimited(_)) = l.try_acquire_with("m", Estimate { input: 500, output: 0 })
    else {
        panic!("ITPM must refuse")
    };
    p.settle_io(580, 500);
    assert_eq!(used(&l, "m"), [1, 1_080, 580, 500]);
    // OTPM is full: nothing is admitted, however small, until its window frees.
    let err = l.try_acquire_with("m", Estimate { input: 1, output: 1 }).unwrap_err();
    assert!(err.ready_at().unwrap() >= Instant::from_secs(59), "{err:?}");
    sim.clock.set(Instant::from_secs(61));
    l.try_acquire_with("m", Estimate { input: 1, output: 1 }).unwrap().settle_io(1, 1);
}

#[test]
fn a_split_estimate_has_every_form_a_plain_one_has() {
    let sim = Sim::new();
    let l = Arc::new(
        ModelRateLimiter::with_timer([("m", io_config())], io_config(), sim.clock.clone()).unwrap(),
    );
    // Owned try: input reserved, output not, as the borrowed form.
    let p = l.clone().try_acquire_with_owned("m", Estimate { input: 900, output: 4_096 }).unwrap();
    assert_eq!(used(&l, "m"), [1, 4_996, 900, 0]);
    let err = l.clone().try_acquire_with_owned("m", Estimate { input: 200, output: 0 });
    assert!(matches!(err, Err(Error::RateLimited(_))), "ITPM has 100 left: {err:?}");
    p.settle_io(900, 10);
    // Bounded waits: ITPM frees at 60 s, too late for 10 s, refused up front with when.
    let by = Duration::from_secs(10);
    let refused = futures_executor::block_on(l.acquire_within_with(
        "m",
        Estimate { input: 200, output: 1 },
        by,
    ));
    assert!(
        matches!(refused, Err(Error::MaxWaitExceeded { ready_at }) if ready_at >= Instant::from_secs(59)),
        "{refused:?}"
    );
    let owned = l.clone().acquire_within_with_owned("m", Estimate { input: 200, output: 1 }, by);
    assert!(matches!(futures_executor::block_on(owned), Err(Error::MaxWaitExceeded { .. })));
    // Within the bound: admitted, with the split kept (settled as io).
    let fits = Estimate { input: 50, output: 5 };
    let p = futures_executor::block_on(l.clone().acquire_within_with_owned("m", fits, by)).unwrap();
    p.settle_io(50, 5);
    futures_executor::block_on(l.acquire_within_with("m", fits, Duration::ZERO))
        .unwrap()
        .settle_io(50, 5);
    assert_eq!(used(&l, "m"), [3, 1_020, 1_000, 20]);
}

#[test]
fn input_beyond_an_input_limit_never_fits_but_output_beyond_an_output_limit_does() {
    let sim = Sim::new();
    let l = limiter(&sim, io_config());
    let err = l.try_acquire_with("m", Estimate { input: 1_001, output: 0 }).unwrap_err();
    assert_eq!(err, Error::InsufficientCapacity { requested: 1_001, capacity: 1_000 });
    // The waiting form fails at once too (nothing hangs: invariant 5).
    let err = futures_executor::block_on(l.acquire("m", 1_001)).unwrap_err();
    assert_eq!(err, Error::InsufficientCapacity { requested: 1_001, capacity: 1_000 });
    l.try_acquire_with("m", Estimate { input: 10, output: 100_000 }).unwrap().settle_io(10, 20);
}

#[test]
fn a_plain_settle_counts_input_up_to_the_reserved_input_and_the_rest_as_output() {
    let sim = Sim::new();
    let l = limiter(&sim, io_config());
    // A plain count is all input.
    l.try_acquire("m", 300).unwrap().settle(250);
    assert_eq!(used(&l, "m"), [1, 250, 250, 0]);
    let p = l.try_acquire_with("m", Estimate { input: 100, output: 300 }).unwrap();
    p.settle(160);
    assert_eq!(used(&l, "m"), [2, 410, 350, 60]);
}

#[test]
fn a_day_window_is_coarse_and_small() {
    let sim = Sim::new();
    let config =
        RateLimitConfig { limits: vec![Limit::per_day("rpd", Counts::Requests, 3)], ..roomy() };
    let l = limiter(&sim, config);
    for _ in 0..3 {
        l.try_acquire("m", 1).unwrap().settle(1);
    }
    let ready = l.try_acquire("m", 1).unwrap_err().ready_at().unwrap();
    // Room again once the first 15-minute slot has left the day: at most one slot late.
    assert!(ready >= Instant::from_secs(86_400), "{ready:?}");
    assert!(ready <= Instant::from_secs(86_400 + 900), "{ready:?}");
    sim.clock.set(ready);
    l.try_acquire("m", 1).unwrap().settle(1);
    let stats = &l.stats()["m"];
    assert_eq!(stats.limits[2].usage.to_string(), "1/3");
}

// --- shared quotas ---

#[test]
fn models_sharing_a_quota_share_one_set_of_books_and_one_queue() {
    let mut sim = Sim::new();
    let l = limiter(&sim, roomy());
    l.share(&["a", "b"], RateLimitConfig { rpm: 2, ..roomy() }).unwrap();
    l.try_acquire("a", 10).unwrap().settle(10);
    l.try_acquire("b", 10).unwrap().settle(10);
    assert!(matches!(l.try_acquire("a", 10), Err(Error::RateLimited(_))));
    assert_eq!(l.stats()["b"].requests.to_string(), "2/2");
    assert!(l.is_configured("b"));
    // One queue: "a" waits first, so a later "b" does not overtake it.
    let first = spawn_all(&sim, &l, "a", &[0], Duration::ZERO);
    let second = spawn_all(&sim, &l, "b", &[1], Duration::ZERO);
    sim.run();
    let (a, b) = (first.borrow()[0].1, second.borrow()[0].1);
    assert!(a >= Instant::from_secs(59) && a <= b, "a at {a:?}, b at {b:?}");
    // Other models are untouched.
    l.try_acquire("c", 10).unwrap().settle(10);
}

// --- cooldown ---

#[test]
fn a_429_pauses_every_admission_until_the_cooldown_ends_in_fifo_order() {
    let mut sim = Sim::new();
    let l = limiter(&sim, RateLimitConfig { max_parallel_requests: 1, ..roomy() });
    let p = l.try_acquire("m", 10).unwrap();
    // Five waiters queue behind the one slot.
    let log = spawn_all(&sim, &l, "m", &[0, 1, 2, 3, 4], Duration::ZERO);
    sim.pool.run_until_stalled();
    assert!(log.borrow().is_empty());
    // The request in flight gets a 429 asking for 2 s: its slot goes back *into* the cooldown.
    let cooldown = p.rate_limited(2 * SEC);
    assert_eq!((cooldown.from, cooldown.until), (Instant::ZERO, Instant::from_secs(2)));
    sim.pool.run_until_stalled();
    assert!(log.borrow().is_empty(), "admitted inside the cooldown: {:?}", log.borrow());
    assert_eq!(l.stats()["m"].cooldown_until, Some(Instant::from_secs(2)));
    sim.run();
    let log = log.borrow();
    let order: Vec<usize> = log.iter().map(|e| e.0).collect();
    assert_eq!(order, [0, 1, 2, 3, 4]);
    assert!(log.iter().all(|e| e.1 >= Instant::from_secs(2)), "{log:?}");
    assert_eq!(l.stats()["m"].cooldown_until, None);
    assert_eq!(l.stats()["m"].active.used, 0);
}

#[test]
fn a_429_gives_its_tokens_back_but_keeps_its_request_counted() {
    let sim = Sim::new();
    let l = limiter(&sim, roomy());
    let _ = l.try_acquire("m", 700).unwrap().rate_limited(SEC);
    assert_eq!(l.stats()["m"].requests.used, 1);
    assert_eq!(l.stats()["m"].tokens.used, 0);
}

#[test]
fn cooldowns_only_extend_and_refusals_say_when_they_end() {
    let sim = Sim::new();
    let l = limiter(&sim, roomy());
    let c = l.cool_down("m", 5 * SEC).unwrap();
    assert!(c.extended);
    sim.clock.set(Instant::from_secs(1));
    // A shorter one inside it changes nothing; a longer one extends it.
    let c = l.cool_down("m", SEC).unwrap();
    assert_eq!((c.until, c.extended), (Instant::from_secs(5), false));
    let c = l.cool_down("m", 6 * SEC).unwrap();
    assert_eq!((c.from, c.until, c.extended), (Instant::from_secs(1), Instant::from_secs(7), true));
    let Err(Error::RateLimited(refusal)) = l.try_acquire("m", 1) else { panic!() };
    assert_eq!(refusal.ready_at(), Instant::from_secs(7));
    // A bounded wait shorter than the cooldown is refused up front, with its end.
    let err = futures_executor::block_on(l.acquire_within("m", 1, SEC)).unwrap_err();
    assert_eq!(err, Error::MaxWaitExceeded { ready_at: Instant::from_secs(7) });
    sim.clock.set(Instant::from_secs(7));
    l.try_acquire("m", 1).unwrap().settle(1);
}

#[test]
fn resume_ends_a_cooldown_and_the_waiting_head_goes_in_at_once() {
    let mut sim = Sim::new();
    let l = limiter(&sim, roomy());
    l.cool_down("m", 3_600 * SEC).unwrap();
    let log = spawn_all(&sim, &l, "m", &[0, 1], Duration::ZERO);
    sim.run_until(Instant::from_secs(10));
    assert!(log.borrow().is_empty());
    l.resume("m").unwrap();
    sim.pool.run_until_stalled();
    let log = log.borrow();
    assert_eq!(log.iter().map(|e| e.1).collect::<Vec<_>>(), [Instant::from_secs(10); 2]);
}

// --- exhausted quota ---

#[test]
fn an_exhausted_quota_fails_admissions_with_its_reset_until_then() {
    let mut sim = Sim::new();
    let l = limiter(&sim, RateLimitConfig { max_parallel_requests: 1, ..roomy() });
    let p = l.try_acquire("m", 10).unwrap();
    // Someone waits in line (for the slot) when the quota runs out.
    let waiter = Rc::new(RefCell::new(None));
    {
        let (l, waiter) = (l.clone(), waiter.clone());
        sim.spawn(async move {
            *waiter.borrow_mut() = Some(l.acquire("m", 10).await.map(|p| p.settle(10)));
        });
    }
    sim.pool.run_until_stalled();
    p.quota_exhausted(Some(10 * SEC));
    sim.pool.run_until_stalled();
    let reset_at = Some(Instant::from_secs(10));
    assert_eq!(*waiter.borrow(), Some(Err(Error::QuotaExhausted { reset_at })));
    assert_eq!(l.try_acquire("m", 1).unwrap_err(), Error::QuotaExhausted { reset_at });
    let err = futures_executor::block_on(l.acquire("m", 1)).unwrap_err();
    assert_eq!(err, Error::QuotaExhausted { reset_at });
    assert_eq!(err.retry_after(Instant::from_secs(4)), Some(6 * SEC));
    assert_eq!(l.stats()["m"].quota_exhausted, Some(reset_at));
    sim.clock.set(Instant::from_secs(10));
    l.try_acquire("m", 1).unwrap().settle(1);
    assert_eq!(l.stats()["m"].quota_exhausted, None);
    sim.run();
}

#[test]
fn an_exhausted_quota_with_no_known_reset_holds_until_resumed() {
    let sim = Sim::new();
    let l = limiter(&sim, roomy());
    l.quota_exhausted("m", None).unwrap();
    sim.clock.set(Instant::from_secs(1_000_000));
    assert_eq!(l.try_acquire("m", 1).unwrap_err(), Error::QuotaExhausted { reset_at: None });
    l.resume("m").unwrap();
    l.try_acquire("m", 1).unwrap().settle(1);
}

// --- learned limits and draining ---

#[test]
fn learned_limits_only_tighten_unless_the_config_opts_in() {
    let sim = Sim::new();
    let l = limiter(&sim, RateLimitConfig { rpm: 100, tpm: 40_000, ..roomy() });
    let minute = Some(MINUTE);
    let changed = l.learn_limit("m", Counts::Tokens, minute, 30_000).unwrap();
    assert_eq!((changed.len(), changed[0].from, changed[0].to), (1, 40_000, 30_000));
    let tpm = &l.stats()["m"].limits[1];
    assert_eq!((tpm.usage.limit, tpm.configured, tpm.learned), (30_000, 40_000, Some(30_000)));
    // The learned limit binds: 30 001 tokens no longer fit at all.
    assert_eq!(
        l.try_acquire("m", 30_001).unwrap_err(),
        Error::InsufficientCapacity { requested: 30_001, capacity: 30_000 }
    );
    // A higher figure goes back to the configured limit, never past it (invariant 11).
    let changed = l.learn_limit("m", Counts::Tokens, minute, 90_000).unwrap();
    assert_eq!(changed[0].to, 40_000);
    let tpm = &l.stats()["m"].limits[1];
    assert_eq!((tpm.usage.limit, tpm.learned), (40_000, None));
    // No matching limit (no day window): nothing changes.
    assert!(l.learn_limit("m", Counts::Requests, Some(Limit::DAY), 1).unwrap().is_empty());

    // Opted in: feedback may raise.
    let sim = Sim::new();
    let l = limiter(&sim, RateLimitConfig { rpm: 100, feedback_may_raise: true, ..roomy() });
    let changed = l.learn_limit("m", Counts::Requests, minute, 500).unwrap();
    assert_eq!((changed[0].from, changed[0].to), (100, 500));
    assert_eq!(l.stats()["m"].requests.limit, 500);
}

#[test]
fn a_lowered_limit_below_usage_blocks_until_usage_fits() {
    let sim = Sim::new();
    let l = limiter(&sim, RateLimitConfig { rpm: 10, ..roomy() });
    for _ in 0..5 {
        l.try_acquire("m", 1).unwrap().settle(1);
    }
    l.learn_limit("m", Counts::Requests, None, 3).unwrap();
    let ready = l.try_acquire("m", 1).unwrap_err().ready_at().unwrap();
    assert!(ready >= Instant::from_secs(59), "{ready:?}");
}

#[test]
fn draining_sets_the_local_room_to_the_providers_remaining_until_its_reset() {
    let sim = Sim::new();
    let l = limiter(&sim, RateLimitConfig { tpm: 10_000, ..roomy() });
    sim.clock.set(Instant::from_secs(100));
    l.try_acquire("m", 2_000).unwrap().settle(2_000);
    // The provider counts a neighbour: 3 000 left, resetting in 10 s.
    let d = l.drain("m", Counts::Tokens, Some(MINUTE), 3_000, 10 * SEC).unwrap();
    assert_eq!((d.len(), d[0].charged), (1, 5_000));
    assert_eq!(l.stats()["m"].tokens.used, 7_000);
    assert!(l.try_acquire("m", 3_001).is_err());
    l.try_acquire("m", 3_000).unwrap().settle(0);
    // A remaining above the local room gives nothing back before the earlier report's reset
    // (the neighbour's share dips between its requests): 5 000 are still held.
    let d = l.drain("m", Counts::Tokens, Some(MINUTE), 9_000, SEC).unwrap();
    assert_eq!((d.len(), d[0].charged), (1, 5_000));
    assert_eq!(l.stats()["m"].tokens.used, 7_000);
    // The drained tokens leave the window about when the provider's count resets (at most
    // one slot late), while our own 2 000 stay for their whole minute.
    sim.clock.set(Instant::from_secs(112));
    assert_eq!(l.stats()["m"].tokens.used, 2_000);
    sim.clock.set(Instant::from_secs(161));
    assert_eq!(l.stats()["m"].tokens.used, 0);
}

#[test]
fn stats_show_a_cooldown_and_learned_limits_per_model() {
    let sim = Sim::new();
    let l = limiter(&sim, roomy());
    l.cool_down("m", 3 * SEC).unwrap();
    l.learn_limit("m", Counts::Requests, Some(MINUTE), 7).unwrap();
    let stats = &l.stats()["m"];
    assert_eq!(stats.cooldown_until, Some(Instant::from_secs(3)));
    assert_eq!(stats.limits[0].learned, Some(7));
    assert_eq!(stats.requests.limit, 7);
    // Other models keep no cooldown.
    l.try_acquire("other", 1).unwrap().settle(1);
    assert_eq!(l.stats()["other"].cooldown_until, None);
}

#[test]
fn a_strict_limiter_refuses_feedback_for_unknown_models() {
    let l = ModelRateLimiter::<ManualClock>::strict([("m", roomy())]).unwrap();
    assert_eq!(l.cool_down("x", SEC).unwrap_err(), Error::UnknownModel);
    assert_eq!(l.resume("x").unwrap_err(), Error::UnknownModel);
    assert!(!l.stats().contains_key("x"));
}

#[test]
fn a_drain_whose_reset_is_past_lasts_until_the_oldest_slot_leaves_not_a_whole_window() {
    let sim = Sim::new();
    let l = limiter(&sim, RateLimitConfig { tpm: 10_000, ..roomy() });
    sim.clock.set(Instant::from_secs(100));
    // A reset already due: the charge goes to the oldest slot of the window.
    let d = l.drain("m", Counts::Tokens, Some(MINUTE), 0, Duration::ZERO).unwrap();
    assert_eq!(d[0].charged, 10_000);
    sim.clock.set(Instant::from_secs(102));
    assert_eq!(l.stats()["m"].tokens.used, 0);
}
