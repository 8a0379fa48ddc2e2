//! What feedback from a provider changed in the limiter: the typed reports of the feedback
//! primitives ([`ModelRateLimiter::learn_limit`](crate::ModelRateLimiter::learn_limit),
//! [`drain`](crate::ModelRateLimiter::drain), the cooldown) and of the glue that reads a
//! provider's headers and 429s into them.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::time::Duration;

use super::limit::Counts;
use super::pause::Cooldown;
use super::state::ModelState;
use crate::provider::{HeaderReport, Quota, Throttled};
use crate::{Error, Instant};

/// A limit whose maximum feedback changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The limit's name.
    pub limit: Cow<'static, str>,
    /// The maximum before.
    pub from: u64,
    /// The maximum now.
    pub to: u64,
}

/// A limit that feedback drained to the provider's remaining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// The limit's name.
    pub limit: Cow<'static, str>,
    /// What was charged so that the local room is no more than the provider's.
    pub charged: u64,
}

/// What one piece of provider feedback changed in a model's limits
/// ([`ModelRateLimiter::observe`](crate::ModelRateLimiter::observe),
/// [`observe_429`](crate::ModelRateLimiter::observe_429),
/// [`ModelPermitOf::throttled`](crate::model::ModelPermitOf::throttled)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeedbackReport {
    /// Limits whose maximum moved to the provider's (lower only, unless the config opts in).
    pub learned: Vec<Learned>,
    /// Limits charged so that the local room is no more than the provider's remaining.
    pub drained: Vec<Drained>,
    /// Quotas the provider reported that no local limit counts over the same window: nothing
    /// was applied for them (add a matching [`Limit`](crate::model::Limit) to use them).
    pub unmatched: Vec<Quota>,
    /// The cooldown in force after a "retry later" 429.
    pub cooldown: Option<Cooldown>,
    /// `Some` when a 429 said the quota is exhausted: its reset on the limiter's clock, if
    /// known.
    pub quota_exhausted: Option<Option<Instant>>,
    /// What the request that got the 429 should fail with, when retrying cannot help:
    /// [`Error::InsufficientCapacity`] for a request larger than the provider's limit (the
    /// same error as an estimate above the local one), [`Error::QuotaExhausted`] for an
    /// exhausted quota. `None` for a "retry later" (acquire again: the cooldown holds the
    /// queue).
    pub error: Option<Error>,
}

/// The local counterpart of a provider's quota.
pub(crate) const fn counts_of(quota: Quota) -> Counts {
    match quota {
        Quota::Requests => Counts::Requests,
        Quota::Tokens => Counts::Tokens,
        Quota::InputTokens => Counts::InputTokens,
        Quota::OutputTokens => Counts::OutputTokens,
    }
}

/// Applies one response's rate-limit headers to `state`: per quota reported, a limit learns
/// the provider's maximum and is drained to the provider's remaining (the least it can be,
/// given its rounding) until the provider's reset (a whole window when no reset is given).
/// A quota whose window the provider does not say is matched against no limit: draining a
/// day's limit to a minute's remaining would be wrong, and so would the reverse.
pub(crate) fn observe_at(
    state: &ModelState,
    report: &HeaderReport,
    may_raise: bool,
    now: Instant,
) -> FeedbackReport {
    let mut out = FeedbackReport::default();
    for o in &report.observed {
        let counts = counts_of(o.quota);
        let Some(window) = o.window else {
            out.unmatched.push(o.quota);
            continue;
        };
        if !state.has_limit(counts, Some(window)) {
            out.unmatched.push(o.quota);
            continue;
        }
        if let Some(limit) = o.limit {
            out.learned.extend(state.learn(counts, Some(window), limit, may_raise));
        }
        if let Some(remaining) = o.remaining_at_least() {
            let expires = now.saturating_add(o.reset_after.unwrap_or(window));
            out.drained.extend(state.drain_at(counts, Some(window), remaining, expires, now));
        }
    }
    out
}

/// Applies a classified 429 to `state` (see [`FeedbackReport::error`] for what each class
/// makes of the request): a "retry later" starts or extends the cooldown by the provider's
/// delay (`fallback` when it gave none), an exhausted quota stops admissions until its reset.
pub(crate) fn throttled_at(
    state: &ModelState,
    throttled: &Throttled,
    fallback: Duration,
    now: Instant,
) -> FeedbackReport {
    let mut out = FeedbackReport::default();
    match *throttled {
        Throttled::RetryLater { after } => {
            super::metrics::too_many_requests(&state.name, "retry_later");
            super::metrics::cooldown(&state.name, "retry_later");
            out.cooldown = Some(state.cool_down(after.unwrap_or(fallback), now));
        }
        Throttled::NeverFits { requested, limit } => {
            super::metrics::too_many_requests(&state.name, "never_fits");
            out.error = Some(Error::InsufficientCapacity {
                requested: requested.unwrap_or(u64::MAX),
                capacity: limit.unwrap_or(0),
            });
        }
        Throttled::QuotaExhausted { reset_after } => {
            super::metrics::too_many_requests(&state.name, "quota_exhausted");
            super::metrics::cooldown(&state.name, "quota_exhausted");
            let reset_at = reset_after.map(|d| now.saturating_add(d));
            state.exhaust(reset_at);
            out.quota_exhausted = Some(reset_at);
            out.error = Some(Error::QuotaExhausted { reset_at });
        }
    }
    out
}
