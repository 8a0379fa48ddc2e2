//! One model's live state: its parallel-slot semaphore, its FIFO admission gate, and its RPM
//! and TPM windows. The accounting here is independent of where the state lives, so a shared
//! (e.g. Redis) backend can later implement the same admission rule.

use core::future::poll_fn;
use core::task::{Poll, Waker};
use core::time::Duration;

use super::config::RateLimitConfig;
use super::stats::{ModelStats, Usage};
use crate::sync::Mutex;
use crate::window::SlotId;
use crate::{Instant, Semaphore, SlidingWindow};

/// RPM and TPM are per minute.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Ring size of both windows: one-second slots over a minute (see `SlidingWindow` for why a
/// ring of N covers the window with N−1 slots).
pub(crate) const SLOTS: usize = 61;

pub(crate) struct ModelState {
    /// The model's name: the limiter's map key, `stats()` and `tracing` events.
    pub(crate) name: alloc::sync::Arc<str>,
    pub(crate) config: RateLimitConfig,
    /// Configured in the limiter's constructor (`false`: created under the default config).
    pub(crate) configured: bool,
    /// In-flight requests. A slot is held from before rate admission until the permit ends;
    /// the permit owns it (hence the `Arc`), so releasing it is just dropping it.
    pub(crate) slots: alloc::sync::Arc<Semaphore>,
    /// One holder at a time waits for RPM/TPM room; everyone else queues here in arrival
    /// order. This is what makes admission FIFO and keeps later small requests from
    /// starving an earlier large one.
    pub(crate) gate: Semaphore,
    windows: Mutex<Windows>,
}

/// Why [`ModelState::try_admit`] refused a request, read in one critical section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused {
    /// The earliest instant both windows would admit it, if nothing else changes.
    pub(crate) ready_at: Instant,
    /// The refund epoch at the check: pass it to [`ModelState::refunded_since`].
    pub(crate) refunds: u64,
}

struct Windows {
    requests: SlidingWindow<SLOTS>,
    tokens: SlidingWindow<SLOTS>,
    /// Bumped when a settle gives tokens back, so the gate holder can re-check early.
    refunds: u64,
    gate_holder: Option<Waker>,
}

impl ModelState {
    /// `config` must already be validated (non-zero everywhere).
    pub(crate) fn new(name: alloc::sync::Arc<str>, config: RateLimitConfig) -> Self {
        Self {
            name,
            config,
            configured: true,
            slots: alloc::sync::Arc::new(Semaphore::new(config.max_parallel_requests as usize)),
            gate: Semaphore::new(1),
            windows: Mutex::new(Windows {
                requests: SlidingWindow::new(WINDOW, config.rpm as u64),
                tokens: SlidingWindow::new(WINDOW, config.tpm),
                refunds: 0,
                gate_holder: None,
            }),
        }
    }

    /// Admits one request of `estimated` tokens at `now` if both windows have room (charging
    /// both), or says when both would (`Instant::MAX`: never, within the clock's range) and
    /// which refund epoch that answer saw.
    ///
    /// The epoch is read in the same critical section as the check: a settle that refunds
    /// tokens after this check bumps it, so [`refunded_since`](Self::refunded_since) with
    /// the returned epoch completes at once. Reading it under a separate lock lost exactly the
    /// refunds that landed in between (issue 8).
    pub(crate) fn try_admit(&self, estimated: u64, now: Instant) -> Result<SlotId, Refused> {
        self.windows.with(|w| {
            if !(w.requests.fits_at(1, now) && w.tokens.fits_at(estimated, now)) {
                let ready = Self::ready_at(w, estimated, now);
                #[cfg(feature = "tracing")]
                {
                    let by_requests = w.requests.earliest_fit(1, now).unwrap_or(Instant::MAX);
                    tracing::debug!(
                        target: "tollgate",
                        model = &*self.name,
                        limit = if by_requests >= ready { "rpm" } else { "tpm" },
                        wait_ms = (ready - now).as_millis() as u64,
                        estimated_tokens = estimated,
                        "request waits for rate-limit room"
                    );
                }
                return Err(Refused { ready_at: ready, refunds: w.refunds });
            }
            #[cfg(feature = "tracing")]
            tracing::debug!(target: "tollgate", model = &*self.name, estimated_tokens = estimated, "request admitted");
            // Both fit (checked above under the same lock), so neither add can fail.
            let _ = w.requests.add_at(1, now);
            Ok(w.tokens.add_at(estimated, now))
        })
    }

