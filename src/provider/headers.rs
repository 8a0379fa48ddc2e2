//! [`parse_headers`]: one response's headers, as name/value pairs, into a [`HeaderReport`].
//!
//! One pass over the headers fills a fixed table (three fields of four quotas, two
//! retry-afters) without allocating; the report's vectors are made at the end, the
//! `ignored` one only when something was ignored.

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::datetime::{parse_http_date, parse_rfc3339};
use super::go_duration::parse_go_duration;
use super::names::{Field, Name, canonical, classify};
use super::number::{parse_count, parse_millis, parse_seconds};
use super::report::{HeaderReport, IgnoreReason, Ignored, Observed, Provider, Quota};

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// What the headers said so far about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot<T> {
    Absent,
    Value(T),
    /// Two different values came: neither is used (and the header is already reported).
    Conflicting,
}

impl<T: PartialEq> Slot<T> {
    /// Records `value`; `true` when this makes the field conflicting (the first time only).
    fn set(&mut self, value: T) -> bool {
        match self {
            Slot::Absent => {
                *self = Slot::Value(value);
                false
            }
            Slot::Value(old) if *old == value => false,
            Slot::Value(_) => {
                *self = Slot::Conflicting;
                true
            }
            Slot::Conflicting => false,
        }
    }

    fn get(self) -> Option<T> {
        match self {
            Slot::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// The three fields of one quota.
#[derive(Debug, Clone, Copy)]
struct Fields {
    limit: Slot<u64>,
    remaining: Slot<u64>,
    reset: Slot<Duration>,
}

const NO_FIELDS: Fields =
    Fields { limit: Slot::Absent, remaining: Slot::Absent, reset: Slot::Absent };

/// Parses one response's headers as `provider` sends them.
///
/// `headers` are name/value pairs in any form that gives bytes (`&str`, `&[u8]`, `String`…);
/// names compare without regard to case, values are trimmed of spaces and tabs. `now` is the
/// current wall-clock time as a [`Duration`] since the Unix epoch, used only for absolute
/// instants (Anthropic's resets, an HTTP-date `retry-after`); without it those are ignored
/// with [`IgnoreReason::NeedsClock`]. (The core has no wall clock of its own: pass
/// `SystemTime::now().duration_since(UNIX_EPOCH)`.)
///
/// | provider | names | limit, remaining | reset | window |
/// |---|---|---|---|---|
/// | [`OpenAi`](Provider::OpenAi) | `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` | integers | Go duration (`6m0s`, `12ms`) | a minute |
/// | [`Azure`](Provider::Azure) | the same | integers, `-1` unknown | seconds (`6`, `1.5`; a Go duration too), `-1` unknown | a minute |
/// | [`Groq`](Provider::Groq) | the same | integers | Go duration | requests: a **day**; tokens: a minute |
/// | [`Anthropic`](Provider::Anthropic) | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` | integers; token counts remaining rounded to the nearest thousand ([`Observed::remaining_tolerance`] 500) | RFC 3339 instant (needs `now`) | a minute |
/// | [`Mistral`](Provider::Mistral) | `x-ratelimit-{limit,remaining}-{req,tokens}-minute` | integers | — | a minute |
///
/// And for every provider: `retry-after-ms` (a decimal of milliseconds) before `retry-after`
/// (a decimal of seconds, or an IMF-fixdate HTTP date, which needs `now`).
///
/// Never panics. A header that cannot be used is left out and listed in
/// [`HeaderReport::ignored`]: a value that does not parse ([`Malformed`]), Azure's `-1`
/// ([`Unknown`]), a header repeated with another value ([`Conflicting`]: neither is used; the
/// same value repeated is fine), a remaining above its limit by more than its rounding
/// ([`Contradicts`]: both are dropped — which one is wrong cannot be told; within the rounding
/// the remaining is clamped to the limit), an absolute instant without `now`
/// ([`NeedsClock`]), and an `x-ratelimit-*` or `anthropic-ratelimit-*` name the provider is
/// not known to send ([`Unrecognized`]). Other headers are not looked at. A reset instant
/// already past gives a zero `reset_after` (the clocks of client and server never agree
/// exactly).
///
/// [`Malformed`]: IgnoreReason::Malformed
/// [`Unknown`]: IgnoreReason::Unknown
/// [`Conflicting`]: IgnoreReason::Conflicting
/// [`Contradicts`]: IgnoreReason::Contradicts
/// [`NeedsClock`]: IgnoreReason::NeedsClock
/// [`Unrecognized`]: IgnoreReason::Unrecognized
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::{IgnoreReason, Provider, Quota, parse_headers};
///
/// let now = Duration::from_secs(1_796_134_000); // 2026-12-01T14:06:40Z
/// let report = parse_headers(
///     Provider::Anthropic,
///     [
///         ("anthropic-ratelimit-input-tokens-limit", "40000"),
///         ("anthropic-ratelimit-input-tokens-remaining", "12000"),
///         ("anthropic-ratelimit-input-tokens-reset", "2026-12-01T14:06:58Z"),
///         ("anthropic-ratelimit-requests-remaining", "many"),
///         ("retry-after", "18"),
///     ],
///     Some(now),
/// );
/// let input = report.get(Quota::InputTokens).unwrap();
/// assert_eq!(input.remaining, Some(12_000));
/// assert_eq!(input.remaining_tolerance, 500);
/// assert_eq!(input.reset_after, Some(Duration::from_secs(18)));
/// assert_eq!(report.retry_after, Some(Duration::from_secs(18)));
/// assert_eq!(report.ignored[0].reason, IgnoreReason::Malformed);
/// ```
pub fn parse_headers<I, N, V>(provider: Provider, headers: I, now: Option<Duration>) -> HeaderReport
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut quotas = [NO_FIELDS; 4];
    let mut retry_after_ms: Slot<Duration> = Slot::Absent;
    let mut retry_after: Slot<Duration> = Slot::Absent;
    let mut ignored: Vec<Ignored> = Vec::new();
    let mut ignore = |name: &[u8], reason| {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        ignored.push(Ignored { name, reason });
    };

    for (name, value) in headers {
        let (name, value) = (name.as_ref(), trim(value.as_ref()));
        let conflict = match classify(provider, name) {
            Name::Other => continue,
            Name::Unrecognized => {
                ignore(name, IgnoreReason::Unrecognized);
                continue;
            }
            Name::Quota(quota, field) => {
                let fields = &mut quotas[quota as usize];
                let set = match field {
                    Field::Limit => count(provider, value).map(|n| fields.limit.set(n)),
                    Field::Remaining => count(provider, value).map(|n| fields.remaining.set(n)),
                    Field::Reset => reset(provider, value, now).map(|d| fields.reset.set(d)),
                };
                match set {
                    Ok(conflict) => conflict,
                    Err(reason) => {
                        ignore(name, reason);
                        continue;
                    }
                }
            }
            Name::RetryAfterMs => match parse_millis(value) {
                Some(d) => retry_after_ms.set(d),
                None => {
                    ignore(name, IgnoreReason::Malformed);
                    continue;
                }
            },
            Name::RetryAfter => match retry_after_value(value, now) {
                Ok(d) => retry_after.set(d),
                Err(reason) => {
                    ignore(name, reason);
                    continue;
                }
            },
        };
        if conflict {
            ignore(name, IgnoreReason::Conflicting);
        }
    }

    let mut observed = Vec::new();
    for (quota, fields) in Quota::ALL.into_iter().zip(quotas) {
        let tolerance = remaining_tolerance(provider, quota);
        let (mut limit, mut remaining) = (fields.limit.get(), fields.remaining.get());
        if let (Some(l), Some(r)) = (limit, remaining) {
            if r - l.min(r) > tolerance {
                for field in [Field::Limit, Field::Remaining] {
                    ignore(canonical(provider, quota, field).as_bytes(), IgnoreReason::Contradicts);
                }
                (limit, remaining) = (None, None);
            } else {
                // Within the rounding: the provider cannot have more left than its limit.
                remaining = Some(r.min(l));
            }
        }
        let reset_after = fields.reset.get();
        if limit.is_none() && remaining.is_none() && reset_after.is_none() {
            continue;
        }
        if observed.capacity() == 0 {
            observed.reserve_exact(Quota::ALL.len());
        }
        observed.push(Observed {
            quota,
            window: Some(window(provider, quota)),
            limit,
            remaining,
            remaining_tolerance: tolerance,
            reset_after,
        });
    }

    HeaderReport {
        provider,
        observed,
        retry_after: retry_after_ms.get().or(retry_after.get()),
        ignored,
    }
}

/// A value without the optional white space (spaces and tabs) HTTP allows around it.
fn trim(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &value[start..end]
}

/// A limit or remaining.
fn count(provider: Provider, value: &[u8]) -> Result<u64, IgnoreReason> {
    if provider == Provider::Azure && value == b"-1" {
        return Err(IgnoreReason::Unknown);
    }
    parse_count(value).ok_or(IgnoreReason::Malformed)
}

/// A reset, as a delay from now.
fn reset(
    provider: Provider,
    value: &[u8],
    now: Option<Duration>,
) -> Result<Duration, IgnoreReason> {
    let delay = match provider {
        Provider::OpenAi | Provider::Groq | Provider::Mistral => parse_go_duration(value),
        Provider::Azure if value == b"-1" => return Err(IgnoreReason::Unknown),
        Provider::Azure => parse_seconds(value).or_else(|| parse_go_duration(value)),
        Provider::Anthropic => match (parse_rfc3339(value), now) {
            (Some(at), Some(now)) => Some(at.saturating_sub(now)),
            (Some(_), None) => return Err(IgnoreReason::NeedsClock),
            (None, _) => None,
        },
    };
    delay.ok_or(IgnoreReason::Malformed)
}

/// `retry-after`: delay seconds, or an HTTP date.
fn retry_after_value(value: &[u8], now: Option<Duration>) -> Result<Duration, IgnoreReason> {
    if let Some(d) = parse_seconds(value) {
        return Ok(d);
    }
    match (parse_http_date(value), now) {
        (Some(at), Some(now)) => Ok(at.saturating_sub(now)),
        (Some(_), None) => Err(IgnoreReason::NeedsClock),
        (None, _) => Err(IgnoreReason::Malformed),
    }
}

/// The window the provider documents for `quota`.
fn window(provider: Provider, quota: Quota) -> Duration {
    match (provider, quota) {
        (Provider::Groq, Quota::Requests) => DAY,
        _ => MINUTE,
    }
}

/// How far a reported remaining may be from the provider's own figure.
fn remaining_tolerance(provider: Provider, quota: Quota) -> u64 {
    match (provider, quota) {
        // "Rounded to the nearest thousand" (Anthropic's documentation of its token headers).
        (Provider::Anthropic, Quota::Tokens | Quota::InputTokens | Quota::OutputTokens) => 500,
        _ => 0,
    }
}
