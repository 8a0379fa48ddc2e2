//! A token bucket on a manual clock: a burst at once, then the steady rate.
//!
//! Run with `cargo run --example bucket`. Nothing sleeps: whenever the bucket refuses, the
//! demo moves the clock straight to the instant the bucket named, so the printed timings are
//! exactly the bucket's schedule.

use core::time::Duration;

use tollgate::{Clock, Error, ManualClock, Rate, TokenBucket};

fn main() {
    // 2 requests a second, up to 5 at once.
    let bucket = TokenBucket::new(Rate::per_second(2), 5);
    let clock = ManualClock::new();

    println!("rate 2/s, burst 5; 10 requests arriving all at t = 0");
    for request in 1..=10 {
        let admitted_at = loop {
            match bucket.try_acquire_at(1, clock.now()) {
                Ok(()) => break clock.now(),
                Err(Error::RateLimited(refusal)) => {
                    let ready_at = refusal.ready_at();
                    println!(
                        "  request {request:>2}: refused at {:>6} ms, room at {} ms",
                        clock.now().as_millis(),
                        ready_at.as_millis()
                    );
                    clock.set(ready_at); // a real caller would sleep until `ready_at`
                }
                Err(e) => panic!("{e}"),
            }
        };
        println!("  request {request:>2}: admitted at {:>6} ms", admitted_at.as_millis());
    }

    // After a quiet spell the bucket is full again.
    clock.advance(Duration::from_secs(10));
    println!("after 10 s idle: {} tokens available", bucket.available_at(clock.now()));

    // Reservations commit now and say when to go: the way the async limiters wait once.
    println!("reserving 3 × 2 tokens at t = {} ms", clock.now().as_millis());
    for _ in 0..3 {
        let reservation = bucket.reserve_at(2, clock.now()).expect("2 <= burst");
        println!("  2 tokens: go at {:>6} ms", reservation.ready_at().as_millis());
    }

    // Asking for more than the burst fails at once instead of waiting forever.
    match bucket.try_acquire_at(6, clock.now()) {
        Err(e @ Error::InsufficientCapacity { .. }) => println!("6 tokens: {e}"),
        other => panic!("expected InsufficientCapacity, got {other:?}"),
    }
}
