//! State for the `rate_limiter` drop-in: the seed's token bucket and its per-model windows,
//! kept in the core's primitives so that every decision is the core's arithmetic.
//!
//! The seed's RPS limiter is GCRA in disguise: its `(allowance, last_check)` pair is one
//! theoretical arrival time, `TAT = last_check + (capacity - allowance) / rate`. The bucket
//! counts in `scale` units per request, so fractional capacities (`max(1, 2.5)`) and
//! allowances are exact binary fractions. The model windows are the core's conservative
//! sliding windows (61 one-second slots per minute), without the seed's 100-entry cap.

use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use tollgate::bucket::Reservation;
use tollgate::window::SlotId;
use tollgate::{Instant, Rate, SlidingWindow, TokenBucket};

use crate::clock::{instant_from_secs, secs_until};
use crate::errors::{invalid_config, map_error, poisoned};

/// The token clock may run at most this many units per second (well below the core's bound
/// of 8 per nanosecond).
const MAX_UNITS_PER_SEC: f64 = 4_294_967_296.0;

/// The seed's bucket, as mutable state around a core [`TokenBucket`].
struct BucketState {
    bucket: TokenBucket,
    /// The seed's `last_check`, exactly as the seed computes it (`now + wait`).
    last_check: f64,
    /// The same instant as the core saw it (the reservation's `ready_at`), so reading
    /// `allowance` there is exact.
    last_check_at: Instant,
}

/// The seed's token bucket (`allowance`, `last_check`, `bucket_capacity`) on the core's GCRA.
#[pyclass(frozen, module = "tollgate._tollgate")]
pub struct SeedBucket {
    state: Mutex<BucketState>,
    rate: Rate,
    /// Units per request.
    scale: u64,
    /// `capacity · scale`.
    burst: u64,
}

impl SeedBucket {
    fn allowance_of(&self, state: &BucketState) -> f64 {
        state.bucket.available_at(state.last_check_at) as f64 / self.scale as f64
    }

    /// A bucket whose TAT is `last_check + (capacity - allowance) / rate`.
    fn rebuild(&self, py: Python<'_>, last_check: f64, allowance: f64) -> PyResult<BucketState> {
        let bucket =
            TokenBucket::try_new(self.rate, self.burst).map_err(|e| invalid_config(py, e))?;
        let at = instant_from_secs(last_check);
        let capacity = self.burst as f64 / self.scale as f64;
        let missing = ((capacity - allowance.clamp(0.0, capacity)) * self.scale as f64).round();
        let missing = (missing as u64).min(self.burst);
        // A fresh bucket is full; reserving the missing units at `last_check` moves its TAT
        // exactly there.
        if missing > 0 {
            // The reservation is the state itself: nobody will give it back.
            let _held = bucket.reserve_at(missing, at).map_err(|e| map_error(py, e, at))?;
        }
        Ok(BucketState { bucket, last_check, last_check_at: at })
    }
}

#[pymethods]
impl SeedBucket {
    /// `numerator/denominator` requests per second (an exact fraction of the seed's float),
    /// capacity `max(1, rate)`, full as of `now`.
    #[new]
    fn new(py: Python<'_>, numerator: u64, denominator: u64, now: f64) -> PyResult<Self> {
        if numerator == 0 || denominator == 0 {
            return Err(crate::errors::bad_argument(
                "requests_per_second must be a positive number.",
            ));
        }
        let per_sec = numerator as f64 / denominator as f64;
        let mut bits = 20u32;
        while bits > 0 && per_sec * f64::from(1u32 << bits) > MAX_UNITS_PER_SEC {
            bits -= 1;
        }
        let scale = 1u64 << bits;
        let count = numerator
            .checked_mul(scale)
            .ok_or_else(|| crate::errors::bad_argument("requests_per_second is too large"))?;
        let rate = Rate::try_new(count, Duration::from_secs(denominator))
            .map_err(|e| invalid_config(py, e))?;
        let capacity = per_sec.max(1.0);
        let burst = ((capacity * scale as f64).round() as u64).max(scale);
        let bucket = TokenBucket::try_new(rate, burst).map_err(|e| invalid_config(py, e))?;
        let state = BucketState { bucket, last_check: now, last_check_at: instant_from_secs(now) };
        Ok(Self { state: Mutex::new(state), rate, scale, burst })
    }

    /// `max(1, rate)`.
    #[getter]
    fn capacity(&self) -> f64 {
        self.burst as f64 / self.scale as f64
    }

