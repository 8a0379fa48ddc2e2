//! The timing loop shared by the benches: one thread, or several contending for one limiter.

use core::time::Duration;
use std::sync::Barrier;
use std::time::Instant as StdInstant;

/// Runs `decide` `iters` times on each of `threads` threads at once (released together by a
/// barrier, so thread start-up is not timed) and returns the slowest thread's time: with one
/// thread, plain per-decision time; with more, time per decision while the others contend for
/// the same state.
pub fn timed<S: Sync>(
    state: &S,
    threads: usize,
    iters: u64,
    decide: impl Fn(&S) + Sync,
) -> Duration {
    if threads == 1 {
        let start = StdInstant::now();
        for _ in 0..iters {
            decide(state);
        }
        return start.elapsed();
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let start = StdInstant::now();
                    for _ in 0..iters {
                        decide(state);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).max().unwrap()
    })
}
