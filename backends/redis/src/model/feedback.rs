//! Provider feedback in the shared state: a cooldown or an exhausted quota that one process
//! learns (a 429) holds every process of the model, because it lives in the model's Redis
//! state (`model_feedback.lua` writes it; every admission script reads it in the read it
//! already makes). Feedback only tightens (DESIGN.md invariant 11): a cooldown's end and an
//! exhaustion's reset only move later, until [`resume`](ModelRateLimiter::resume).

use core::time::Duration;
use std::sync::Arc;

use tollgate::model::{Cooldown, FeedbackReport};
use tollgate::provider::Throttled;

use super::{LimiterInner, ModelEntry, ModelRateLimiter, micros};
use crate::error::{Error, StoreError};
use crate::scripts::scripts;
use crate::store::{int, text};

/// What a `model_feedback` call applies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Feedback {
    /// A cooldown of this length from now (extends only).
    CoolDown(Duration),
    /// The quota exhausted until this long from now (`None`: until resumed).
    Exhausted(Option<Duration>),
    /// The end of both.
    Resume,
}

/// The model's pause after a `model_feedback` call, as the server has it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applied {
    /// The server's instant of the call (µs).
    now: i64,
    /// The cooldown's end (0: none).
    pause_until: i64,
    /// The exhausted quota's reset (0: none, -1: until resumed).
    exhausted: i64,
    /// Whether this call moved the end of the pause later.
    extended: bool,
}

impl LimiterInner {
    /// Applies `feedback` to `entry`'s shared state in one call, releasing the admission
    /// `release` (if any) into it: its tokens given back, its request still counted, its slot
    /// freed (a waiter woken by it finds the pause).
    pub(crate) async fn feedback(
        &self,
        entry: &ModelEntry,
        feedback: Feedback,
        release: Option<&str>,
    ) -> Result<Applied, Error> {
        let us = |d: Duration| i64::try_from(micros(d)).unwrap_or(i64::MAX);
        // (Lengths past exact integer arithmetic count as its largest: still "very long".)
        let most = i64::try_from(crate::encode::EXACT / 4).unwrap_or(i64::MAX);
        let (op, amount) = match feedback {
            Feedback::CoolDown(d) => (0u64, us(d).min(most)),
            Feedback::Exhausted(Some(d)) => (1, us(d).min(most)),
            Feedback::Exhausted(None) => (1, -1),
            Feedback::Resume => (2, 0),
        };
        let args = entry.args([
            int(op),
            int(amount),
            int(entry.config.max_parallel_requests),
            int(entry.lease_ttl_us),
            int(entry.state_ttl_ms),
            text(entry.publish),
            text(&entry.channel),
            text(release.unwrap_or("")),
        ]);
        // Feedback goes whatever the breaker says (it only tightens, or a caller resumes).
        let r = self.store.inner.eval(&scripts().model_feedback, &entry.keys, &args, None).await?;
        if r.first() == Some(&-2) {
            return Err(Error::ConfigMismatch { key: entry.keys[0].clone() });
        }
        // (the last two: whether the admission to release was found, and held a lease)
        let &[now, pause_until, exhausted, extended, _, _] = r.as_slice() else {
            return Err(StoreError::Protocol(format!("model_feedback: {r:?}")).into());
        };
        Ok(Applied { now, pause_until, exhausted, extended: extended == 1 })
    }

    /// The cooldown in force after `a`, on this limiter's clock.
    pub(crate) fn cooldown(&self, a: &Applied) -> Cooldown {
        let from = self.ready_instant(a.now, a.now);
        let until = if a.pause_until > 0 { self.ready_instant(a.pause_until, a.now) } else { from };
        Cooldown { from, until, extended: a.extended }
    }

    /// The exhausted quota's reset in force after `a` (`None`: unknown), on this clock.
    fn reset(&self, a: &Applied) -> Option<tollgate::Instant> {
        self.reset_instant(a.exhausted, a.now)
    }

    /// Applies a classified 429 to `entry`, releasing `release` into it (see
    /// [`ModelRateLimiter::observe_429`]). "Never fits" changes nothing here (the caller
    /// releases a permit's slot itself).
    pub(crate) async fn throttled(
        &self,
        model: &str,
        entry: &ModelEntry,
        throttled: &Throttled,
        release: Option<&str>,
    ) -> Result<FeedbackReport, Error> {
        let mut report = FeedbackReport::default();
        match *throttled {
            Throttled::RetryLater { after } => {
                let after = after.unwrap_or(entry.config.default_cooldown);
                let a = self.feedback(entry, Feedback::CoolDown(after), release).await?;
                let cooldown = self.cooldown(&a);
                tracing::info!(target: "tollgate_redis", model, ?after, extended = cooldown.extended, "429: cooldown shared with every process of the model");
                report.cooldown = Some(cooldown);
            }
            Throttled::NeverFits { requested, limit } => {
                report.error = Some(tollgate::Error::InsufficientCapacity {
                    requested: requested.unwrap_or(u64::MAX),
                    capacity: limit.unwrap_or(0),
                });
            }
            Throttled::QuotaExhausted { reset_after } => {
                let a = self.feedback(entry, Feedback::Exhausted(reset_after), release).await?;
                let reset_at = self.reset(&a);
                tracing::warn!(target: "tollgate_redis", model, ?reset_after, "429: quota exhausted, for every process of the model");
                report.quota_exhausted = Some(reset_at);
                report.error = Some(tollgate::Error::QuotaExhausted { reset_at });
            }
        }
        Ok(report)
    }
}

