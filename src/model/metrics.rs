//! The model limiter's metrics through the `metrics` facade (feature `metrics`), beside the
//! `tracing` events; without the feature every function here is empty and inlined away.
//!
//! Names (labels in brackets):
//! - `tollgate_model_admissions_total` (`model`): requests admitted;
//! - `tollgate_model_wait_seconds` (`model`): histogram of the wait from the first poll of an
//!   acquire to its admission;
//! - `tollgate_model_refusals_total` (`model`, `reason`: `max_wait`, `insufficient_capacity`,
//!   `quota_exhausted`, `rate_limited`, `unknown_model`, `other`);
//! - `tollgate_model_429_total` (`model`, `class`: `retry_later`, `never_fits`,
//!   `quota_exhausted`): 429s reported to the limiter;
//! - `tollgate_model_cooldowns_total` (`model`, `class`): cooldowns and exhaustions started
//!   or extended.

#[cfg(feature = "metrics")]
mod on {
    use alloc::string::String;
    use core::time::Duration;

    use crate::Error;

    pub(crate) fn admitted(model: &str, waited: Duration) {
        metrics::counter!("tollgate_model_admissions_total", "model" => String::from(model))
            .increment(1);
        metrics::histogram!("tollgate_model_wait_seconds", "model" => String::from(model))
            .record(waited.as_secs_f64());
    }

    pub(crate) fn refused(model: &str, error: &Error) {
        let reason = match error {
            Error::MaxWaitExceeded { .. } => "max_wait",
            Error::InsufficientCapacity { .. } => "insufficient_capacity",
            Error::QuotaExhausted { .. } => "quota_exhausted",
            Error::RateLimited(_) => "rate_limited",
            Error::UnknownModel => "unknown_model",
            _ => "other",
        };
        metrics::counter!(
            "tollgate_model_refusals_total",
            "model" => String::from(model),
            "reason" => reason
        )
        .increment(1);
    }

    pub(crate) fn too_many_requests(model: &str, class: &'static str) {
        metrics::counter!("tollgate_model_429_total", "model" => String::from(model), "class" => class)
            .increment(1);
    }

    pub(crate) fn cooldown(model: &str, class: &'static str) {
        metrics::counter!(
            "tollgate_model_cooldowns_total",
            "model" => String::from(model),
            "class" => class
        )
        .increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod on {
    use core::time::Duration;

    use crate::Error;

    #[inline(always)]
    pub(crate) fn admitted(_: &str, _: Duration) {}
    #[inline(always)]
    pub(crate) fn refused(_: &str, _: &Error) {}
    #[inline(always)]
    pub(crate) fn too_many_requests(_: &str, _: &'static str) {}
    #[inline(always)]
    pub(crate) fn cooldown(_: &str, _: &'static str) {}
}

pub(crate) use on::{admitted, cooldown, refused, too_many_requests};
