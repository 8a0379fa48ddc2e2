//! [`parse_header_map`]: the same parser over an `http::HeaderMap` (feature `http`).

use core::time::Duration;

use super::report::{HeaderReport, Provider};

/// [`parse_headers`](super::parse_headers) over an [`http::HeaderMap`].
///
/// ```
/// use tollgate::provider::{Provider, parse_header_map};
///
/// let mut map = http::HeaderMap::new();
/// map.insert("x-ratelimit-remaining-requests", http::HeaderValue::from_static("7"));
/// let report = parse_header_map(Provider::OpenAi, &map, None);
/// assert_eq!(report.observed[0].remaining, Some(7));
/// ```
pub fn parse_header_map(
    provider: Provider,
    map: &http::HeaderMap,
    now: Option<Duration>,
) -> HeaderReport {
    super::parse_headers(provider, map.iter().map(|(n, v)| (n.as_str(), v.as_bytes())), now)
}
