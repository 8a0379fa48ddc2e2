//! Absolute instants in header values: RFC 3339 (Anthropic's resets) and the HTTP date of
//! `retry-after`, both as a [`Duration`] since the Unix epoch.

use core::time::Duration;

/// Parses an RFC 3339 date-time (`2026-12-01T14:05:09Z`, `2026-12-01T15:05:09.5+01:00`) as
/// the time since the Unix epoch. `None` when it does not parse, is not a real date, or is
/// before 1970.
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::parse_rfc3339;
///
/// assert_eq!(parse_rfc3339(b"1970-01-02T00:00:01Z"), Some(Duration::from_secs(86_401)));
/// ```
pub fn parse_rfc3339(text: &[u8]) -> Option<Duration> {
    let _ = text;
    None
}

/// Parses an HTTP date in its preferred form (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`)
/// as the time since the Unix epoch. `None` when it does not parse.
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::parse_http_date;
///
/// assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:01:00 GMT"), Some(Duration::from_secs(60)));
/// ```
pub fn parse_http_date(text: &[u8]) -> Option<Duration> {
    let _ = text;
    None
}
