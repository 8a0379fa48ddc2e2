//! Go's duration syntax (`time.ParseDuration` / `Duration.String`): `1s`, `6m0s`, `12ms`,
//! `2m59.56s`, `1h2m`, `500µs`, `0` — the form of OpenAI's and Groq's reset headers.

use core::fmt;
use core::time::Duration;

/// Parses a Go duration: one or more `<number><unit>` with units `h`, `m`, `s`, `ms`, `us`
/// (or `µs`, `μs`), `ns`, and decimal fractions (`1.5s`); or a lone `0`. A sign is not
/// accepted (a reset is never negative). `None` when it does not parse or does not fit a
/// [`Duration`].
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::parse_go_duration;
///
/// assert_eq!(parse_go_duration(b"2m59.56s"), Some(Duration::from_millis(179_560)));
/// assert_eq!(parse_go_duration(b"12ms"), Some(Duration::from_millis(12)));
/// assert_eq!(parse_go_duration(b"12"), None);
/// ```
pub fn parse_go_duration(text: &[u8]) -> Option<Duration> {
    let _ = text;
    None
}

/// Formats a [`Duration`] as Go does (`Duration.String`): `1h2m0s`, `2m59.56s`, `12ms`,
/// `500µs`, `0s`. What it writes, [`parse_go_duration`] reads back to the same value.
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::GoDuration;
///
/// assert_eq!(GoDuration(Duration::from_millis(179_560)).to_string(), "2m59.56s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoDuration(pub Duration);

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
