//! Property test of the model limiter: random arrivals, sizes, settles, drops and
//! cancellations over several models, checked against ARCHITECTURE.md's invariants 1–6 on the
//! admission log. Runs on a manual clock; no real time passes.
#![cfg(not(miri))] // proptest is far too slow under miri; tests/model.rs covers the paths

mod support;

use core::cell::RefCell;
use core::time::Duration;
use std::collections::BTreeMap;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::{Either, select};
use proptest::prelude::*;
use support::Sim;
use tollgate::{Clock, Error, Instant, ManualClock, ModelRateLimiter, RateLimitConfig, Timer};

const WINDOW: u64 = 60_000_000_000;

#[derive(Debug, Clone)]
struct Request {
    model: usize,
    gap_ms: u64,
    estimate: u64,
    /// `None`: drop the permit unsettled (the estimate stays charged).
    actual: Option<u64>,
    hold_ms: u64,
    /// Give up (drop the acquire future) after this long if still waiting.
    cancel_after_ms: Option<u64>,
}

fn request(models: usize, tpm_max: u64) -> impl Strategy<Value = Request> {
    (
        0..models,
        0u64..20_000,
        0..tpm_max + tpm_max / 4, // some requests can never fit
        proptest::option::weighted(0.8, 0..tpm_max),
        0u64..30_000,
        proptest::option::weighted(0.2, 0u64..120_000),
    )
        .prop_map(|(model, gap_ms, estimate, actual, hold_ms, cancel_after_ms)| Request {
            model,
            gap_ms: gap_ms + 1, // distinct arrival instants make arrival order unambiguous
            estimate,
            actual,
            hold_ms,
            cancel_after_ms,
        })
}

fn config() -> impl Strategy<Value = RateLimitConfig> {
    (1u32..8, 1u64..2_000, 1u32..4).prop_map(|(rpm, tpm, max_parallel_requests)| RateLimitConfig {
        rpm,
        tpm,
        max_parallel_requests,
        ..Default::default()
    })
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Admitted {
        req: usize,
        at: Instant,
    },
    /// The permit ended: settled at `charge`, or dropped (charge = estimate).
    Ended {
        req: usize,
        charge: u64,
    },
    Refused {
        req: usize,
    },
    Cancelled {
        req: usize,
    },
}

fn run(configs: &[RateLimitConfig], reqs: &[Request]) -> (Vec<Event>, Rc<Lim>) {
    let mut sim = Sim::new();
    let names: Vec<String> = (0..configs.len()).map(|i| format!("model-{i}")).collect();
    let limiter = Rc::new(
        ModelRateLimiter::with_timer(
            names.iter().cloned().zip(configs.iter().cloned()),
            RateLimitConfig::default(),
            sim.clock.clone(),
        )
        .unwrap(),
    );
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut arrival = Instant::ZERO;
    for (i, r) in reqs.iter().cloned().enumerate() {
        arrival = arrival + Duration::from_millis(r.gap_ms);
        let (l, log, clock, name) =
            (limiter.clone(), log.clone(), sim.clock.clone(), names[r.model].clone());
        sim.spawn(async move {
            clock.sleep_until(arrival).await;
            let acquire = pin!(l.acquire(&name, r.estimate));
            let outcome = match r.cancel_after_ms {
                None => Some(acquire.await),
                Some(ms) => {
                    let give_up = pin!(clock.sleep_until(arrival + Duration::from_millis(ms)));
                    match select(acquire, give_up).await {
                        Either::Left((res, _)) => Some(res),
                        Either::Right(_) => None,
                    }
                }
            };
            match outcome {
                None => log.borrow_mut().push(Event::Cancelled { req: i }),
                Some(Err(Error::InsufficientCapacity { .. })) => {
                    log.borrow_mut().push(Event::Refused { req: i })
                }
                Some(Err(e)) => panic!("unexpected error {e}"),
                Some(Ok(permit)) => {
                    log.borrow_mut().push(Event::Admitted { req: i, at: clock.now() });
                    let end = clock.now() + Duration::from_millis(r.hold_ms);
                    clock.sleep_until(end).await;
                    let charge = match r.actual {
                        Some(actual) => {
                            permit.settle(actual);
                            actual
                        }
                        None => {
                            drop(permit);
                            r.estimate
                        }
                    };
                    log.borrow_mut().push(Event::Ended { req: i, charge });
                }
            }
        });
    }
    sim.run();
    let events = log.borrow().clone();
    (events, limiter)
}

