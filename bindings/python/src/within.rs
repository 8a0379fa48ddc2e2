//! A bounded wait for an estimate with output tokens: the core's `acquire_with_owned`
//! (which waits as long as it takes) under a time budget, and a try as a budget of zero.
//!
//! Why here: the core has bounded and non-waiting acquires that return an owned permit only
//! for a plain token count (`acquire_within_owned`, `try_acquire_owned`), and an owned
//! `acquire_with_owned` without a bound. An estimate whose output is zero is exactly a plain
//! count and goes to those; one with output tokens comes here. The bound is read off what the
//! core's wait is pending on: its timer's deadline is when every rate limit has room (or a
//! cooldown ends), so a deadline past the budget fails at once with that instant, as the
//! core's own bound does; a wait for a slot or a turn fails when the budget runs out.
//! Failing drops the core's future, which gives back its queue place and slot.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use pyo3::prelude::*;
use tollgate::model::{Estimate, OwnedModelPermit};
use tollgate::{Clock, Error, Instant, Refusal};

use crate::clock::{self, PyTimer};

/// The core's unbounded owned wait for an estimate.
pub(crate) type WithWait =
    Pin<Box<dyn Future<Output = Result<OwnedModelPermit<PyTimer>, Error>> + Send>>;

/// `inner` bounded by `budget` from its first poll.
pub(crate) struct Within {
    inner: Option<WithWait>,
    budget: Duration,
    deadline: Option<Instant>,
}

impl Within {
    pub(crate) fn new(inner: WithWait, budget: Duration) -> Self {
        Self { inner: Some(inner), budget, deadline: None }
    }
}

impl Future for Within {
    type Output = Result<OwnedModelPermit<PyTimer>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let now = PyTimer.now();
        let budget = self.budget;
        let deadline = *self.deadline.get_or_insert_with(|| now.saturating_add(budget));
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(Error::MaxWaitExceeded { ready_at: deadline }));
        };
        // The inner wait's own deadline, apart from any the caller's poll collects.
        let outer = clock::take_deadline();
        let polled = inner.as_mut().poll(cx);
        let pending_until = clock::take_deadline();
        if let Some(at) = outer {
            clock::note_deadline(at);
        }
        if let Poll::Ready(result) = polled {
            self.inner = None;
            return Poll::Ready(result);
        }
        let ready_at = match pending_until {
            // Rate-limit room (or the cooldown's end) comes too late.
            Some(at) if at > deadline => Some(at),
            // Out of time while waiting for a slot, a turn, or room.
            _ if now >= deadline => Some(pending_until.unwrap_or(now).max(now)),
            _ => None,
        };
        if let Some(ready_at) = ready_at {
            self.inner = None; // gives back the queue place and the slot now
            return Poll::Ready(Err(Error::MaxWaitExceeded { ready_at }));
        }
        clock::note_deadline(pending_until.map_or(deadline, |at| at.min(deadline)));
        Poll::Pending
    }
}

/// The owned core wait for `estimate`, unbounded.
pub(crate) fn wait_with(
    limiter: std::sync::Arc<tollgate::ModelRateLimiter<PyTimer>>,
    model: &str,
    estimate: Estimate,
) -> WithWait {
    Box::pin(limiter.acquire_with_owned(model, estimate))
}

/// Admits `estimate` now or fails: one poll of a zero-budget wait, whose refusal is a
/// `RateLimited` with the instant the core's wait was pending until (now, when it waited for a
/// slot or its turn: a lower bound, as the core's own try reports).
pub(crate) fn try_now(py: Python<'_>, wait: WithWait) -> Result<OwnedModelPermit<PyTimer>, Error> {
    let _ = py; // polled with the GIL held, like every poll of a core wait
    let mut within = Box::pin(Within::new(wait, Duration::ZERO));
    clock::reset_deadline();
    let polled = within.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    clock::reset_deadline();
    match polled {
        Poll::Ready(Err(Error::MaxWaitExceeded { ready_at })) => {
            Err(Error::RateLimited(Refusal::at(ready_at)))
        }
        Poll::Ready(result) => result,
        // A zero budget never stays pending past its first poll.
        Poll::Pending => Err(Error::RateLimited(Refusal::at(clock::now(py)))),
    }
}
