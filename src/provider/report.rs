//! The types of a parsed header set: who sent it ([`Provider`]), what each limit looks like
//! ([`Observed`] per [`Quota`]), and what was left out and why ([`Ignored`]).

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

/// An LLM API whose rate-limit headers tollgate reads. Each one names and formats its headers
/// its own way; see [`parse_headers`](super::parse_headers) for the formats.
///
/// Pass the provider you called when you know it; [`Provider::detect`] guesses it from the
/// header names when you do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as Go
    /// durations (`6m0s`), both limits per minute.
    OpenAi,
    /// Azure OpenAI: OpenAI's names, resets in integer seconds, `-1` for "not known", and
    /// `retry-after-ms`.
    Azure,
    /// Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`,
    /// resets as RFC 3339 instants, token counts remaining rounded to the nearest thousand.
    Anthropic,
    /// Groq: OpenAI's names and formats, but the request limit is per **day**.
    Groq,
    /// Mistral: `x-ratelimit-{limit,remaining}-tokens-minute` and
    /// `x-ratelimit-{limit,remaining}-req-minute`, no resets.
    Mistral,
}

/// What a provider's limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quota {
    /// Requests.
    Requests,
    /// Tokens, input and output together (OpenAI, Azure, Groq, Mistral; Anthropic's
    /// `tokens` headers, the most restrictive of its token limits).
    Tokens,
    /// Input (prompt) tokens only (Anthropic's ITPM).
    InputTokens,
    /// Output (completion) tokens only (Anthropic's OTPM).
    OutputTokens,
}

impl Quota {
    /// Every quota, in the order a [`HeaderReport`] lists them.
    pub const ALL: [Quota; 4] =
        [Quota::Requests, Quota::Tokens, Quota::InputTokens, Quota::OutputTokens];
}

/// One limit as a response reports it. Every field the response did not give (or gave in a
/// form that could not be trusted, see [`HeaderReport::ignored`]) is `None`.
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::{Observed, Quota};
///
/// let o = Observed {
///     quota: Quota::InputTokens,
///     window: Some(Duration::from_secs(60)),
///     limit: Some(40_000),
///     remaining: Some(12_000),
///     remaining_tolerance: 500,
///     reset_after: Some(Duration::from_secs(18)),
/// };
/// // Rounded to the nearest thousand: the provider has at least 11 500 left.
/// assert_eq!(o.remaining_at_least(), Some(11_500));
/// assert_eq!(o.used(), Some(28_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Observed {
    /// What the limit counts.
    pub quota: Quota,
    /// How long the provider's window is, as far as its documentation says: 60 s for a
    /// per-minute limit, a day for Groq's requests. `None`: not known.
    pub window: Option<Duration>,
    /// The provider's limit for the window.
    pub limit: Option<u64>,
    /// What the provider says is left in the window. Never above `limit` when both are known
    /// (a response that says so has both dropped and reported).
    pub remaining: Option<u64>,
    /// How far `remaining` may be from the provider's true figure: 0 when exact, 500 for
    /// Anthropic's token counts, which are rounded to the nearest thousand. Draining the local
    /// window to `remaining` may then be up to 500 too lenient or too strict; drain to
    /// [`remaining_at_least`](Self::remaining_at_least) to be sure never to overrun.
    pub remaining_tolerance: u64,
    /// When the provider's count is back to `limit` (OpenAI, Groq, Azure) or next refilled
    /// (Anthropic), from the response on. Zero when the reported instant is already past.
    pub reset_after: Option<Duration>,
}

impl Observed {
    /// An observation of `quota` with nothing known yet.
    pub const fn new(quota: Quota) -> Self {
        Self {
            quota,
            window: None,
            limit: None,
            remaining: None,
            remaining_tolerance: 0,
            reset_after: None,
        }
    }

    /// The least the provider can have left: `remaining − remaining_tolerance`, at least 0.
    pub fn remaining_at_least(&self) -> Option<u64> {
        self.remaining.map(|r| r.saturating_sub(self.remaining_tolerance))
    }

    /// What the provider counts as used in the window: `limit − remaining`, when both are
    /// known.
    pub fn used(&self) -> Option<u64> {
        Some(self.limit?.saturating_sub(self.remaining?))
    }
}

/// Why a header was left out of a [`HeaderReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IgnoreReason {
    /// The value does not parse in the provider's format (or is not text).
    Malformed,
    /// The provider said it does not know (Azure's `-1`).
    Unknown,
    /// The header came more than once with different values: neither is used.
    Conflicting,
    /// A remaining above its limit (beyond the remaining's rounding): neither is used.
    Contradicts,
    /// An absolute instant (an RFC 3339 reset, an HTTP-date `retry-after`), but no current
    /// time was given to turn it into a delay.
    NeedsClock,
    /// A rate-limit header (`x-ratelimit-*`, `anthropic-ratelimit-*`) this provider is not
    /// known to send.
    Unrecognized,
}

/// A header left out of a [`HeaderReport`], and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ignored {
    /// The header's name, in lower case.
    pub name: String,
    /// Why it was left out.
    pub reason: IgnoreReason,
}

/// What one response's headers say about the provider's limits.
///
/// Made by [`parse_headers`](super::parse_headers); read by the model limiter's feedback and
/// by [`classify_429`](super::classify_429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderReport {
    /// Who sent the headers (as given to the parser).
    pub provider: Provider,
    /// One entry per quota the response reported anything usable about, in
    /// [`Quota::ALL`] order, at most one per quota.
    pub observed: Vec<Observed>,
    /// How long the provider asks the client to wait: `retry-after-ms` when present and
    /// valid, else `retry-after` (delay seconds, or an HTTP date when the current time was
    /// given).
    pub retry_after: Option<Duration>,
    /// The headers left out, in the order they came (a header repeated with different values
    /// is listed once).
    pub ignored: Vec<Ignored>,
}

impl HeaderReport {
    /// A report of `provider` that says nothing: no limits, no retry-after, nothing ignored
    /// (what a response without rate-limit headers parses to).
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::provider::{HeaderReport, Provider, Throttled, classify_429};
    ///
    /// let mut report = HeaderReport::empty(Provider::Azure);
    /// report.retry_after = Some(Duration::from_secs(3));
    /// assert_eq!(
    ///     classify_429(&report, b""),
    ///     Throttled::RetryLater { after: Some(Duration::from_secs(3)) }
    /// );
    /// ```
    pub const fn empty(provider: Provider) -> Self {
        Self { provider, observed: Vec::new(), retry_after: None, ignored: Vec::new() }
    }

    /// The observation of `quota`, if the response reported one.
    pub fn get(&self, quota: Quota) -> Option<&Observed> {
        self.observed.iter().find(|o| o.quota == quota)
    }
}
