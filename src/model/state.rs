//! One model's live state in the limiter: its parallel-slot semaphore, its FIFO admission
//! gate, the refund wake-up, and its rate limits' counters in a [`MemoryStore`].
//!
//! The decisions (admit, when, settle, usage) are the store's, made by the admission rule over
//! plain data; this file keeps what waiting needs around them. A refund wakes the gate holder
//! through an epoch: the holder reads it *before* asking the store, and a settle bumps it
//! *after* the store has applied the refund, so a refund the check did not see always shows
//! as a changed epoch (issue 8's lost wake-up cannot come back).
//!
//! The epoch and a "holder is about to sleep" bit share one atomic word, so a settle takes
//! the waker's lock only when someone waits: the holder sets the bit (and reads the epoch) in
//! one read-modify-write under that lock, the settle bumps the epoch (and reads the bit) in
//! another. Two RMWs of one word are always ordered: either the settle sees the bit and takes
//! the waker (waiting for the lock until it is registered), or the holder sees the new epoch.
//! So the common settle, with nobody waiting, costs one lock (the store's).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use super::config::RateLimitConfig;
use super::limit::Limit;
use super::rule::{Charge, capacity};
use super::stats::{LimitUsage, ModelStats, Usage};
use super::store::{MemoryStore, StateStore};
use crate::sync::{AtomicUsize, Mutex, Ordering};
use crate::{Error, Instant, Semaphore};

/// Bit 0 of `ModelState::refunds`: the gate holder is registering to sleep on the epoch.
const WAITING: usize = 1;

pub(crate) struct ModelState {
    /// The model's name: the limiter's map key, `stats()` and `tracing` events.
    pub(crate) name: Arc<str>,
    pub(crate) config: RateLimitConfig,
    /// Configured in the limiter's constructor (`false`: created under the default config).
    pub(crate) configured: bool,
    /// In-flight requests. A slot is held from before rate admission until the permit ends;
    /// the permit owns it (hence the `Arc`), so releasing it is just dropping it.
    pub(crate) slots: Arc<Semaphore>,
    /// One holder at a time waits for rate-limit room; everyone else queues here in arrival
    /// order. This is what makes admission FIFO and keeps later small requests from
    /// starving an earlier large one.
    pub(crate) gate: Semaphore,
    /// Every rate limit, in the store's order: `rpm`, `tpm`, then the config's `limits`.
    limits: Vec<Limit>,
    /// The largest estimate every token limit can hold, and which limit bounds it.
    capacity: Option<(u64, usize)>,
    store: MemoryStore,
    /// The refund epoch (bumped by 2 after a settle gives tokens back) and, in bit 0,
    /// whether the gate holder is registering to sleep on it.
    refunds: AtomicUsize,
    gate_holder: Mutex<Option<Waker>>,
}

/// Why [`ModelState::try_admit`] refused a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused {
    /// The earliest instant every limit would admit it, if nothing else changes.
    pub(crate) ready_at: Instant,
    /// The refund epoch read before the check: pass it to [`ModelState::refunded_since`].
    pub(crate) refunds: usize,
}

impl ModelState {
    /// `config` must already be validated.
    pub(crate) fn new(name: Arc<str>, config: RateLimitConfig) -> Self {
        let limits = config.rate_limits();
        Self {
            name,
            configured: true,
            slots: Arc::new(Semaphore::new(config.max_parallel_requests as usize)),
            gate: Semaphore::new(1),
            capacity: capacity(&limits),
            store: MemoryStore::new(&limits),
            limits,
            config,
            refunds: AtomicUsize::new(0),
            gate_holder: Mutex::new(None),
        }
    }

    /// `InsufficientCapacity` if `estimated` could never fit some token limit: invariant 5,
    /// for every limit in the list.
    pub(crate) fn fits_at_all(&self, estimated: u64) -> Result<(), Error> {
        match self.capacity {
            Some((capacity, _)) if estimated > capacity => {
                Err(Error::InsufficientCapacity { requested: estimated, capacity })
            }
            _ => Ok(()),
        }
    }