impl ModelRateLimiter {
    fn feedback_entry(&self, model: &str) -> Result<Arc<ModelEntry>, Error> {
        self.inner.entry(model)
    }

    /// Starts (or extends) `model`'s cooldown for every process sharing it: nothing is
    /// admitted until `retry_after` from now (on the server's clock). Tries are refused with
    /// `RateLimited` whose `ready_at` is the cooldown's end; acquires wait, in their order,
    /// and go in when it ends. A cooldown only ever moves its end later: a shorter one inside
    /// it changes nothing (`extended: false`). One round trip.
    /// [`ModelPermit::rate_limited`](crate::ModelPermit::rate_limited) does this for the
    /// permit whose request got the 429, and releases its slot in the same call.
    ///
    /// ```no_run
    /// # async fn demo(limiter: tollgate_redis::ModelRateLimiter) -> Result<(), tollgate_redis::Error> {
    /// use core::time::Duration;
    ///
    /// // Another worker got a 429 "retry after 2 s": this one holds too.
    /// let cooldown = limiter.cool_down("gpt-4", Duration::from_secs(2)).await?;
    /// assert!(cooldown.until >= cooldown.from);
    /// assert!(limiter.try_acquire("gpt-4", 100).await.is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `UnknownModel` on a strict limiter; [`Error::Store`] if Redis did not answer (the
    /// [`Degraded`](crate::Degraded) policy is for admissions only: feedback that did not
    /// reach the shared state is an error, so the caller knows the others were not told);
    /// [`Error::ConfigMismatch`].
    pub async fn cool_down(&self, model: &str, retry_after: Duration) -> Result<Cooldown, Error> {
        let entry = self.feedback_entry(model)?;
        let a = self.inner.feedback(&entry, Feedback::CoolDown(retry_after), None).await?;
        Ok(self.inner.cooldown(&a))
    }

    /// Marks `model`'s quota exhausted for every process sharing it: every admission fails
    /// with [`tollgate::Error::QuotaExhausted`] until `reset_after` from now (`None`: until
    /// [`resume`](Self::resume)), waiters included (they are woken and fail). A reset only
    /// moves later; an unknown one stays until resumed. While exhausted until resumed, the
    /// model's state does not expire.
    ///
    /// ```no_run
    /// # async fn demo(limiter: tollgate_redis::ModelRateLimiter) -> Result<(), tollgate_redis::Error> {
    /// use core::time::Duration;
    ///
    /// limiter.quota_exhausted("gpt-4", Some(Duration::from_secs(3600))).await?;
    /// let err = limiter.acquire("gpt-4", 100).await.unwrap_err();
    /// assert!(matches!(err.limit(), Some(tollgate::Error::QuotaExhausted { reset_at: Some(_) })));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`cool_down`](Self::cool_down).
    pub async fn quota_exhausted(
        &self,
        model: &str,
        reset_after: Option<Duration>,
    ) -> Result<(), Error> {
        let entry = self.feedback_entry(model)?;
        self.inner.feedback(&entry, Feedback::Exhausted(reset_after), None).await?;
        Ok(())
    }

    /// Ends `model`'s cooldown and exhausted quota, if any, for every process: the queued
    /// waiters are admitted at once, oldest first, as far as the limits have room.
    ///
    /// ```no_run
    /// # async fn demo(limiter: tollgate_redis::ModelRateLimiter) -> Result<(), tollgate_redis::Error> {
    /// limiter.quota_exhausted("gpt-4", None).await?; // until resumed
    /// // ... the account was topped up:
    /// limiter.resume("gpt-4").await?;
    /// limiter.try_acquire("gpt-4", 100).await?.settle(80).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`cool_down`](Self::cool_down).
    pub async fn resume(&self, model: &str) -> Result<(), Error> {
        let entry = self.feedback_entry(model)?;
        self.inner.feedback(&entry, Feedback::Resume, None).await?;
        Ok(())
    }

    /// Applies a classified 429 (from
    /// [`tollgate::provider::classify_429`]) to `model`, for every process sharing it:
    /// "retry later" starts or extends the cooldown by the provider's delay (the config's
    /// `default_cooldown` when it gave none); "quota exhausted" makes every admission fail
    /// with [`tollgate::Error::QuotaExhausted`] until the reset; "never fits" changes nothing
    /// and reports [`tollgate::Error::InsufficientCapacity`] for the request (no round trip).
    /// The report's cooldown and reset are the ones in force (a longer one already there is
    /// kept). Prefer [`ModelPermit::throttled`](crate::ModelPermit::throttled) when the 429
    /// answered a permit's request: it also releases the slot into the cooldown.
    ///
    /// ```no_run
    /// # async fn demo(limiter: tollgate_redis::ModelRateLimiter) -> Result<(), tollgate_redis::Error> {
    /// use core::time::Duration;
    /// use tollgate::provider::Throttled;
    ///
    /// let after = Some(Duration::from_millis(634));
    /// let report = limiter.observe_429("gpt-4", &Throttled::RetryLater { after }).await?;
    /// assert!(report.cooldown.is_some() && report.error.is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`cool_down`](Self::cool_down).
    pub async fn observe_429(
        &self,
        model: &str,
        throttled: &Throttled,
    ) -> Result<FeedbackReport, Error> {
        let entry = self.feedback_entry(model)?;
        self.inner.throttled(model, &entry, throttled, None).await
    }
}
