//! One model's live state in the limiter: its parallel-slot semaphore, its FIFO admission
//! gate, the refund wake-up, and its books — the rate limits' counters (a [`RateState`], kept
//! in memory as a [`MemoryStore`] keeps it) and the pause, under one lock.
//!
//! [`RateState`]: super::RateState
//! [`MemoryStore`]: super::MemoryStore
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
//!
//! Beside them: the model's config behind a lock of its own, so it can be replaced at run time
//! (hot reconfiguration keeps the counters, the queue and the slots in use; slots that a
//! shrink could not take because they were in use are owed, and taken out of service as
//! their permits end), and its pause (`pause.rs`: the cooldown after a 429, an exhausted
//! quota), checked under the same lock as every admission. Anything that may let the gate
//! holder in sooner than it computed — a refund, a reconfiguration, a resume, a raised
//! learned limit — bumps the epoch.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::{Poll, Waker};
use core::time::Duration;

use super::config::RateLimitConfig;
use super::estimate::Estimate;
use super::feedback::{Drained, Learned, Reported};
use super::limit::{Counts, Limit, LimitKind};
use super::pause::{Cooldown, Pause, Paused};
use super::rule::{Charge, RateState, never_fits};
use super::stats::{LimitUsage, ModelStats, Usage};
use crate::semaphore::OwnedSemaphorePermit;
use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::{Error, Instant, Semaphore};

/// Bit 0 of `ModelState::refunds`: the gate holder is registering to sleep on the epoch.
const WAITING: usize = 1;

pub(crate) struct ModelState {
    /// The model's name (a shared quota's: its first model's): `tracing` and metrics.
    pub(crate) name: Arc<str>,
    /// Configured in the limiter's constructor or later (`false`: created under the default
    /// config).
    configured: AtomicUsize,
    /// In-flight requests. A slot is held from before rate admission until the permit ends;
    /// the permit owns it (hence the `Arc`), so releasing it is just dropping it.
    pub(crate) slots: Arc<Semaphore>,
    /// Slots to take out of service as they come back: what a shrinking reconfiguration could
    /// not take at once because they were in use.
    slot_debt: AtomicUsize,
    /// One holder at a time waits for rate-limit room; everyone else queues here in arrival
    /// order. This is what makes admission FIFO and keeps later small requests from
    /// starving an earlier large one.
    pub(crate) gate: Semaphore,
    /// The config and the list of limits it makes, with what feedback learned. Lock order:
    /// `conf`, then `books`.
    conf: Mutex<Conf>,
    /// The counters and the pause, under one lock: every admission checks the pause and asks
    /// the rule in one step (`pause.rs` says why that ordering makes cooldowns exact).
    books: Mutex<Books>,
    /// The largest total and input an estimate may have at the maxima in force (see
    /// `rule::caps`), kept beside the books so that an estimate that can never fit fails
    /// before queueing without taking a lock. Written under `conf` and `books`.
    cap_total: AtomicU64,
    cap_input: AtomicU64,
    /// 1 while the quota may be exhausted (written under `books`): only then does the check
    /// before queueing take the lock to look.
    exhausted_hint: AtomicUsize,
    /// The refund epoch (bumped by 2 after a settle gives tokens back) and, in bit 0,
    /// whether the gate holder is registering to sleep on it.
    refunds: AtomicUsize,
    gate_holder: Mutex<Option<Waker>>,
}

struct Books {
    state: RateState,
    pause: Pause,
}

struct Conf {
    config: RateLimitConfig,
    /// Every rate limit, in the store's order: `rpm`, `tpm`, then the config's `limits`.
    limits: Vec<Limit>,
    /// Per limit, the maximum learned from feedback, when one is in force.
    learned: Vec<Option<u64>>,
}

/// Why [`ModelState::try_admit_at`] refused a request that may fit later.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused {
    /// The earliest instant every limit would admit it, if nothing else changes.
    pub(crate) ready_at: Instant,
    /// The refund epoch read before the check: pass it to [`ModelState::refunded_since`].
    pub(crate) refunds: usize,
}

