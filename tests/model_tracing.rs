//! With the `tracing` feature, the model limiter says when a request waits (and for which
//! limit) and when it is admitted, like the Python seed's log lines.

mod support;

use std::sync::{Arc, Mutex};

use support::Sim;
use tollgate::{ModelRateLimiter, RateLimitConfig};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Collects every event as "message limit=..." text.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn core::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line(String::new());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The events of two requests of 10 tokens on model `m` under `config`, run to completion on
/// a simulated clock.
fn events_of_two_requests(config: RateLimitConfig) -> Vec<String> {
    let collect = Collect::default();
    tracing::subscriber::with_default(collect.clone(), || {
        let mut sim = Sim::new();
        let l = Arc::new(
            ModelRateLimiter::with_timer(
                [("m", config)],
                RateLimitConfig::default(),
                sim.clock.clone(),
            )
            .unwrap(),
        );
        for _ in 0..2 {
            let l = l.clone();
            sim.spawn(async move { l.acquire("m", 10).await.unwrap().settle(10) });
        }
        sim.run();
    });
    collect.0.lock().unwrap().clone()
}

#[test]
fn waits_and_admissions_are_traced() {
    let lines = events_of_two_requests(RateLimitConfig {
        rpm: 1,
        tpm: 1_000,
        max_parallel_requests: 1,
        ..Default::default()
    });
    assert!(lines.iter().filter(|l| l.starts_with("request admitted")).count() == 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("request waits for rate-limit room") && l.contains("limit=rpm")),
        "{lines:?}"
    );
}

/// A limit added through config is named in the "why it waits" event when it is the one that
/// binds (here, one request per hour on a model whose RPM allows ten).
#[test]
fn the_waiting_event_names_a_limit_added_through_config() {
    let lines = events_of_two_requests(RateLimitConfig {
        limits: vec![tollgate::model::Limit::requests(
            "rph",
            1,
            core::time::Duration::from_secs(3_600),
        )],
        ..Default::default()
    });
    let waits: Vec<_> =
        lines.iter().filter(|l| l.starts_with("request waits for rate-limit room")).collect();
    assert!(!waits.is_empty() && waits.iter().all(|l| l.contains("limit=rph")), "{lines:?}");
}

/// A 429's cooldown is traced, and a request waiting for it says it waits for the cooldown.
#[test]
fn a_cooldown_and_a_request_waiting_for_it_are_traced() {
    let collect = Collect::default();
    tracing::subscriber::with_default(collect.clone(), || {
        let mut sim = Sim::new();
        let config = RateLimitConfig::default();
        let l = Arc::new(
            ModelRateLimiter::with_timer([("m", config.clone())], config, sim.clock.clone())
                .unwrap(),
        );
        let _ = l.try_acquire("m", 10).unwrap().rate_limited(core::time::Duration::from_secs(2));
        let waiting = l.clone();
        sim.spawn(async move { waiting.acquire("m", 10).await.unwrap().settle(10) });
        sim.run();
    });
    let lines = collect.0.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.starts_with("cooldown after a 429")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("request waits for rate-limit room")
                && l.contains("limit=cooldown")),
        "{lines:?}"
    );
}
