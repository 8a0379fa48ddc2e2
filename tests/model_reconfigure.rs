//! Hot reconfiguration of the model limiter, on a manual clock: a model's limits change at run
//! time keeping its counters and its queue; shrinking below what is in use blocks new
//! admissions until usage fits; waiters re-check at once.

mod support;

use core::cell::RefCell;
use core::time::Duration;
use std::rc::Rc;
use std::sync::Arc;

use support::Sim;
use tollgate::model::Limit;
use tollgate::{Clock, Error, Instant, ManualClock, ModelRateLimiter, RateLimitConfig, Timer};

type Limiter = ModelRateLimiter<Arc<ManualClock>>;

fn cfg(rpm: u32, tpm: u64, max_parallel_requests: u32) -> RateLimitConfig {
    RateLimitConfig { rpm, tpm, max_parallel_requests, ..Default::default() }
}

fn limiter(sim: &Sim, config: RateLimitConfig) -> Rc<Limiter> {
    Rc::new(
        ModelRateLimiter::with_timer([("m", config.clone())], config, sim.clock.clone()).unwrap(),
    )
}

/// Spawns requests tagged `tags` of `tokens` each, each holding its permit for `hold` and
/// then settling at its estimate; logs `(tag, admitted_at)` in admission order.
fn spawn_all(
    sim: &Sim,
    l: &Rc<Limiter>,
    tags: &[usize],
    tokens: u64,
    hold: Duration,
) -> Rc<RefCell<Vec<(usize, Instant)>>> {
    let log = Rc::new(RefCell::new(Vec::new()));
    for &tag in tags {
        let (l, log, clock) = (l.clone(), log.clone(), sim.clock.clone());
        sim.spawn(async move {
            match l.acquire("m", tokens).await {
                Ok(permit) => {
                    log.borrow_mut().push((tag, permit.admitted_at()));
                    clock.sleep_until(clock.now() + hold).await;
                    permit.settle(tokens);
                }
                Err(e) => panic!("request {tag}: {e}"),
            }
        });
    }
    log
}

#[test]
fn a_reconfigured_model_keeps_what_it_counted() {
    let sim = Sim::new();
    let l = limiter(&sim, cfg(3, 1_000, 5));
    l.try_acquire("m", 400).unwrap().settle(400);
    l.try_acquire("m", 400).unwrap().settle(400);
    l.reconfigure("m", cfg(2, 500, 5)).unwrap();
    let stats = &l.stats()["m"];
    assert_eq!(
        (stats.requests.to_string(), stats.tokens.to_string()),
        ("2/2".into(), "800/500".into())
    );
    assert!(matches!(l.try_acquire("m", 1), Err(Error::RateLimited(_))));
    assert_eq!(l.config("m"), cfg(2, 500, 5));
    // Back up: the same counters, more room.
    l.reconfigure("m", cfg(5, 2_000, 5)).unwrap();
    l.try_acquire("m", 1_000).unwrap().settle(1_000);
    assert_eq!(l.stats()["m"].tokens.to_string(), "1800/2000");
}

