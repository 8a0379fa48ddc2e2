//! 429 classification: what a "too many requests" response means for the client —
//! wait and retry ([`Throttled::RetryLater`]), give up on this request
//! ([`Throttled::NeverFits`]), or stop calling until the quota resets
//! ([`Throttled::QuotaExhausted`]).

use core::time::Duration;

use super::go_duration::parse_go_duration;
use super::number::{NANOS_PER_SEC, parse_decimal};
use super::report::HeaderReport;
use super::scan::{contains_ci, find_ci, json_strings, number_after, word};

/// What a 429 response means, from its headers and body ([`classify_429`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Throttled {
    /// A rate limit was hit: the same request can succeed later. `after` is how long to wait
    /// when the response says (`retry-after-ms`, `retry-after`, a body hint such as OpenAI's
    /// "Please try again in 634ms" or Gemini's `retryDelay`, the reset of an exhausted quota).
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
    /// `insufficient_quota`, a spend limit, a per-day quota): retrying soon is pointless.
    QuotaExhausted {
        /// When the quota comes back, when the response says.
        reset_after: Option<Duration>,
    },
}

/// A day: a quota whose window is this long or longer is "exhausted", not "retry later".
const DAY: Duration = Duration::from_secs(86_400);

/// Classifies a 429 response from its parsed headers and its body.
///
/// The rules, in order (the first that applies decides):
/// 1. **Quota exhausted**, whatever else the response says: the body names OpenAI's
///    `insufficient_quota` (no reset: it is a billing matter).
/// 2. **Never fits**: the body says "Request too large", or gives `Limit N` and
///    `Requested M` with `M > N` (OpenAI's wording): `requested` and `limit` are those numbers.
/// 3. **Quota exhausted** for a limit per day: a Gemini `"quotaId"` containing `PerDay`
///    (reset: its `retryDelay`, else the headers' retry-after); a body that says "per day"
///    (OpenAI's "requests per day (RPD)"; reset: the retry-after, else the body hint); or the
///    headers report a quota with a window of a day or more at 0 remaining (Groq's requests
///    per day; reset: that quota's reset, else the retry-after). A day is too long to hold a
///    queue of waiters: the caller should fail fast and say when it comes back.
/// 4. **Retry later** after the headers' retry-after (`retry-after-ms`, then `retry-after`),
///    else a body hint: "try again in `<Go duration>`" (`634ms`, `1.5s`, `6m0s`), "try again
///    in / retry after `<number> <unit>`" (`6 seconds`, `250 milliseconds`, `2 minutes`), or
///    a `"retryDelay": "30s"` (Gemini's `RetryInfo`), the first one in the body.
/// 5. **Quota exhausted** (no reset known): nothing said when to come back and the body
///    speaks of a spend or usage limit, billing, or "exceeded your current quota".
/// 6. **Retry later** after the longest reset among the quotas reported at 0 remaining, or
///    with no delay known.
///
/// Never panics and allocates nothing, whatever the body holds; the body need not be JSON
/// (see the module `scan.rs` for why it is searched, not parsed).
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
///
/// let body = br#"{"error":{"message":"Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 36055.","code":"rate_limit_exceeded"}}"#;
/// assert_eq!(
///     classify_429(&report, body),
///     Throttled::NeverFits { requested: Some(36_055), limit: Some(30_000) }
/// );
///
/// let body = br#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#;
/// assert_eq!(classify_429(&report, body), Throttled::QuotaExhausted { reset_after: None });
/// ```
pub fn classify_429(report: &HeaderReport, body: &[u8]) -> Throttled {
    // 1. A quota that is spent, whatever else the response says.
    if contains_ci(body, b"insufficient_quota") {
        return Throttled::QuotaExhausted { reset_after: None };
    }

    // 2. A request larger than the limit: waiting cannot help, whatever the window.
    let limit = number_after(body, b"limit ");
    let requested = number_after(body, b"requested ");
    let too_large = contains_ci(body, b"request too large");
    if too_large || matches!((requested, limit), (Some(r), Some(l)) if r > l) {
        return Throttled::NeverFits { requested, limit };
    }

    // 3. A quota per day: back only when the day's window moves on.
    if json_strings(body, b"\"quotaid\"").any(|(_, id)| contains_ci(id, b"perday")) {
        let reset_after = retry_delay(body).or(report.retry_after);
        return Throttled::QuotaExhausted { reset_after };
    }
    if contains_ci(body, b"per day") {
        let reset_after = report.retry_after.or_else(|| body_hint(body));
        return Throttled::QuotaExhausted { reset_after };
    }
    if let Some(day) = report
        .observed
        .iter()
        .filter(|o| o.remaining == Some(0) && o.window.is_some_and(|w| w >= DAY))
        .max_by_key(|o| o.reset_after)
    {
        return Throttled::QuotaExhausted { reset_after: day.reset_after.or(report.retry_after) };
    }

    // 4. The provider says when to come back.
    if let Some(after) = report.retry_after.or_else(|| body_hint(body)) {
        return Throttled::RetryLater { after: Some(after) };
    }

    // 5. A spent quota says nothing about when it comes back.
    const SPENT: [&[u8]; 6] = [
        b"spend limit",
        b"spending limit",
        b"usage limit",
        b"billing",
        b"exceeded your current quota",
        b"credit balance",
    ];
    if SPENT.iter().any(|phrase| contains_ci(body, phrase)) {
        return Throttled::QuotaExhausted { reset_after: None };
    }

    // 6. The reset of what the headers say is used up, if anything.
    let after = report
        .observed
        .iter()
        .filter(|o| o.remaining == Some(0))
        .filter_map(|o| o.reset_after)
        .max();
    Throttled::RetryLater { after }
}