    /// Takes one request's tokens at `now` and returns `(wait, ticket)`: the caller may go
    /// after `wait` seconds. `last_check` becomes `now + wait`, as in the seed.
    fn reserve(&self, py: Python<'_>, now: f64) -> PyResult<(f64, SeedTicket)> {
        let at = instant_from_secs(now);
        let mut state = self.state.lock_py_attached(py).map_err(|_| poisoned())?;
        let reservation =
            state.bucket.reserve_at(self.scale, at).map_err(|e| map_error(py, e, at))?;
        let wait = secs_until(reservation.ready_at(), at);
        let before = (state.last_check, state.last_check_at);
        state.last_check = now + wait;
        state.last_check_at = reservation.ready_at().max(at);
        let ticket = SeedTicket {
            reservation: Mutex::new(Some(reservation)),
            before,
            after: state.last_check_at,
        };
        Ok((wait, ticket))
    }

    /// Gives a reservation back (a cancelled waiter). Exact when it is the newest, which the
    /// drop-in guarantees by letting only the head of its line reserve. Returns whether the
    /// tokens came back.
    fn cancel(&self, py: Python<'_>, ticket: &SeedTicket) -> PyResult<bool> {
        let Some(reservation) =
            ticket.reservation.lock_py_attached(py).map_err(|_| poisoned())?.take()
        else {
            return Ok(false);
        };
        let mut state = self.state.lock_py_attached(py).map_err(|_| poisoned())?;
        let returned = state.bucket.cancel(reservation);
        if returned && state.last_check_at == ticket.after {
            (state.last_check, state.last_check_at) = ticket.before;
        }
        Ok(returned)
    }

    /// The seed's `allowance`: tokens in the bucket as of `last_check`.
    #[getter]
    fn allowance(&self, py: Python<'_>) -> PyResult<f64> {
        let state = self.state.lock_py_attached(py).map_err(|_| poisoned())?;
        Ok(self.allowance_of(&state))
    }

    /// Sets `allowance`, keeping `last_check`.
    #[setter]
    fn set_allowance(&self, py: Python<'_>, allowance: f64) -> PyResult<()> {
        let mut state = self.state.lock_py_attached(py).map_err(|_| poisoned())?;
        *state = self.rebuild(py, state.last_check, allowance)?;
        Ok(())
    }

    /// The seed's `last_check`.
    #[getter]
    fn last_check(&self, py: Python<'_>) -> PyResult<f64> {
        Ok(self.state.lock_py_attached(py).map_err(|_| poisoned())?.last_check)
    }

    /// Sets `last_check`, keeping `allowance`.
    #[setter]
    fn set_last_check(&self, py: Python<'_>, last_check: f64) -> PyResult<()> {
        let mut state = self.state.lock_py_attached(py).map_err(|_| poisoned())?;
        let allowance = self.allowance_of(&state);
        *state = self.rebuild(py, last_check, allowance)?;
        Ok(())
    }
}

/// One reservation of a [`SeedBucket`], to give back if its waiter is cancelled.
#[pyclass(frozen, module = "tollgate._tollgate")]
pub struct SeedTicket {
    reservation: Mutex<Option<Reservation>>,
    /// `last_check` before the reservation, restored if it is given back.
    before: (f64, Instant),
    /// `last_check` the reservation set.
    after: Instant,
}

/// A window slot charged by a request's tokens, to settle later.
#[pyclass(frozen, module = "tollgate._tollgate")]
pub struct SeedSlot {
    slot: SlotId,
    estimated: u64,
}

/// Slots per minute: 61 one-second slots, so a wait exceeds 60 s by less than a second.
const SLOTS: usize = 61;
const MINUTE: Duration = Duration::from_secs(60);

struct Windows {
    requests: SlidingWindow<SLOTS>,
    tokens: SlidingWindow<SLOTS>,
    /// Entries recorded in the token window (the seed's `len(token_usage.queue)`).
    token_entries: SlidingWindow<SLOTS>,
}

/// One model's RPM and TPM windows for the drop-in's tracker.
#[pyclass(frozen, module = "tollgate._tollgate")]
pub struct SeedWindows {
    windows: Mutex<Windows>,
    rpm: u64,
    tpm: u64,
}

impl SeedWindows {
    fn fresh(&self, py: Python<'_>, limit: u64) -> PyResult<SlidingWindow<SLOTS>> {
        SlidingWindow::try_new(MINUTE, limit).map_err(|e| invalid_config(py, e))
    }

    /// Locks the windows, detached from the interpreter while it waits (see `lib.rs`).
    fn lock(&self, py: Python<'_>) -> PyResult<std::sync::MutexGuard<'_, Windows>> {
        self.windows.lock_py_attached(py).map_err(|_| poisoned())
    }
}

#[pymethods]
impl SeedWindows {
    /// Empty windows of `rpm` requests and `tpm` tokens per minute.
    #[new]
    fn new(py: Python<'_>, rpm: u64, tpm: u64) -> PyResult<Self> {
        let window =
            |limit| SlidingWindow::try_new(MINUTE, limit).map_err(|e| invalid_config(py, e));
        let windows = Windows {
            requests: window(rpm)?,
            tokens: window(tpm)?,
            token_entries: window(u64::MAX)?,
        };
        Ok(Self { windows: Mutex::new(windows), rpm, tpm })
    }