    /// The earliest instant both windows would admit the request, if nothing else changes
    /// (`now` if they would now, `Instant::MAX` if never).
    pub(crate) fn earliest_admission(&self, estimated: u64, now: Instant) -> Instant {
        self.windows.with(|w| {
            if w.requests.fits_at(1, now) && w.tokens.fits_at(estimated, now) {
                now
            } else {
                Self::ready_at(w, estimated, now)
            }
        })
    }

    /// For a request that does not fit now: when it will.
    fn ready_at(w: &mut Windows, estimated: u64, now: Instant) -> Instant {
        // Callers check `estimated <= tpm` first, and 1 <= rpm, so neither call can fail;
        // `Instant::MAX` keeps an impossible request waiting instead of admitting it.
        let by_requests = w.requests.earliest_fit(1, now).unwrap_or(Instant::MAX);
        let by_tokens = w.tokens.earliest_fit(estimated, now).unwrap_or(Instant::MAX);
        let ready = by_requests.max(by_tokens);
        // Not fitting now, yet "ready" now, happens only at the end of the clock, where the
        // windows say "room only after Instant::MAX": that is never, not now.
        if ready <= now { Instant::MAX } else { ready }
    }

    /// Moves an admitted request's charge from its estimate to `actual`, in the window slot
    /// where it was admitted while that slot is still in the window.
    ///
    /// Once the admission slot has left the window, a refund refunds nothing (the estimate
    /// no longer counts anyway), but an excess (`actual > estimated`) is charged at `now`, in
    /// the current slot: those tokens were used, and a long, under-estimated streaming call
    /// that settles late must still hold later requests back for a window (it was dropped,
    /// issue 8). Like an in-window excess this is charged whether it fits or not: invariant 2
    /// bounds the charge *at admission* (estimate + charged ≤ tpm), which holds because every
    /// admission checks the sum of the counters, excess included; an excess can only push the
    /// window over `tpm` and so delay later admissions, never admit more. When every request
    /// settles at its estimate there is no excess, and no window ever holds more than `tpm`.
    pub(crate) fn settle(&self, slot: SlotId, estimated: u64, actual: u64, now: Instant) {
        let wake = self.windows.with(|w| {
            if !w.tokens.adjust(slot, estimated, actual, now) && actual > estimated {
                let _ = w.tokens.add_at(actual - estimated, now);
            }
            if actual < estimated {
                w.refunds = w.refunds.wrapping_add(1);
                w.gate_holder.take()
            } else {
                None
            }
        });
        if let Some(waker) = wake {
            waker.wake();
        }
    }

    /// Completes once a settle has given tokens back since the check that returned the
    /// epoch `seen` ([`try_admit`](Self::try_admit)). The epoch test and the registration of
    /// the waker happen under one lock, and a refund bumps the epoch and takes the waker
    /// under that lock too, so a refund is either seen here or wakes the registered waker.
    pub(crate) async fn refunded_since(&self, seen: u64) {
        poll_fn(|cx| {
            self.windows.with(|w| {
                if w.refunds != seen {
                    Poll::Ready(())
                } else {
                    w.gate_holder = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await
    }

    pub(crate) fn stats(&self, now: Instant) -> ModelStats {
        let (requests, tokens) = self.windows.with(|w| {
            (
                Usage { used: w.requests.used_at(now), limit: self.config.rpm as u64 },
                Usage { used: w.tokens.used_at(now), limit: self.config.tpm },
            )
        });
        let cap = self.config.max_parallel_requests as u64;
        let free = self.slots.available_permits() as u64;
        ModelStats {
            requests,
            tokens,
            active: Usage { used: cap.saturating_sub(free), limit: cap },
        }
    }
}

#[cfg(all(test, not(tollgate_loom)))]
mod tests {
    use super::*;
    use alloc::sync::Arc;

    /// The budget (ARCHITECTURE.md, "The model limiter"): a model's state costs at most 2 KiB,
    /// whatever its limits.
    #[test]
    fn a_model_costs_at_most_two_kib() {
        // The Arc'd state plus the map entry (shared-name key + Arc pointer); BTreeMap nodes
        // amortise to about one entry each.
        let per_model = core::mem::size_of::<ModelState>()
            + 2 * core::mem::size_of::<usize>() // Arc counts
            + core::mem::size_of::<Semaphore>() + 2 * core::mem::size_of::<usize>() // slots' Arc
            + core::mem::size_of::<Arc<str>>() // the map key (shares the state's name)
            + core::mem::size_of::<Arc<ModelState>>();
        assert!(per_model <= 2048, "{per_model} bytes per model, plus the name");
        extern crate std;
        std::eprintln!("per-model state: {per_model} bytes plus the name");
    }
}
