//! The blocking limiters wait without `StdTimer`'s helper thread: `RateLimiter` sleeps the
//! calling thread itself, and `ModelRateLimiter` drives its futures with `block_on`, whose
//! sleeps register with the driver. Its own test binary (a process of its own), so no other
//! test can have started the helper thread.

use core::time::Duration;

use tollgate_std::{ModelRateLimiter, Rate, RateLimitConfig, RateLimiter};

/// Names of this process's threads (Linux truncates them to 15 bytes).
fn thread_names() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

#[test]
fn blocking_waits_start_no_helper_thread() {
    if !std::path::Path::new("/proc/self/task").exists() {
        eprintln!("no /proc/self/task: nothing to check on this platform");
        return;
    }
    let limiter = RateLimiter::new(Rate::per_second(200), 1);
    for _ in 0..3 {
        limiter.acquire(); // waits 5 ms each after the first
    }
    limiter.acquire_n_within(1, Duration::from_secs(1)).unwrap();
    let cfg = RateLimitConfig {
        rpm: 1_000,
        tpm: 1_000_000,
        max_parallel_requests: 1,
        ..Default::default()
    };
    let models = ModelRateLimiter::new([("m", cfg.clone())], cfg).unwrap();
    let held = models.acquire("m", 1).unwrap();
    std::thread::scope(|s| {
        // Queued for the slot (a semaphore wait under `block_on`), and, being bounded, also
        // asleep on a `StdSleep` until its deadline: that sleep registers with `block_on`.
        let waiter = s.spawn(|| models.acquire_within("m", 1, Duration::from_secs(5)).map(drop));
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        waiter.join().unwrap().unwrap();
    });
    let names = thread_names();
    assert!(!names.is_empty(), "could not list this process's threads");
    // The helper is `tollgate-std-timer`, shown as `tollgate-std-ti`.
    assert!(
        !names.iter().any(|n| n.starts_with("tollgate-std")),
        "helper thread started: {names:?}"
    );
}
