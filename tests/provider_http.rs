//! `parse_header_map` (feature `http`): an `http::HeaderMap` reads exactly as the same
//! name/value pairs, repeated values included, and a value that is not text is ignored.

use core::time::Duration;

use http::{HeaderMap, HeaderValue};
use tollgate::provider::{IgnoreReason, Provider, Quota, parse_header_map, parse_headers};

#[test]
fn a_header_map_reads_as_its_pairs() {
    let pairs = [
        ("content-type", "application/json"),
        ("X-RateLimit-Limit-Tokens", "30000"),
        ("x-ratelimit-remaining-tokens", "29000"),
        ("x-ratelimit-reset-tokens", "2s"),
        ("retry-after", "1"),
    ];
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(n, HeaderValue::from_static(v));
    }
    let report = parse_header_map(Provider::OpenAi, &map, None);
    assert_eq!(report, parse_headers(Provider::OpenAi, pairs, None));
    assert_eq!(report.get(Quota::Tokens).unwrap().reset_after, Some(Duration::from_secs(2)));
    assert_eq!(report.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(Provider::detect(map.keys().map(|k| k.as_str())), Some(Provider::OpenAi));
}

#[test]
fn every_value_of_a_repeated_name_is_read() {
    let mut map = HeaderMap::new();
    map.append("x-ratelimit-remaining-tokens", HeaderValue::from_static("5"));
    map.append("x-ratelimit-remaining-tokens", HeaderValue::from_static("6"));
    let report = parse_header_map(Provider::OpenAi, &map, None);
    assert_eq!(report.observed, []);
    assert_eq!(report.ignored[0].reason, IgnoreReason::Conflicting);
}

#[test]
fn a_value_that_is_not_text_is_malformed() {
    let mut map = HeaderMap::new();
    map.insert("x-ratelimit-limit-requests", HeaderValue::from_bytes(b"5\xe9").unwrap());
    let report = parse_header_map(Provider::Groq, &map, None);
    assert_eq!(report.observed, []);
    assert_eq!(report.ignored[0].reason, IgnoreReason::Malformed);
}
