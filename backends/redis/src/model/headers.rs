//! Header feedback in the shared state: what a provider's rate-limit headers say (its limit,
//! its remaining, its reset) applied to the model's Redis state in one call, so that every
//! process of the model sees a limit learned lower and the share the provider counts for
//! other clients on the key. The rule is the core's (`RateState::set_max`,
//! `RateState::drain_seen_at`, matched to limits as `ModelRateLimiter::observe` does);
//! `rule.lua` keeps it in one packed field of the state, read by the read every admission
//! makes anyway. Feedback only tightens (DESIGN.md invariant 11): a learned maximum is never
//! above the configured one unless the config's `feedback_may_raise` says so, and the config's
//! fingerprint stays the config's, so processes with the same config still match.
//!
//! What feedback holds lives as long as the model's state: a share held for others keeps the
//! state from expiring until it ends, but a learned maximum is forgotten when the state
//! expires after idling (or is lost), where the in-process limiter keeps it until
//! reconfigured; the provider's next headers teach it again.

use core::time::Duration;

use tollgate::model::{Counts, Drained, FeedbackReport, Learned, LimitKind};
use tollgate::provider::{HeaderReport, Quota};
use tollgate::{Clock, Instant};

use super::{LimiterInner, ModelEntry, ModelRateLimiter, micros};
use crate::encode::EXACT;
use crate::error::{Error, StoreError};
use crate::scripts::scripts;
use crate::store::{int, text};

/// One thing a header call applies to one limit (its index in the model's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// The limit's maximum becomes this one.
    Learn { limit: usize, to: u64 },
    /// The limit's room becomes at most `remaining` (it may be `tolerance` more), as the
    /// provider counted `age` before now, until `reset` after that.
    Drain { limit: usize, remaining: u64, tolerance: u64, age: Duration, reset: Duration },
}

/// The local counterpart of a provider's quota.
const fn counts_of(quota: Quota) -> Counts {
    match quota {
        Quota::Requests => Counts::Requests,
        Quota::Tokens => Counts::Tokens,
        Quota::InputTokens => Counts::InputTokens,
        Quota::OutputTokens => Counts::OutputTokens,
    }
}

/// What `report`, produced `age` before now, asks of `entry`'s limits, in the core's order
/// (per quota: learn every matching limit, then drain them), and the quotas no limit counts
/// over the same window (the core's `observe_at`: a quota of unknown window matches none).
fn items(entry: &ModelEntry, report: &HeaderReport, age: Duration) -> (Vec<Item>, Vec<Quota>) {
    let may_raise = entry.config.feedback_may_raise;
    let (mut items, mut unmatched) = (Vec::new(), Vec::new());
    // (Figures past exact integer arithmetic count as its largest.)
    let most = EXACT / 8;
    for o in &report.observed {
        let counts = counts_of(o.quota);
        let matching: Vec<usize> = match o.window {
            Some(w) => (0..entry.limits.len())
                .filter(|&i| {
                    let l = &entry.limits[i];
                    l.counts == counts
                        && matches!(l.kind, LimitKind::Window { window, .. } if window == w)
                })
                .collect(),
            None => Vec::new(),
        };
        let Some(window) = o.window.filter(|_| !matching.is_empty()) else {
            unmatched.push(o.quota);
            continue;
        };
        if let Some(max) = o.limit {
            for &limit in &matching {
                let configured = entry.limits[limit].max;
                let to = if may_raise { max } else { max.min(configured) }.clamp(1, most);
                items.push(Item::Learn { limit, to });
            }
        }
        if let Some(remaining) = o.remaining_at_least() {
            // The true figure is within the reported one ± its tolerance: at most twice the
            // tolerance above the least.
            let tolerance = o.remaining_tolerance.saturating_mul(2).min(most);
            let reset = o.reset_after.unwrap_or(window);
            for &limit in &matching {
                let remaining = remaining.min(most);
                items.push(Item::Drain { limit, remaining, tolerance, age, reset });
            }
        }
    }
    (items, unmatched)
}

impl LimiterInner {
    /// Applies `report`, produced at `seen` (an instant of this limiter's timer; a later one
    /// counts as now), to `entry` (see [`ModelRateLimiter::observe_at`]).
    pub(crate) async fn observe_entry(
        &self,
        entry: &ModelEntry,
        report: &HeaderReport,
        seen: Instant,
    ) -> Result<FeedbackReport, Error> {
        // (The round trip between this reading and the server's `TIME` makes `seen` a little
        // later than it was: own requests of that moment count as own, as the core's own
        // charges after `seen` in `seen`'s slot do.)
        let age = self.timer.now().saturating_duration_since(seen);
        self.headers(entry, report, age).await
    }