type Lim = ModelRateLimiter<Arc<ManualClock>>;

fn check(configs: &[RateLimitConfig], reqs: &[Request]) -> Result<(), TestCaseError> {
    let (events, limiter) = run(configs, reqs);
    // Positions in the log, not instants, say what happened first: a permit held for 0 ms
    // settles at the very instant another request is admitted, before or after it.
    let mut admitted_at: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut admitted_pos: BTreeMap<usize, usize> = BTreeMap::new();
    let mut ended: BTreeMap<usize, (usize, u64)> = BTreeMap::new();
    let mut in_flight = vec![0u32; configs.len()];
    let mut resolved = 0;
    for (pos, e) in events.iter().enumerate() {
        match *e {
            Event::Admitted { req, at } => {
                let m = reqs[req].model;
                in_flight[m] += 1;
                // Invariant 3: in flight ≤ max parallel, always.
                prop_assert!(in_flight[m] <= configs[m].max_parallel_requests);
                admitted_at.insert(req, at);
                admitted_pos.insert(req, pos);
                resolved += 1;
            }
            Event::Ended { req, charge } => {
                in_flight[reqs[req].model] -= 1;
                ended.insert(req, (pos, charge));
            }
            Event::Refused { req } => {
                // Invariant 5: only requests that can never fit are refused.
                prop_assert!(reqs[req].estimate > configs[reqs[req].model].tpm);
                resolved += 1;
            }
            Event::Cancelled { req } => {
                prop_assert!(reqs[req].cancel_after_ms.is_some());
                resolved += 1;
            }
        }
    }
    // Nothing hangs: every request was admitted, refused or cancelled.
    prop_assert_eq!(resolved, reqs.len());
    for (m, cfg) in configs.iter().enumerate() {
        let mine: Vec<(usize, Instant)> = admitted_at
            .iter()
            .filter(|(r, _)| reqs[**r].model == m)
            .map(|(r, t)| (*r, *t))
            .collect();
        for &(req, t) in &mine {
            let in_window =
                |&&(_, u): &&(usize, Instant)| u <= t && t.as_nanos() - u.as_nanos() < WINDOW;
            // Invariant 1: ≤ rpm admissions in every window ending at an admission.
            let count = mine.iter().filter(in_window).count() as u64;
            prop_assert!(count <= cfg.rpm as u64, "rpm: {count} > {} at {t:?}", cfg.rpm);
            // Invariant 2: the estimate plus what is charged in the window ≤ tpm, where an
            // earlier request is charged its settled amount if it had settled before this
            // admission (earlier in the log).
            let charged: u64 = mine
                .iter()
                .filter(in_window)
                .filter(|(r, _)| *r != req)
                .map(|(r, _)| match ended.get(r) {
                    Some(&(pos, charge)) if pos < admitted_pos[&req] => charge,
                    _ => reqs[*r].estimate,
                })
                .sum();
            prop_assert!(
                charged + reqs[req].estimate <= cfg.tpm,
                "tpm: {charged} + {} > {} at {t:?}",
                reqs[req].estimate,
                cfg.tpm
            );
        }
        // Invariant 6: FIFO: admission order follows arrival order (arrivals are distinct).
        let mut by_time = mine.clone();
        by_time.sort_by_key(|&(r, t)| (t, r));
        let order: Vec<usize> = by_time.iter().map(|&(r, _)| r).collect();
        let mut sorted = order.clone();
        sorted.sort();
        prop_assert_eq!(order, sorted, "model {} admitted out of arrival order", m);
    }
    // Invariant 4: nothing leaks.
    for (name, s) in limiter.stats() {
        prop_assert_eq!(s.active.used, 0, "{} still has active slots", name);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Shrunk failures are kept next to this file and replayed first.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold_for_random_workloads(
        configs in proptest::collection::vec(config(), 1..4),
        seed_reqs in proptest::collection::vec(request(3, 2_000), 1..40),
    ) {
        let reqs: Vec<Request> = seed_reqs
            .into_iter()
            .map(|mut r| { r.model %= configs.len(); r })
            .collect();
        check(&configs, &reqs)?;
    }
}