/// Gemini's `RetryInfo`: `"retryDelay": "30s"` (a protobuf duration: seconds with a fraction
/// and an `s`, which the Go parser reads).
fn retry_delay(body: &[u8]) -> Option<Duration> {
    json_strings(body, b"\"retrydelay\"").find_map(|(_, v)| parse_go_duration(v))
}

/// The first retry hint in the body, in the order the hints occur.
fn body_hint(body: &[u8]) -> Option<Duration> {
    let phrases =
        [&b"try again in "[..], b"retry after ", b"retry in "].into_iter().filter_map(|phrase| {
            let mut from = 0;
            while let Some(at) = find_ci(body, phrase, from) {
                from = at + phrase.len();
                if let Some(d) = delay_text(&body[from..]) {
                    return Some((at, d));
                }
            }
            None
        });
    let gemini = json_strings(body, b"\"retrydelay\"")
        .find_map(|(at, v)| parse_go_duration(v).map(|d| (at, d)));
    phrases.chain(gemini).min_by_key(|&(at, _)| at).map(|(_, d)| d)
}

/// A delay written out after "try again in": a Go duration (`634ms`, `1.5s`, `6m0s`, with a
/// full stop after it), or a decimal and a unit word (`6 seconds`, `250 ms`, `2 minutes`).
fn delay_text(text: &[u8]) -> Option<Duration> {
    let first = word(text);
    let go = first.strip_suffix(b".").unwrap_or(first);
    if let Some(d) = parse_go_duration(go) {
        return Some(d);
    }
    let rest = text[first.len()..].strip_prefix(b" ")?;
    let unit = word(rest);
    let unit = unit.strip_suffix(b".").unwrap_or(unit);
    const UNITS: [(&[&[u8]], u128); 6] = [
        (&[b"ns", b"nanosecond", b"nanoseconds"], 1),
        (&[b"us", b"microsecond", b"microseconds"], 1_000),
        (&[b"ms", b"millisecond", b"milliseconds"], 1_000_000),
        (&[b"s", b"sec", b"secs", b"second", b"seconds"], NANOS_PER_SEC),
        (&[b"min", b"mins", b"minute", b"minutes"], 60 * NANOS_PER_SEC),
        (&[b"h", b"hour", b"hours"], 3_600 * NANOS_PER_SEC),
    ];
    let (_, unit_ns) =
        UNITS.iter().find(|(names, _)| names.iter().any(|n| unit.eq_ignore_ascii_case(n)))?;
    parse_decimal(first, *unit_ns)
}