#[test]
fn a_waiter_rechecks_at_once_when_the_limits_grow() {
    let mut sim = Sim::new();
    let l = limiter(&sim, cfg(1, 1_000, 5));
    l.try_acquire("m", 10).unwrap().settle(10);
    let log = spawn_all(&sim, &l, &[0, 1, 2], 10, Duration::ZERO);
    sim.run_until(Instant::from_secs(5));
    assert!(log.borrow().is_empty());
    l.reconfigure("m", cfg(3, 1_000, 5)).unwrap();
    sim.pool.run_until_stalled();
    // Two more fit the new RPM at once, in arrival order; the third waits for the window.
    assert_eq!(*log.borrow(), [(0, Instant::from_secs(5)), (1, Instant::from_secs(5))]);
    sim.run();
    let log = log.borrow();
    assert_eq!(log.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(log[2].1 >= Instant::from_secs(59), "{log:?}");
}

#[test]
fn shrinking_parallel_slots_below_those_in_use_blocks_until_usage_fits() {
    let mut sim = Sim::new();
    let l = limiter(&sim, cfg(100, 100_000, 3));
    let held: Vec<_> = (0..3).map(|_| l.try_acquire("m", 10).unwrap()).collect();
    l.reconfigure("m", cfg(100, 100_000, 1)).unwrap();
    assert_eq!(l.stats()["m"].active.to_string(), "3/1");
    let log = spawn_all(&sim, &l, &[0, 1], 10, Duration::from_secs(1));
    let mut held = held.into_iter();
    for in_use in [2, 1] {
        held.next().unwrap().settle(10);
        sim.pool.run_until_stalled();
        assert!(log.borrow().is_empty(), "admitted with {in_use} in flight of 1");
        assert_eq!(l.stats()["m"].active.used, in_use);
    }
    held.next().unwrap().settle(10);
    sim.pool.run_until_stalled();
    assert_eq!(log.borrow().len(), 1);
    assert_eq!(l.stats()["m"].active.to_string(), "1/1");
    sim.run();
    assert_eq!(log.borrow().iter().map(|e| e.0).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(l.stats()["m"].active.to_string(), "0/1");
    // Growing again after a shrink gives back exactly the new number of slots.
    l.reconfigure("m", cfg(100, 100_000, 2)).unwrap();
    let a = l.try_acquire("m", 1).unwrap();
    let b = l.try_acquire("m", 1).unwrap();
    assert!(l.try_acquire("m", 1).is_err());
    drop((a, b));
}

#[test]
fn growing_parallel_slots_admits_waiters_at_once_and_pays_off_a_pending_shrink() {
    let mut sim = Sim::new();
    let l = limiter(&sim, cfg(100, 100_000, 2));
    let a = l.try_acquire("m", 10).unwrap();
    let b = l.try_acquire("m", 10).unwrap();
    // Shrink to 1 while both are in use (one slot owed), then grow to 3 before either ends.
    l.reconfigure("m", cfg(100, 100_000, 1)).unwrap();
    let log = spawn_all(&sim, &l, &[0, 1, 2], 10, Duration::from_secs(3_600));
    l.reconfigure("m", cfg(100, 100_000, 3)).unwrap();
    sim.pool.run_until_stalled();
    assert_eq!(log.borrow().len(), 1, "3 slots, 2 in use");
    drop((a, b));
    sim.pool.run_until_stalled();
    assert_eq!(log.borrow().len(), 3);
    assert_eq!(l.stats()["m"].active.to_string(), "3/3");
    drop(sim);
}

#[test]
fn a_waiter_whose_estimate_no_longer_fits_fails_instead_of_hanging() {
    let mut sim = Sim::new();
    let l = limiter(&sim, cfg(100, 1_000, 5));
    l.try_acquire("m", 900).unwrap().settle(900);
    let result = Rc::new(RefCell::new(None));
    {
        let (l, result) = (l.clone(), result.clone());
        sim.spawn(async move {
            *result.borrow_mut() = Some(l.acquire("m", 800).await.map(|p| p.settle(800)));
        });
    }
    sim.run_until(Instant::from_secs(1));
    l.reconfigure("m", cfg(100, 500, 5)).unwrap();
    sim.pool.run_until_stalled();
    assert_eq!(
        *result.borrow(),
        Some(Err(Error::InsufficientCapacity { requested: 800, capacity: 500 }))
    );
}

#[test]
fn a_limit_whose_window_changes_carries_its_usage_over() {
    let sim = Sim::new();
    let with = |window: u64| RateLimitConfig {
        limits: vec![Limit::requests("burst", 2, Duration::from_secs(window)).with_slots(10)],
        ..cfg(100, 100_000, 5)
    };
    let l = limiter(&sim, with(10));
    l.try_acquire("m", 1).unwrap().settle(1);
    l.try_acquire("m", 1).unwrap().settle(1);
    sim.clock.set(Instant::from_secs(5));
    l.reconfigure("m", with(20)).unwrap();
    // The two requests count in the new 20 s window from now, not from when they came.
    assert_eq!(l.stats()["m"].limits[2].usage.to_string(), "2/2");
    let ready = l.try_acquire("m", 1).unwrap_err().ready_at().unwrap();
    assert!(ready >= Instant::from_secs(24), "{ready:?}");
    // A limit added by the new config starts empty; one removed is gone.
    l.reconfigure("m", cfg(100, 100_000, 5)).unwrap();
    assert_eq!(l.stats()["m"].limits.len(), 2);
}

#[test]
fn an_invalid_reconfiguration_changes_nothing_and_a_new_model_is_created() {
    let sim = Sim::new();
    let l = limiter(&sim, cfg(3, 1_000, 5));
    let err = l.reconfigure("m", cfg(0, 1_000, 5)).unwrap_err();
    assert_eq!((err.model.as_deref(), err.error.field), (Some("m"), "rpm"));
    assert_eq!(l.config("m"), cfg(3, 1_000, 5));
    l.reconfigure("new", cfg(7, 1_000, 5)).unwrap();
    assert!(l.is_configured("new"));
    assert_eq!(l.stats()["new"].requests.limit, 7);
    // A strict limiter may be given a model at run time.
    let strict = ModelRateLimiter::<ManualClock>::strict([("m", cfg(3, 1_000, 5))]).unwrap();
    assert_eq!(strict.try_acquire("x", 1).unwrap_err(), Error::UnknownModel);
    strict.reconfigure("x", cfg(3, 1_000, 5)).unwrap();
    strict.try_acquire("x", 1).unwrap().settle(1);
}

#[test]
fn a_waiter_holding_a_slot_when_the_slots_shrink_gives_it_up_until_usage_fits() {
    let mut sim = Sim::new();
    let l = limiter(&sim, cfg(2, 100_000, 3));
    let first = l.try_acquire("m", 10).unwrap();
    let second = l.try_acquire("m", 10).unwrap();
    // The third holds a free slot while it waits for rpm room (2 per minute).
    let log = spawn_all(&sim, &l, &[0], 10, Duration::ZERO);
    sim.run_until(Instant::from_secs(1));
    assert_eq!(l.stats()["m"].active.used, 3);
    // Down to one slot with three in use, then rpm room for everyone.
    l.reconfigure("m", cfg(100, 100_000, 1)).unwrap();
    sim.pool.run_until_stalled();
    assert!(log.borrow().is_empty(), "admitted with 3 in flight of 1");
    first.settle(10);
    sim.pool.run_until_stalled();
    assert!(log.borrow().is_empty(), "admitted with 2 in flight of 1");
    second.settle(10);
    sim.pool.run_until_stalled();
    assert_eq!(log.borrow().len(), 1);
    sim.run();
    assert_eq!(l.stats()["m"].active.to_string(), "0/1");
}
