//! Deterministic async test harness: a single-threaded executor over a `ManualClock` that
//! jumps to the next sleeper's deadline whenever every task is stuck, like tokio's paused
//! clock. No test sleeps for real.
#![allow(dead_code)] // each test binary uses a different part

use core::future::Future;
use std::sync::Arc;

use futures_executor::LocalPool;
use futures_util::task::LocalSpawnExt;
use tollgate::{Clock, Instant, ManualClock};

pub struct Sim {
    pub pool: LocalPool,
    pub clock: Arc<ManualClock>,
}

impl Sim {
    pub fn new() -> Self {
        Self { pool: LocalPool::new(), clock: Arc::new(ManualClock::new()) }
    }

    pub fn spawn(&self, fut: impl Future<Output = ()> + 'static) {
        self.pool.spawner().spawn_local(fut).expect("spawn");
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Runs tasks, advancing the clock to the next deadline whenever all are stuck, until
    /// nothing is left to run or sleep (tasks still waiting on something else stay pending).
    pub fn run(&mut self) {
        loop {
            self.pool.run_until_stalled();
            if !self.clock.advance_to_next_deadline() {
                break;
            }
        }
    }

    /// Like `run`, but stops advancing the clock past `until`.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            self.pool.run_until_stalled();
            match self.clock.next_deadline() {
                Some(d) if d <= until => {
                    self.clock.advance_to_next_deadline();
                }
                _ => break,
            }
        }
        if self.clock.now() < until {
            self.clock.set(until);
            self.pool.run_until_stalled();
        }
    }
}