    /// Requests counted in the window ending at `now`.
    fn requests(&self, py: Python<'_>, now: f64) -> PyResult<u64> {
        Ok(self.lock(py)?.requests.used_at(instant_from_secs(now)))
    }

    /// Tokens counted in the window ending at `now`.
    fn tokens(&self, py: Python<'_>, now: f64) -> PyResult<u64> {
        Ok(self.lock(py)?.tokens.used_at(instant_from_secs(now)))
    }

    /// Token entries recorded in the window ending at `now`.
    fn token_entries(&self, py: Python<'_>, now: f64) -> PyResult<u64> {
        Ok(self.lock(py)?.token_entries.used_at(instant_from_secs(now)))
    }

    /// Counts one request at `now`, whether it fits or not.
    fn record_request(&self, py: Python<'_>, now: f64) -> PyResult<()> {
        self.lock(py)?.requests.add_at(1, instant_from_secs(now));
        Ok(())
    }

    /// Counts `n` tokens at `now`, whether they fit or not.
    fn record_tokens(&self, py: Python<'_>, n: u64, now: f64) -> PyResult<()> {
        let at = instant_from_secs(now);
        let mut w = self.lock(py)?;
        w.tokens.add_at(n, at);
        w.token_entries.add_at(1, at);
        Ok(())
    }

    /// Seconds from `now` until one more request fits (0 if it fits now).
    fn rpm_wait(&self, py: Python<'_>, now: f64) -> PyResult<f64> {
        let at = instant_from_secs(now);
        let fit =
            self.lock(py)?.requests.earliest_fit_at(1, at).map_err(|e| map_error(py, e, at))?;
        Ok(secs_until(fit, at))
    }

    /// Seconds from `now` until `estimated` more tokens fit (0 if they fit now). Raises
    /// `InsufficientCapacity` if they never can (`estimated > tpm`).
    fn tpm_wait(&self, py: Python<'_>, estimated: u64, now: f64) -> PyResult<f64> {
        let at = instant_from_secs(now);
        let fit = self
            .lock(py)?
            .tokens
            .earliest_fit_at(estimated, at)
            .map_err(|e| map_error(py, e, at))?;
        Ok(secs_until(fit, at))
    }

    /// Admits one request of `estimated` tokens at `now` if both windows have room, counting
    /// the request and reserving the tokens; returns `(0.0, slot)`. Otherwise counts nothing
    /// and returns `(wait, None)`, the seconds until both would fit.
    fn try_admit(
        &self,
        py: Python<'_>,
        estimated: u64,
        now: f64,
    ) -> PyResult<(f64, Option<SeedSlot>)> {
        let at = instant_from_secs(now);
        let mut w = self.lock(py)?;
        let tokens_fit =
            w.tokens.earliest_fit_at(estimated, at).map_err(|e| map_error(py, e, at))?;
        let request_fits = w.requests.earliest_fit_at(1, at).map_err(|e| map_error(py, e, at))?;
        let ready = tokens_fit.max(request_fits);
        if ready > at {
            return Ok((secs_until(ready, at), None));
        }
        w.requests.add_at(1, at);
        w.token_entries.add_at(1, at);
        let slot = w.tokens.add_at(estimated, at);
        Ok((0.0, Some(SeedSlot { slot, estimated })))
    }

    /// Settles an admitted request: its reserved estimate becomes `actual` (charged at `now`
    /// if its slot has left the window and `actual` exceeds the estimate).
    fn settle(&self, py: Python<'_>, slot: &SeedSlot, actual: u64, now: f64) -> PyResult<()> {
        let at = instant_from_secs(now);
        let mut w = self.lock(py)?;
        if !w.tokens.adjust_at(slot.slot, slot.estimated, actual, at) && actual > slot.estimated {
            w.tokens.add_at(actual - slot.estimated, at);
        }
        Ok(())
    }

    /// Forgets every request counted (the seed's `request_times.queue.clear()`).
    fn clear_requests(&self, py: Python<'_>) -> PyResult<()> {
        let fresh = self.fresh(py, self.rpm)?;
        self.lock(py)?.requests = fresh;
        Ok(())
    }

    /// Forgets every token counted (the seed's `token_usage.queue.clear()`).
    fn clear_tokens(&self, py: Python<'_>) -> PyResult<()> {
        let tokens = self.fresh(py, self.tpm)?;
        let entries = self.fresh(py, u64::MAX)?;
        let mut w = self.lock(py)?;
        w.tokens = tokens;
        w.token_entries = entries;
        Ok(())
    }
}
