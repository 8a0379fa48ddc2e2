//! Replays the committed corpus (`fuzz/corpus/<target>/`) through the fuzz harnesses on stable
//! Rust, without libFuzzer: `cargo test --manifest-path fuzz/Cargo.toml`.
//!
//! `fuzz/regressions/<target>/` holds minimised inputs that crashed the harness because of a
//! library bug not fixed yet; their tests are `#[ignore]`d until the fix lands (run them with
//! `--ignored`).

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
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
    eprintln!(
        "{}: {} inputs in {:?}",
        dir.display(),
        files.len(),
        start.elapsed()
    );
    files.len()
}

#[test]
fn corpus_bucket() {
    assert!(
        replay("corpus/bucket", tollgate_fuzz::run_bucket) > 0,
        "empty corpus"
    );
}

#[test]
fn corpus_window() {
    assert!(
        replay("corpus/window", tollgate_fuzz::run_window) > 0,
        "empty corpus"
    );
}

#[test]
fn corpus_model() {
    assert!(
        replay("corpus/model", tollgate_fuzz::run_model) > 0,
        "empty corpus"
    );
}

/// Garbage and edge inputs never crash a harness.
#[test]
fn trivial_inputs() {
    for data in [&[][..], &[0], &[0xff; 64], &[0x55; 1000]] {
        tollgate_fuzz::run_bucket(data);
        tollgate_fuzz::run_window(data);
        tollgate_fuzz::run_model(data);
    }
}

/// Every file of `fuzz/regressions/<target>/` through the strict harness.
fn regressions(dir: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(dir);
    let files = inputs(&dir);
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for path in &files {
        let data = fs::read(path).expect("read regression input");
        if let Err(e) = panic::catch_unwind(|| run(&data)) {
            eprintln!("{} failed", path.display());
            panic::resume_unwind(e);
        }
    }
}

/// BUG (found by the `bucket` fuzzer, not fixed yet): at `now == Instant::MAX`,
/// `TokenBucket::reserve_at` grants a reservation ready at once (`ready_at == now`) although
/// its tokens are not available (`try_acquire_at` refuses the same `n` at the same instant),
/// so more than `burst` tokens are admitted at `Instant::MAX`. Cause: `reserve_before` takes
/// `instant_of(..)`, which saturates at `Instant::MAX` for instants past the end of the clock,
/// then `.max(now)`: "only after the end of the clock" becomes "now". Input:
/// `regressions/bucket/reserve-at-instant-max-is-ready-at-once` (44 985 per day, burst
/// 2^61 − 1; try(burst) ok; try(burst) refused with ready_at = MAX; clock to MAX;
/// reserve(0.9 % of burst) → ready now with 9.6·10^9 available).
#[test]
#[ignore = "library bug: reserve at Instant::MAX is ready at once (see fuzz/README.md)"]
fn regression_bucket_reserve_at_instant_max() {
    regressions("bucket", tollgate_fuzz::run_bucket_strict);
}

/// The same bug through the public API, small.
#[test]
#[ignore = "library bug: reserve at Instant::MAX is ready at once (see fuzz/README.md)"]
fn bucket_reserve_at_instant_max_over_admits() {
    use tollgate::{Instant, Rate, TokenBucket};
    let b = TokenBucket::new(Rate::per_second(1), 1);
    b.try_acquire_at(1, Instant::MAX).unwrap();
    assert!(b.try_acquire_at(1, Instant::MAX).is_err());
    // The bucket is empty and no instant comes after MAX: the only right answer is a refusal.
    if let Ok(r) = b.reserve_at(1, Instant::MAX) {
        panic!("granted, ready at {:?}, with 0 available", r.ready_at());
    }
}

/// BUG (found by the `model` fuzzer, not fixed yet): at `Instant::MAX` the model limiter
/// admits every request regardless of RPM and TPM (bounded only by max_parallel_requests).
/// Cause: `ModelState::try_admit` admits when `ready_at(..) <= now`, and
/// `SlidingWindow::earliest_fit` saturates "only after the end of the clock" to
/// `Instant::MAX`, which equals `now` there. Input:
/// `regressions/model/instant-max-admits-over-rpm` (model "" with rpm 1; acquire; clock
/// forward to Instant::MAX; acquire → a second admission within 60 s, stats show
/// requests 2/1).
#[test]
#[ignore = "library bug: the model limiter admits everything at Instant::MAX (see fuzz/README.md)"]
fn regression_model_instant_max_over_admits() {
    regressions("model", tollgate_fuzz::run_model_strict);
}

/// The same bug through the public API, small.
#[test]
#[ignore = "library bug: the model limiter admits everything at Instant::MAX (see fuzz/README.md)"]
fn model_instant_max_over_admits() {
    use std::sync::Arc;
    use tollgate::{Instant, ManualClock, ModelRateLimiter, RateLimitConfig};
    let clock = Arc::new(ManualClock::starting_at(Instant::MAX));
    let cfg = RateLimitConfig {
        rpm: 1,
        tpm: 1_000,
        max_parallel_requests: 10,
    };
    let limiter = ModelRateLimiter::with_timer([("m", cfg)], cfg, clock).unwrap();
    let first = futures_executor::block_on(limiter.acquire("m", 1)).unwrap();
    drop(first);
    let second = limiter.acquire("m", 1);
    let mut second = std::pin::pin!(second);
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    // rpm = 1: the second request within the same minute must wait.
    assert!(
        second.as_mut().poll(&mut cx).is_pending(),
        "second request admitted at once"
    );
    assert_eq!(limiter.stats()["m"].requests.used, 1);
}
