//! Replays the committed corpus (`fuzz/corpus/<target>/`) through the fuzz harnesses on stable
//! Rust, without libFuzzer: `cargo test --manifest-path fuzz/Cargo.toml`.
//!
//! `fuzz/regressions/<target>/` holds minimised inputs that once crashed the harness because
//! of a library bug; their tests keep the fixes in place.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| {
                p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs every file of `dir` through `run`, naming the file that fails.
fn replay(dir: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let files = inputs(&dir);
    let start = Instant::now();
    for path in &files {
        let data = fs::read(path).expect("read corpus file");
        if let Err(e) = panic::catch_unwind(|| run(&data)) {
            eprintln!("{} failed", path.display());
            panic::resume_unwind(e);
        }
    }
    eprintln!("{}: {} inputs in {:?}", dir.display(), files.len(), start.elapsed());
    files.len()
}

#[test]
fn corpus_bucket() {
    assert!(replay("corpus/bucket", tollgate_fuzz::run_bucket) > 0, "empty corpus");
}

#[test]
fn corpus_window() {
    assert!(replay("corpus/window", tollgate_fuzz::run_window) > 0, "empty corpus");
}

#[test]
fn corpus_model() {
    assert!(replay("corpus/model", tollgate_fuzz::run_model) > 0, "empty corpus");
}

#[test]
fn corpus_provider_values() {
    assert!(
        replay("corpus/provider_values", tollgate_fuzz::run_provider_values) > 0,
        "empty corpus"
    );
}

#[test]
fn corpus_provider_headers() {
    assert!(
        replay("corpus/provider_headers", tollgate_fuzz::run_provider_headers) > 0,
        "empty corpus"
    );
}

#[test]
fn corpus_provider_429() {
    assert!(replay("corpus/provider_429", tollgate_fuzz::run_provider_429) > 0, "empty corpus");
}

/// Garbage and edge inputs never crash a harness.
#[test]
fn trivial_inputs() {
    for data in [&[][..], &[0], &[0xff; 64], &[0x55; 1000]] {
        tollgate_fuzz::run_bucket(data);
        tollgate_fuzz::run_window(data);
        tollgate_fuzz::run_model(data);
        tollgate_fuzz::run_provider_values(data);
        tollgate_fuzz::run_provider_headers(data);
        tollgate_fuzz::run_provider_429(data);
    }
}

/// Every file of `fuzz/regressions/<target>/` through the harness.
fn regressions(dir: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions").join(dir);
    let files = inputs(&dir);
    assert!(!files.is_empty(), "no regression inputs in {}", dir.display());
    for path in &files {
        let data = fs::read(path).expect("read regression input");
        if let Err(e) = panic::catch_unwind(|| run(&data)) {
            eprintln!("{} failed", path.display());
            panic::resume_unwind(e);
        }
    }
}

/// Found by the `bucket` fuzzer, now fixed: at `now == Instant::MAX`,
/// `TokenBucket::reserve_at` granted a reservation ready at once although its tokens were not
/// available, because "ready only after the end of the clock" saturated to `Instant::MAX`,
/// which equals `now` there. Input: `regressions/bucket/reserve-at-instant-max-is-ready-at-once`
/// (44 985 per day, burst 2^61 − 1; try(burst) ok; try(burst) refused with ready_at = MAX;
/// clock to MAX; reserve(0.9 % of burst) → was ready now with 9.6·10^9 available).
#[test]
fn regression_bucket_reserve_at_instant_max() {
    regressions("bucket", tollgate_fuzz::run_bucket);
}

/// The same bug through the public API, small: the bucket is empty and no instant comes
/// after MAX, so the only right answer is a refusal.
#[test]
fn bucket_reserve_at_instant_max_is_refused() {
    use tollgate::{Error, Instant, Rate, TokenBucket};
    let b = TokenBucket::new(Rate::per_second(1), 1);
    b.try_acquire_at(1, Instant::MAX).unwrap();
    assert!(b.try_acquire_at(1, Instant::MAX).is_err());
    assert_eq!(
        b.reserve_at(1, Instant::MAX).unwrap_err(),
        Error::MaxWaitExceeded { ready_at: Instant::MAX }
    );
}

/// Found by the `model` fuzzer, now fixed: at `Instant::MAX` the model limiter admitted every
/// request regardless of RPM and TPM, for the same reason (`SlidingWindow::earliest_fit_at` says
/// "room only after the end of the clock" as `Instant::MAX`, which equals `now` there). Input:
/// `regressions/model/instant-max-admits-over-rpm` (model "" with rpm 1; acquire; clock
/// forward to Instant::MAX; acquire → was a second admission within 60 s, requests 2/1).
#[test]
fn regression_model_instant_max_over_admits() {
    regressions("model", tollgate_fuzz::run_model);
}

/// The same bug through the public API, small: the second request within the minute can
/// never be admitted (no time is left), so it is refused rather than admitted or left
/// spinning.
#[test]
fn model_at_instant_max_refuses_instead_of_over_admitting() {
    use std::sync::Arc;
    use tollgate::{Error, Instant, ManualClock, ModelRateLimiter, RateLimitConfig};
    let clock = Arc::new(ManualClock::starting_at(Instant::MAX));
    let cfg =
        RateLimitConfig { rpm: 1, tpm: 1_000, max_parallel_requests: 10, ..Default::default() };
    let limiter = ModelRateLimiter::with_timer([("m", cfg.clone())], cfg, clock).unwrap();
    drop(futures_executor::block_on(limiter.acquire("m", 1)).unwrap());
    let second = futures_executor::block_on(limiter.acquire("m", 1));
    assert_eq!(second.unwrap_err(), Error::MaxWaitExceeded { ready_at: Instant::MAX });
    assert_eq!(limiter.stats()["m"].requests.used, 1);
}