/// What stops an admission.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Blocked {
    /// No room now (rate limits or a cooldown): wait.
    Wait(Refused),
    /// It can never be admitted as things are (too large, quota exhausted): fail.
    Fail(Error),
}

/// A parallel slot, given back when the permit ends — or taken out of service if a
/// reconfiguration shrank the model's slots below what was in use.
pub(crate) struct Slot {
    state: Arc<ModelState>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let debt = &self.state.slot_debt;
        let mut owed = debt.load(Ordering::SeqCst);
        while owed > 0 {
            match debt.compare_exchange(owed, owed - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    if let Some(permit) = self.permit.take() {
                        permit.forget();
                    }
                    return;
                }
                Err(now) => owed = now,
            }
        }
    }
}

impl ModelState {
    /// `config` must already be validated.
    pub(crate) fn new(name: Arc<str>, config: RateLimitConfig) -> Self {
        let limits = config.rate_limits();
        let state = RateState::new(&limits);
        let caps = state.caps();
        Self {
            name,
            configured: AtomicUsize::new(1),
            slots: Arc::new(Semaphore::new(config.max_parallel_requests as usize)),
            slot_debt: AtomicUsize::new(0),
            gate: Semaphore::new(1),
            books: Mutex::new(Books { state, pause: Pause::default() }),
            cap_total: AtomicU64::new(caps.0),
            cap_input: AtomicU64::new(caps.1),
            exhausted_hint: AtomicUsize::new(0),
            conf: Mutex::new(Conf { learned: vec![None; limits.len()], limits, config }),
            refunds: AtomicUsize::new(0),
            gate_holder: Mutex::new(None),
        }
    }

