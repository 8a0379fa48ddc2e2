//! `provider_values` target: the value parsers of `tollgate::provider` on raw bytes — Go
//! durations, RFC 3339 instants, HTTP dates, and one header of every provider.
//!
//! Checked:
//! - never panics (the harness builds with overflow checks);
//! - a Go duration that parses formats (`GoDuration`) to text that parses back to the same
//!   value, and any `Duration` made from the input formats and reads back to itself;
//! - an RFC 3339 instant or HTTP date that parses is the instant a reference formatter (written
//!   here, year by year, independent of the library's arithmetic) writes back, and that text
//!   parses to the same instant; a canonical input (`YYYY-MM-DDTHH:MM:SSZ`, IMF-fixdate with the
//!   right day name) is written back byte for byte;
//! - the input as the value of each provider's headers (and split at `:` as a name and a
//!   value) gives a report whose every remaining is ≤ its limit, with at most one entry per
//!   quota in `Quota::ALL` order.

use core::time::Duration;
use std::fmt::Write as _;

use tollgate::provider::{
    GoDuration, Provider, parse_go_duration, parse_headers, parse_http_date, parse_rfc3339,
};

use crate::provider_check::check_report;

/// Every provider, for the harnesses that try one input on each.
pub(crate) const PROVIDERS: [Provider; 5] =
    [Provider::OpenAi, Provider::Azure, Provider::Anthropic, Provider::Groq, Provider::Mistral];

/// Every name the parsers know, for the harnesses that build header sets.
pub(crate) const NAMES: &[&str] = &[
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-limit-req-minute",
    "x-ratelimit-remaining-req-minute",
    "x-ratelimit-limit-tokens-minute",
    "x-ratelimit-remaining-tokens-minute",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
    "retry-after",
    "retry-after-ms",
];

/// Runs one input through every value parser.
pub fn run_provider_values(data: &[u8]) {
    go_duration(data);
    rfc3339(data);
    http_date(data);
    let now = now_from(data);
    for provider in PROVIDERS {
        for name in NAMES {
            check_report(&parse_headers(provider, [(*name, data)], now));
        }
        if let Some(colon) = data.iter().position(|&b| b == b':') {
            let (name, value) = (&data[..colon], &data[colon + 1..]);
            check_report(&parse_headers(provider, [(name, value)], now));
        }
    }
}

/// A wall-clock "now" from the first bytes, if there are enough.
fn now_from(data: &[u8]) -> Option<Duration> {
    let bytes: [u8; 8] = data.get(..8)?.try_into().ok()?;
    // Within 1970..10000, where the instants the parsers read are.
    Some(Duration::from_secs(u64::from_le_bytes(bytes) % 253_402_300_800))
}

fn go_duration(data: &[u8]) {
    if let Some(d) = parse_go_duration(data) {
        let text = GoDuration(d).to_string();
        assert_eq!(parse_go_duration(text.as_bytes()), Some(d), "{text} from {data:?}");
    }
    if let Some(bytes) = data.get(..12) {
        let secs = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let nanos = u32::from_le_bytes(bytes[8..].try_into().unwrap()) % 1_000_000_000;
        let d = Duration::new(secs, nanos);
        let text = GoDuration(d).to_string();
        assert_eq!(parse_go_duration(text.as_bytes()), Some(d), "{text}");
    }
}

fn rfc3339(data: &[u8]) {
    let Some(t) = parse_rfc3339(data) else { return };
    let (date, time) = civil(t.as_secs());
    let text = format!("{date}T{time}.{:09}Z", t.subsec_nanos());
    assert_eq!(parse_rfc3339(text.as_bytes()), Some(t), "{text} from {data:?}");
    // A canonical input is the same text again.
    let plain = format!("{date}T{time}Z");
    if data.len() == 20 && data[19] == b'Z' && t.subsec_nanos() == 0 && data[10] == b'T' {
        let second = &data[17..19];
        if second != b"60" {
            assert_eq!(plain.as_bytes(), data, "{t:?}");
        }
    }
}

fn http_date(data: &[u8]) {
    let Some(t) = parse_http_date(data) else { return };
    let text = imf_fixdate(t.as_secs());
    assert_eq!(parse_http_date(text.as_bytes()), Some(t), "{text} from {data:?}");
    if data[..3] == text.as_bytes()[..3] && &data[23..25] != b"60" {
        assert_eq!(text.as_bytes(), data, "{t:?}");
    }
}

/// `YYYY-MM-DD` and `HH:MM:SS` of a time since the epoch, counted a year and a month at a
/// time (slow and plain: a reference, not the library's arithmetic).
pub(crate) fn civil(secs: u64) -> (String, String) {
    let (mut days, rem) = (secs / 86_400, secs % 86_400);
    let leap = |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
    let mut year = 1970;
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let lengths = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 0;
    while days >= lengths[month] {
        days -= lengths[month];
        month += 1;
    }
    let mut date = String::new();
    write!(date, "{year:04}-{:02}-{:02}", month + 1, days + 1).unwrap();
    let time = format!("{:02}:{:02}:{:02}", rem / 3_600, rem / 60 % 60, rem % 60);
    (date, time)
}

/// The IMF-fixdate of a time since the epoch (1970-01-01 was a Thursday).
pub(crate) fn imf_fixdate(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (date, time) = civil(secs);
    let (year, month, day) = (&date[..4], &date[5..7], &date[8..10]);
    let month = MONTHS[month.parse::<usize>().unwrap() - 1];
    let weekday = DAYS[(secs / 86_400 % 7) as usize];
    format!("{weekday}, {day} {month} {year} {time} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate::provider::Quota;

    #[test]
    fn reference_formatters() {
        assert_eq!(civil(1_796_134_000), ("2026-12-01".into(), "14:06:40".into()));
        assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(Quota::ALL.len(), 4);
    }
}