    /// Applies `report`, produced `age` before now, to `entry`'s shared state in one call
    /// (none when nothing matches), and says what changed.
    async fn headers(
        &self,
        entry: &ModelEntry,
        report: &HeaderReport,
        age: Duration,
    ) -> Result<FeedbackReport, Error> {
        let (items, unmatched) = items(entry, report, age);
        let mut out = FeedbackReport { unmatched, ..FeedbackReport::default() };
        if items.is_empty() {
            return Ok(out);
        }
        let most = EXACT / 8;
        let us = |d: Duration| micros(d).min(most);
        let mut args = entry.args([
            int(3u64),
            int(0u64),
            int(entry.config.max_parallel_requests),
            int(entry.lease_ttl_us),
            int(entry.state_ttl_ms),
            text(entry.publish),
            text(&entry.channel),
            text(""),
            int(items.len()),
        ]);
        for item in &items {
            let words = match *item {
                Item::Learn { limit, to } => [0, limit as u64, to, 0, 0, 0],
                Item::Drain { limit, remaining, tolerance, age, reset } => {
                    [1, limit as u64, remaining, tolerance, us(age), us(reset)]
                }
            };
            args.extend(words.iter().map(|&w| int(w)));
        }
        // Feedback goes whatever the breaker says (it only tightens).
        let r = self.store.inner.eval(&scripts().model_feedback, &entry.keys, &args, None).await?;
        if r.first() == Some(&-2) {
            return Err(Error::ConfigMismatch { key: entry.keys[0].clone() });
        }
        if r.len() != 6 + items.len() {
            return Err(StoreError::Protocol(format!("model_feedback (headers): {r:?}")).into());
        }
        for (item, &answer) in items.iter().zip(&r[6..]) {
            let answer = u64::try_from(answer).unwrap_or(0);
            match *item {
                Item::Learn { limit, to } if answer != to => out.learned.push(Learned {
                    limit: entry.limits[limit].name.clone(),
                    from: answer,
                    to,
                }),
                Item::Drain { limit, .. } if answer > 0 => out
                    .drained
                    .push(Drained { limit: entry.limits[limit].name.clone(), charged: answer }),
                _ => {}
            }
        }
        Ok(out)
    }
}

impl ModelRateLimiter {
    /// Applies a provider's rate-limit headers (from
    /// [`tollgate::provider::parse_headers`]) to `model`, for every process sharing it: per
    /// quota reported, every limit counting the same over the same window learns the
    /// provider's maximum (lower only, unless the config's `feedback_may_raise`) and is drained
    /// to the provider's remaining — the least it can be, given the provider's rounding —
    /// until the provider's reset: in a window, what the provider counts beyond the shared
    /// books is held as other clients' share (each report replaces the last); a bucket is
    /// charged the excess. The same rule as the in-process
    /// [`tollgate::ModelRateLimiter::observe`], on the shared state: one round trip (none
    /// when no quota matches a limit).
    ///
    /// Settle the request a response answers before observing its headers: the provider
    /// counts it at what it used, and what it counts beyond the books is taken for someone
    /// else's.
    ///
    /// ```no_run
    /// # async fn demo(limiter: tollgate_redis::ModelRateLimiter) -> Result<(), tollgate_redis::Error> {
    /// use tollgate::provider::{Provider, parse_headers};
    ///
    /// let permit = limiter.acquire("gpt-4o", 1_000).await?;
    /// // ... call the model; it used 1 000 tokens ...
    /// permit.settle(1_000).await?;
    /// let headers = [
    ///     ("x-ratelimit-limit-tokens", "30000"),
    ///     ("x-ratelimit-remaining-tokens", "20000"),
    ///     ("x-ratelimit-reset-tokens", "20s"),
    /// ];
    /// let report = limiter.observe("gpt-4o", &parse_headers(Provider::OpenAi, headers, None)).await?;
    /// // Every process of the model now admits against 30 000, with the others' share held.
    /// println!("{:?} {:?}", report.learned, report.drained);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `UnknownModel` on a strict limiter; [`Error::Store`] if Redis did not answer, under
    /// every [`Degraded`](crate::Degraded) policy (the others were not told); a protocol
    /// error for a reply of the wrong shape; [`Error::ConfigMismatch`].
    pub async fn observe(
        &self,
        model: &str,
        report: &HeaderReport,
    ) -> Result<FeedbackReport, Error> {
        let entry = self.inner.entry(model)?;
        self.inner.headers(&entry, report, Duration::ZERO).await
    }

    /// As [`observe`](Self::observe) for headers the provider produced at `seen`, an instant
    /// of [`timer`](Self::timer) no later than now (a later one counts as now): when the
    /// response was received, if its headers are read later (kept until a stream ends). The
    /// provider's figures are compared with what the shared books charged in the window
    /// ending at `seen` on the server's clock (now less the time since `seen`), so requests
    /// that left the window in between are not taken for someone else's, and the reset counts
    /// from `seen`. A report older than a window changes no window.
    ///
    /// ```no_run
    /// # async fn demo(limiter: tollgate_redis::ModelRateLimiter) -> Result<(), tollgate_redis::Error> {
    /// use tollgate::Clock;
    /// use tollgate::provider::{Provider, parse_headers};
    ///
    /// let received = limiter.timer().now();
    /// // ... the stream runs to its end ...
    /// let headers = [("x-ratelimit-limit-requests", "500"), ("x-ratelimit-remaining-requests", "420")];
    /// let report = parse_headers(Provider::OpenAi, headers, None);
    /// limiter.observe_at("gpt-4o", &report, received).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`observe`](Self::observe).
    pub async fn observe_at(
        &self,
        model: &str,
        report: &HeaderReport,
        seen: Instant,
    ) -> Result<FeedbackReport, Error> {
        let entry = self.inner.entry(model)?;
        self.inner.observe_entry(&entry, report, seen).await
    }
}