    pub(crate) fn configured(&self) -> bool {
        self.configured.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn set_configured(&self, configured: bool) {
        self.configured.store(usize::from(configured), Ordering::Relaxed);
    }

    pub(crate) fn config(&self) -> RateLimitConfig {
        self.conf.with(|c| c.config.clone())
    }

    /// Whether slots are owed: a shrink found fewer free than it took away.
    pub(crate) fn owes_slots(&self) -> bool {
        self.slot_debt.load(Ordering::SeqCst) > 0
    }

    /// Takes a parallel slot's permit into a [`Slot`] of this model.
    pub(crate) fn slot(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        Slot { state: self.clone(), permit: Some(permit) }
    }

    /// Fails at once what waiting cannot help: an estimate some token limit can never hold
    /// (invariant 5, at the maxima in force), or a quota the provider said is exhausted.
    pub(crate) fn check_at(&self, estimate: Estimate, now: Instant) -> Result<(), Error> {
        let caps = (self.cap_total.load(Ordering::SeqCst), self.cap_input.load(Ordering::SeqCst));
        if let Some((requested, capacity)) = never_fits(caps, estimate) {
            return Err(Error::InsufficientCapacity { requested, capacity });
        }
        if self.exhausted_hint.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        match self.books.with(|b| self.check_pause(b, now)) {
            Some(Paused::Exhausted(reset_at)) => Err(Error::QuotaExhausted { reset_at }),
            _ => Ok(()),
        }
    }

    /// The pause at `now`, clearing the exhausted hint once the exhaustion has ended.
    fn check_pause(&self, books: &mut Books, now: Instant) -> Option<Paused> {
        let was_exhausted = books.pause.has_exhaustion();
        let paused = books.pause.check(now);
        // Only when an exhaustion just ended: the common admission touches no atomic here.
        if was_exhausted && !books.pause.has_exhaustion() {
            self.exhausted_hint.store(0, Ordering::SeqCst);
        }
        paused
    }

    /// Publishes the caps of the maxima in force (under `conf`, after the books changed).
    fn publish_caps(&self, caps: (u64, u64)) {
        self.cap_total.store(caps.0, Ordering::SeqCst);
        self.cap_input.store(caps.1, Ordering::SeqCst);
    }

    /// Admits one request of `estimate` at `now` if nothing pauses the model and every limit
    /// has room (charging all of them), or says what stops it: a wait (until when, and which
    /// refund epoch preceded the check) or a failure.
    pub(crate) fn try_admit_at(&self, estimate: Estimate, now: Instant) -> Result<Charge, Blocked> {
        // Before the check: a refund the check misses bumps the epoch after this read.
        let refunds = self.refunds.load(Ordering::SeqCst) >> 1;
        #[cfg(feature = "tracing")]
        let mut rule_wait: Option<usize> = None;
        let decided = self.books.with(|books| {
            // One step: too large at the maxima in force (a reconfiguration or a learned limit
            // may have shrunk them), or paused, or the rule's decision.
            if let Some((requested, capacity)) = never_fits(books.state.caps(), estimate) {
                return Err(Blocked::Fail(Error::InsufficientCapacity { requested, capacity }));
            }
            match self.check_pause(books, now) {
                Some(Paused::Exhausted(reset_at)) => {
                    return Err(Blocked::Fail(Error::QuotaExhausted { reset_at }));
                }
                Some(Paused::Until(until)) => {
                    return Err(Blocked::Wait(Refused { ready_at: until, refunds }));
                }
                None => {}
            }
            match books.state.admit_io_at(estimate, now) {
                Ok(charge) => {
                    books.pause.admitted(charge.at);
                    Ok(charge)
                }
                Err(wait) => {
                    #[cfg(feature = "tracing")]
                    {
                        rule_wait = Some(wait.limit);
                    }
                    Err(Blocked::Wait(Refused { ready_at: wait.ready_at, refunds }))
                }
            }
        });
        // The limit's name is in the config, whose lock comes before the books' (as in
        // `learn`, `drain_at`, `reconfigure_at`): read only once the books are let go.
        #[cfg(feature = "tracing")]
        if let (Some(limit), Err(Blocked::Wait(r))) = (rule_wait, &decided) {
            self.conf.with(|c| {
                tracing::debug!(
                    target: "tollgate",
                    model = &*self.name,
                    limit = &*c.limits[limit].name,
                    wait_ms = (r.ready_at - now).as_millis() as u64,
                    estimated_tokens = estimate.total(),
                    "request waits for rate-limit room"
                );
            });
        }
        #[cfg(feature = "tracing")]
        match &decided {
            Ok(_) => {
                tracing::debug!(target: "tollgate", model = &*self.name, estimated_tokens = estimate.total(), "request admitted")
            }
            Err(Blocked::Wait(r)) if self.cooldown_until(now).is_some() => tracing::debug!(
                target: "tollgate",
                model = &*self.name,
                limit = "cooldown",
                wait_ms = (r.ready_at - now).as_millis() as u64,
                estimated_tokens = estimate.total(),
                "request waits for rate-limit room"
            ),
            Err(_) => {}
        }
        decided
    }

    /// The earliest instant the request would be admitted, if nothing else changes: every
    /// limit has room and no cooldown holds (`now` if now, `Instant::MAX` if never).
    pub(crate) fn earliest_admission_at(&self, estimate: Estimate, now: Instant) -> Instant {
        self.books.with(|b| {
            let room = b.state.earliest_io_at(estimate, now).map_or(now, |w| w.ready_at);
            room.max(b.pause.cooldown_until(now).unwrap_or(now))
        })
    }

    #[cfg(feature = "tracing")]
    fn cooldown_until(&self, now: Instant) -> Option<Instant> {
        self.books.with(|b| b.pause.cooldown_until(now))
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
    pub(crate) fn settle_at(&self, charge: Charge, actual: Estimate, now: Instant) {
        self.books.with(|b| b.state.settle_io_at(charge, actual, now));
        if actual.total() < charge.tokens || actual.input < charge.input {
            self.wake_holder();
        }
    }

    /// Bumps the refund epoch and wakes the gate holder if it sleeps on it: after anything
    /// that may let it in sooner than it computed (a refund, a reconfiguration, a resume).
    fn wake_holder(&self) {
        if self.refunds.fetch_add(2, Ordering::SeqCst) & WAITING != 0 {
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

    /// Hot reconfiguration: `config` (validated) replaces the model's, keeping its counters
    /// (`RateState::reconfigured_at`), its queue and its slots in use. Fewer slots than are
    /// in use: the excess is taken out of service as permits end, so no new admission until
    /// usage fits. The gate holder re-checks at once. Learned limits are forgotten.
    pub(crate) fn reconfigure_at(&self, config: RateLimitConfig, now: Instant) {
        self.conf.with(|c| {
            let limits = config.rate_limits();
            let caps = self.books.with(|b| {
                b.state = b.state.reconfigured_at(&c.limits, &limits, now);
                b.state.caps()
            });
            self.publish_caps(caps);
            let old = c.config.max_parallel_requests as usize;
            let new = config.max_parallel_requests as usize;
            if new > old {
                let mut grow = new - old;
                // Slots still owed from an earlier shrink are simply no longer owed.
                let mut owed = self.slot_debt.load(Ordering::SeqCst);
                loop {
                    let pay = owed.min(grow);
                    match self.slot_debt.compare_exchange(
                        owed,
                        owed - pay,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    ) {
                        Ok(_) => {
                            grow -= pay;
                            break;
                        }
                        Err(now) => owed = now,
                    }
                }
                self.slots.add_permits(grow);
            } else if new < old {
                let shrink = old - new;
                let taken = self.slots.forget_permits(shrink);
                self.slot_debt.fetch_add(shrink - taken, Ordering::SeqCst);
            }
            c.learned = vec![None; limits.len()];
            c.limits = limits;
            c.config = config;
        });
        self.wake_holder();
    }

    /// The indices of the limits feedback about `counts` over `window` applies to: those that
    /// count the same, and are windows of that length (`None`: of any length, buckets too).
    fn matching(c: &Conf, counts: Counts, window: Option<Duration>) -> Vec<usize> {
        (0..c.limits.len())
            .filter(|&i| {
                let l = &c.limits[i];
                l.counts == counts
                    && match (window, l.kind) {
                        (None, _) => true,
                        (Some(w), LimitKind::Window { window, .. }) => window == w,
                        (Some(_), LimitKind::Bucket { .. }) => false,
                    }
            })
            .collect()
    }

    /// Whether some limit matches `counts` and `window` (see [`matching`](Self::matching)).
    pub(crate) fn has_limit(&self, counts: Counts, window: Option<Duration>) -> bool {
        self.conf.with(|c| !Self::matching(c, counts, window).is_empty())
    }

    /// Sets the maximum of every limit matching `counts` and `window` to `max`, never above
    /// the configured one unless `may_raise` (invariant 11); returns what changed.
    pub(crate) fn learn(
        &self,
        counts: Counts,
        window: Option<Duration>,
        max: u64,
        may_raise: bool,
    ) -> Vec<Learned> {
        let mut changed = Vec::new();
        let mut raised = false;
        self.conf.with(|c| {
            for i in Self::matching(c, counts, window) {
                let configured = c.limits[i].max;
                let to = if may_raise { max } else { max.min(configured) }.max(1);
                let (from, caps) = self.books.with(|b| {
                    let from = b.state.max_of(i).unwrap_or(configured);
                    b.state.set_max(i, to);
                    (from, b.state.caps())
                });
                self.publish_caps(caps);
                c.learned[i] = (to != configured).then_some(to);
                if from != to {
                    raised |= to > from;
                    changed.push(Learned { limit: c.limits[i].name.clone(), from, to });
                }
            }
        });
        if raised {
            self.wake_holder();
        }
        changed
    }

    /// Drains every limit matching `counts` and `window` to what the provider `reported`
    /// (`RateState::drain_seen_at`); returns what each holds for other clients.
    pub(crate) fn drain_at(
        &self,
        counts: Counts,
        window: Option<Duration>,
        reported: Reported,
        now: Instant,
    ) -> Vec<Drained> {
        let Reported { remaining, tolerance, expires, seen } = reported;
        self.conf.with(|c| {
            Self::matching(c, counts, window)
                .into_iter()
                .filter_map(|i| {
                    let charged = self.books.with(|b| {
                        b.state.drain_seen_at(i, remaining, tolerance, expires, seen, now)
                    });
                    (charged > 0).then(|| Drained { limit: c.limits[i].name.clone(), charged })
                })
                .collect()
        })
    }

    /// Starts or extends the cooldown (see `pause.rs` for why it never covers an admission).
    pub(crate) fn cool_down(&self, retry_after: Duration, now: Instant) -> Cooldown {
        let cooldown = self.books.with(|b| b.pause.cool_down(retry_after, now));
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "tollgate",
            model = &*self.name,
            retry_after_ms = retry_after.as_millis() as u64,
            until_ms = (cooldown.until - now).as_millis() as u64,
            extended = cooldown.extended,
            "cooldown after a 429"
        );
        cooldown
    }

    /// Marks the quota exhausted until `reset_at` (unknown: until [`resume`](Self::resume));
    /// the gate holder fails at once.
    pub(crate) fn exhaust(&self, reset_at: Option<Instant>) {
        self.books.with(|b| {
            b.pause.exhaust(reset_at);
            self.exhausted_hint.store(1, Ordering::SeqCst);
        });
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "tollgate",
            model = &*self.name,
            reset_known = reset_at.is_some(),
            "quota exhausted: admissions fail until it resets"
        );
        self.wake_holder();
    }

    /// Ends any cooldown and exhaustion; the gate holder re-checks at once.
    pub(crate) fn resume(&self) {
        self.books.with(|b| {
            b.pause.resume();
            self.exhausted_hint.store(0, Ordering::SeqCst);
        });
        self.wake_holder();
    }

    pub(crate) fn stats_at(&self, now: Instant) -> ModelStats {
        let (limits, cap) = self.conf.with(|c| {
            let mut used = Vec::with_capacity(c.limits.len());
            let maxes: Vec<u64> = self.books.with(|b| {
                b.state.usage_at(now, &mut used);
                (0..c.limits.len()).map(|i| b.state.max_of(i).unwrap_or(0)).collect()
            });
            let limits: Vec<LimitUsage> = c
                .limits
                .iter()
                .zip(used.iter().zip(&maxes))
                .zip(&c.learned)
                .map(|((l, (&used, &max)), &learned)| LimitUsage {
                    name: l.name.clone(),
                    counts: l.counts,
                    usage: Usage { used, limit: max },
                    configured: l.max,
                    learned,
                })
                .collect();
            (limits, c.config.max_parallel_requests as u64)
        });
        let (cooldown_until, quota_exhausted) =
            self.books.with(|b| (b.pause.cooldown_until(now), b.pause.exhausted(now)));
        let in_use = self.slots.capacity().saturating_sub(self.slots.available_permits()) as u64;
        ModelStats {
            requests: limits[0].usage,
            tokens: limits[1].usage,
            active: Usage { used: in_use, limit: cap },
            limits,
            cooldown_until,
            quota_exhausted,
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
        let heap = state.conf.with(|c| {
            c.limits.capacity() * size_of::<Limit>()
                + c.config.limits.capacity() * size_of::<Limit>()
                + c.learned.capacity() * size_of::<Option<u64>>()
        }) + state.books.with(|b| b.state.heap_bytes());
        let per_model = inline + heap;
        assert!(per_model <= 2048, "{per_model} bytes per model ({inline} + {heap} on the heap)");
        extern crate std;
        std::eprintln!(
            "per-model state: {per_model} bytes ({inline} inline + {heap} heap) plus the name"
        );
        // Independent of the values: the largest limits cost the same.
        let big = RateLimitConfig { rpm: u32::MAX, tpm: u64::MAX, ..Default::default() };
        let big = ModelState::new("m".into(), big);
        let heap = |s: &ModelState| s.books.with(|b| b.state.heap_bytes());
        assert_eq!(heap(&big), heap(&state));
    }
}
