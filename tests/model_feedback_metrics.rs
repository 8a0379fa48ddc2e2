//! The model limiter's metrics through the `metrics` facade (feature `metrics`): admissions,
//! the wait histogram, refusals by reason, 429s and cooldowns by class, each labelled by model.

use core::time::Duration;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use tollgate::provider::Throttled;
use tollgate::{Error, ManualClock, ModelRateLimiter, RateLimitConfig};

/// Sums of every counter and histogram by name and labels (`name{k=v,…}`).
#[derive(Default)]
struct Sums(Mutex<BTreeMap<String, f64>>);

struct Cell(Arc<Sums>, String);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        *self.0.0.lock().unwrap().entry(self.1.clone()).or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.0.0.lock().unwrap().insert(self.1.clone(), value as f64);
    }
}

impl HistogramFn for Cell {
    fn record(&self, value: f64) {
        *self.0.0.lock().unwrap().entry(format!("{} count", self.1)).or_default() += 1.0;
        *self.0.0.lock().unwrap().entry(format!("{} sum", self.1)).or_default() += value;
    }
}

struct Record(Arc<Sums>);

fn name(key: &Key) -> String {
    let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Record {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(self.0.clone(), name(key))))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Cell(self.0.clone(), name(key))))
    }
}

#[test]
fn admissions_waits_refusals_429s_and_cooldowns_are_counted_by_model_and_class() {
    let sums = Arc::new(Sums::default());
    let recorder = Record(sums.clone());
    metrics::with_local_recorder(&recorder, || {
        let config = RateLimitConfig { rpm: 2, tpm: 1_000, ..Default::default() };
        let l = ModelRateLimiter::<ManualClock>::new([("m", config.clone())], config).unwrap();
        l.try_acquire("m", 10).unwrap().settle(10);
        let waited = futures_executor::block_on(l.acquire("m", 10)).unwrap();
        let _ = waited.rate_limited(Duration::from_secs(1)); // a 429 on the permit
        assert!(matches!(l.try_acquire("m", 10), Err(Error::RateLimited(_))));
        assert!(l.try_acquire("m", 5_000).is_err()); // insufficient capacity
        let after = Some(Duration::from_secs(2));
        l.observe_429("m", &Throttled::RetryLater { after }).unwrap();
        l.observe_429("m", &Throttled::QuotaExhausted { reset_after: None }).unwrap();
        l.observe_429("m", &Throttled::NeverFits { requested: None, limit: None }).unwrap();
        assert!(l.try_acquire("m", 10).is_err()); // quota exhausted
    });
    let sums = sums.0.lock().unwrap();
    let get = |k: &str| sums.get(k).copied().unwrap_or(0.0);
    assert_eq!(get("tollgate_model_admissions_total{model=m}"), 2.0);
    // Every admission records its wait, a try its wait of zero.
    assert_eq!(get("tollgate_model_wait_seconds{model=m} count"), 2.0);
    let refusals =
        |reason: &str| get(&format!("tollgate_model_refusals_total{{model=m,reason={reason}}}"));
    assert_eq!(refusals("rate_limited"), 1.0);
    assert_eq!(refusals("insufficient_capacity"), 1.0);
    assert_eq!(refusals("quota_exhausted"), 1.0);
    let too_many = |class: &str| get(&format!("tollgate_model_429_total{{model=m,class={class}}}"));
    assert_eq!(too_many("retry_later"), 1.0);
    assert_eq!(too_many("quota_exhausted"), 1.0);
    assert_eq!(too_many("never_fits"), 1.0);
    let cooldowns =
        |class: &str| get(&format!("tollgate_model_cooldowns_total{{model=m,class={class}}}"));
    assert_eq!(cooldowns("retry_later"), 2.0); // the permit's 429 and observe_429's
    assert_eq!(cooldowns("quota_exhausted"), 1.0);
}