    /// Admits one request of `estimated` tokens at `now` if every limit has room (charging
    /// all of them), or says when all would (`Instant::MAX`: never, within the clock's range)
    /// and which refund epoch preceded the check.
    pub(crate) fn try_admit_at(&self, estimated: u64, now: Instant) -> Result<Charge, Refused> {
        // Before the check: a refund the check misses bumps the epoch after this read.
        let refunds = self.refunds.load(Ordering::SeqCst) >> 1;
        match self.store.admit_at(estimated, now) {
            Ok(charge) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(target: "tollgate", model = &*self.name, estimated_tokens = estimated, "request admitted");
                Ok(charge)
            }
            Err(wait) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(
                    target: "tollgate",
                    model = &*self.name,
                    limit = &*self.limits[wait.limit].name,
                    wait_ms = (wait.ready_at - now).as_millis() as u64,
                    estimated_tokens = estimated,
                    "request waits for rate-limit room"
                );
                Err(Refused { ready_at: wait.ready_at, refunds })
            }
        }
    }

    /// The earliest instant every limit would admit the request, if nothing else changes
    /// (`now` if they would now, `Instant::MAX` if never).
    pub(crate) fn earliest_admission_at(&self, estimated: u64, now: Instant) -> Instant {
        self.store.earliest_at(estimated, now).map_or(now, |wait| wait.ready_at)
    }

    /// Moves an admitted request's charge from its estimate to `actual` in every token
    /// limit (the rule's settle: in the slot it was charged to while that slot is in the
    /// window; a late excess is charged now, a late refund refunds nothing), and wakes the
    /// gate holder if tokens came back.
    ///
    /// Like an in-window excess, a late excess is charged whether it fits or not: invariant 2
    /// bounds the charge *at admission* (estimate + charged ≤ tpm), which holds because every
    /// admission checks the sum of the counters, excess included; an excess can only push the
    /// window over `tpm` and so delay later admissions, never admit more. When every request
    /// settles at its estimate there is no excess, and no window ever holds more than `tpm`.
    pub(crate) fn settle_at(&self, charge: Charge, actual: u64, now: Instant) {
        self.store.settle_at(charge, actual, now);
        if actual < charge.tokens && self.refunds.fetch_add(2, Ordering::SeqCst) & WAITING != 0 {
            let wake = self.gate_holder.with(|holder| {
                self.refunds.fetch_and(!WAITING, Ordering::SeqCst);
                holder.take()
            });
            if let Some(waker) = wake {
                waker.wake();
            }
        }
    }

    /// Completes once a settle has given tokens back since the check that returned the
    /// epoch `seen` ([`try_admit_at`](Self::try_admit_at)). Setting the waiting bit reads the epoch
    /// in the same RMW, under the lock a settle that sees the bit takes to wake, so a refund is
    /// either seen here or wakes the registered waker (see the module docs).
    pub(crate) async fn refunded_since(&self, seen: usize) {
        poll_fn(|cx| {
            self.gate_holder.with(|holder| {
                if self.refunds.fetch_or(WAITING, Ordering::SeqCst) >> 1 != seen {
                    self.refunds.fetch_and(!WAITING, Ordering::SeqCst);
                    Poll::Ready(())
                } else {
                    *holder = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await
    }

    pub(crate) fn stats_at(&self, now: Instant) -> ModelStats {
        let mut used = Vec::with_capacity(self.limits.len());
        self.store.usage_at(now, &mut used);
        let limits: Vec<LimitUsage> = self
            .limits
            .iter()
            .zip(&used)
            .map(|(l, &used)| LimitUsage {
                name: l.name.clone(),
                counts: l.counts,
                usage: Usage { used, limit: l.max },
            })
            .collect();
        let cap = self.config.max_parallel_requests as u64;
        let free = self.slots.available_permits() as u64;
        ModelStats {
            requests: limits[0].usage,
            tokens: limits[1].usage,
            active: Usage { used: cap.saturating_sub(free), limit: cap },
            limits,
        }
    }
}

#[cfg(all(test, not(tollgate_loom)))]
mod tests {
    use super::*;
    use core::mem::size_of;

    /// The budget (ARCHITECTURE.md, "The model limiter"): a model's state costs at most 2 KiB,
    /// whatever its limits' values, heap included.
    #[test]
    fn a_model_costs_at_most_two_kib() {
        let state = ModelState::new("m".into(), RateLimitConfig::default());
        // The Arc'd state plus the map entry (shared-name key + Arc pointer); BTreeMap nodes
        // amortise to about one entry each.
        let inline = size_of::<ModelState>()
            + 2 * size_of::<usize>() // Arc counts
            + size_of::<Semaphore>() + 2 * size_of::<usize>() // slots' Arc
            + size_of::<Arc<str>>() // the map key (shares the state's name)
            + size_of::<Arc<ModelState>>();
        // On the heap: the list of limits (names are static), the config's extra limits, and
        // the store's counters.
        let heap = state.limits.capacity() * size_of::<Limit>()
            + state.config.limits.capacity() * size_of::<Limit>()
            + state.store.snapshot().heap_bytes();
        let per_model = inline + heap;
        assert!(per_model <= 2048, "{per_model} bytes per model ({inline} + {heap} on the heap)");
        extern crate std;
        std::eprintln!(
            "per-model state: {per_model} bytes ({inline} inline + {heap} heap) plus the name"
        );
        // Independent of the values: the largest limits cost the same.
        let big = RateLimitConfig { rpm: u32::MAX, tpm: u64::MAX, ..Default::default() };
        let big = ModelState::new("m".into(), big);
        assert_eq!(big.store.snapshot().heap_bytes(), state.store.snapshot().heap_bytes());
    }
}
