//! Provider header formats: every format `tollgate::provider` accepts, and every rule for a
//! header it cannot use (missing, malformed, repeated, contradictory, unknown), one test each.

use core::time::Duration;

use tollgate::provider::{
    GoDuration, HeaderReport, IgnoreReason, Ignored, Observed, Provider, Quota, parse_go_duration,
    parse_headers, parse_http_date, parse_rfc3339,
};

const MINUTE: Option<Duration> = Some(Duration::from_secs(60));
const DAY: Option<Duration> = Some(Duration::from_secs(86_400));

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn parse(provider: Provider, headers: &[(&str, &str)]) -> HeaderReport {
    parse_headers(provider, headers.iter().copied(), None)
}

fn ignored(name: &str, reason: IgnoreReason) -> Ignored {
    Ignored { name: name.into(), reason }
}

fn obs(
    quota: Quota,
    window: Option<Duration>,
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_after: Option<Duration>,
) -> Observed {
    Observed { quota, window, limit, remaining, remaining_tolerance: 0, reset_after }
}

// ---------------------------------------------------------------------------------------------
// Go durations (OpenAI, Groq resets)

#[test]
fn go_durations_of_every_unit_parse() {
    let cases: &[(&str, Duration)] = &[
        ("0", Duration::ZERO),
        ("0s", Duration::ZERO),
        ("1s", secs(1)),
        ("6m0s", secs(360)),
        ("12ms", ms(12)),
        ("2m59.56s", ms(179_560)),
        ("1h2m", secs(3_720)),
        ("1h2m3s", secs(3_723)),
        ("500us", Duration::from_micros(500)),
        ("500µs", Duration::from_micros(500)), // U+00B5 MICRO SIGN
        ("500μs", Duration::from_micros(500)), // U+03BC GREEK SMALL LETTER MU
        ("7ns", Duration::from_nanos(7)),
        ("1.5s", ms(1_500)),
        (".5s", ms(500)),
        ("1.s", secs(1)),
        ("7.66s", ms(7_660)),
        ("0.000000001s", Duration::from_nanos(1)),
        ("1.0000000009s", Duration::from_nanos(1_000_000_000)), // below 1 ns: truncated
        ("1m1m", secs(120)),                                    // Go adds repeated units
        ("2562047h47m16.854775807s", Duration::new(9_223_372_036, 854_775_807)),
    ];
    for &(text, want) in cases {
        assert_eq!(parse_go_duration(text.as_bytes()), Some(want), "{text}");
    }
}

#[test]
fn go_durations_that_are_not_accepted() {
    for text in [
        "",
        "12",
        "1",
        "s",
        ".s",
        "1x",
        "1S",
        "1 s",
        " 1s",
        "-1s",
        "+1s",
        "1s ",
        "1.2.3s",
        "1e3s",
        "ms",
        "1hh",
        "99999999999999999999999999999999999999999h",
    ] {
        assert_eq!(parse_go_duration(text.as_bytes()), None, "{text:?}");
    }
    assert_eq!(parse_go_duration(&[0x31, 0xb5, 0x73]), None, "a lone 0xb5 byte is no µ");
}

#[test]
fn go_durations_format_as_go_does_and_read_back() {
    let cases: &[(Duration, &str)] = &[
        (Duration::ZERO, "0s"),
        (Duration::from_nanos(7), "7ns"),
        (Duration::from_micros(500), "500µs"),
        (Duration::from_nanos(1_500), "1.5µs"),
        (ms(12), "12ms"),
        (Duration::from_micros(12_345), "12.345ms"),
        (secs(1), "1s"),
        (ms(1_500), "1.5s"),
        (secs(360), "6m0s"),
        (ms(179_560), "2m59.56s"),
        (secs(3_720), "1h2m0s"),
        (Duration::new(3_600 * 72 + 3 * 60, 500_000_000), "72h3m0.5s"),
        (Duration::new(1, 1), "1.000000001s"),
    ];
    for &(d, want) in cases {
        assert_eq!(GoDuration(d).to_string(), want);
        assert_eq!(parse_go_duration(want.as_bytes()), Some(d), "{want}");
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 3339 and HTTP dates (Anthropic resets, retry-after)

#[test]
fn rfc3339_instants_parse_with_offsets_and_fractions() {
    let t = 1_764_597_909; // 2025-12-01T14:05:09Z
    let cases: &[(&str, Duration)] = &[
        ("2025-12-01T14:05:09Z", secs(t)),
        ("2025-12-01t14:05:09z", secs(t)),
        ("2025-12-01 14:05:09Z", secs(t)),
        ("2025-12-01T15:05:09+01:00", secs(t)),
        ("2025-12-01T09:35:09-04:30", secs(t)),
        ("2025-12-01T14:05:09.25Z", Duration::new(t, 250_000_000)),
        ("2025-12-01T14:05:09.123456789123Z", Duration::new(t, 123_456_789)),
        ("1970-01-01T00:00:00Z", Duration::ZERO),
        ("2024-02-29T00:00:00Z", secs(1_709_164_800)),
        ("2000-03-01T00:00:00Z", secs(951_868_800)),
        ("2016-12-31T23:59:60Z", secs(1_483_228_800)), // a leap second counts as the next
    ];
    for &(text, want) in cases {
        assert_eq!(parse_rfc3339(text.as_bytes()), Some(want), "{text}");
    }
}

#[test]
fn rfc3339_instants_that_are_not_accepted() {
    for text in [
        "",
        "2025-12-01",
        "2025-12-01T14:05:09",       // no offset
        "2025-12-01T14:05Z",         // no seconds
        "2025-13-01T14:05:09Z",      // month 13
        "2025-02-29T14:05:09Z",      // not a leap year
        "1900-02-29T00:00:00Z",      // not a leap year either
        "2025-12-01T24:00:00Z",      // hour 24
        "2025-12-01T14:60:00Z",      // minute 60
        "2025-12-01T14:05:61Z",      // second 61
        "2025-12-01T14:05:09.Z",     // empty fraction
        "2025-12-01T14:05:09+0100",  // offset without colon
        "2025-12-01T14:05:09+24:00", // offset hour 24
        "1969-12-31T23:59:59Z",      // before the epoch
        "1970-01-01T00:00:00+00:01", // before the epoch, by the offset
        "+2025-12-01T14:05:09Z",     // sign
        "2025-12-01T14:05:09Z ",     // trailing text
        "２025-12-01T14:05:09Z",     // a non-ASCII digit
    ] {
        assert_eq!(parse_rfc3339(text.as_bytes()), None, "{text:?}");
    }
}

#[test]
fn http_dates_parse_in_the_imf_fixdate_form() {
    assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(secs(784_111_777)));
    assert_eq!(parse_http_date(b"Mon, 01 Dec 2025 14:05:09 GMT"), Some(secs(1_764_597_909)));
    for text in [
        "Sunday, 06-Nov-94 08:49:37 GMT", // RFC 850: obsolete, not read
        "Sun Nov  6 08:49:37 1994",       // asctime: obsolete, not read
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nox 1994 08:49:37 GMT",
        "",
    ] {
        assert_eq!(parse_http_date(text.as_bytes()), None, "{text:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI

const OPENAI: &[(&str, &str)] = &[
    ("date", "Tue, 01 Dec 2026 14:06:28 GMT"),
    ("content-type", "application/json"),
    ("transfer-encoding", "chunked"),
    ("connection", "keep-alive"),
    ("access-control-expose-headers", "X-Request-ID"),
    ("openai-organization", "org-abc"),
    ("openai-processing-ms", "812"),
    ("openai-version", "2020-10-01"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
    ("X-RateLimit-Limit-Requests", "500"),
    ("x-ratelimit-limit-tokens", "30000"),
    ("x-ratelimit-remaining-requests", "499"),
    ("x-ratelimit-remaining-tokens", "29422"),
    ("x-ratelimit-reset-requests", "120ms"),
    ("x-ratelimit-reset-tokens", "1.156s"),
    ("x-request-id", "req_123"),
    ("cf-cache-status", "DYNAMIC"),
    ("server", "cloudflare"),
    ("cf-ray", "8f00000000000000-AMS"),
    ("alt-svc", "h3=\":443\"; ma=86400"),
];

#[test]
fn openai_headers_give_requests_and_tokens_per_minute() {
    let report = parse(Provider::OpenAi, OPENAI);
    assert_eq!(report.provider, Provider::OpenAi);
    assert_eq!(
        report.observed,
        [
            obs(Quota::Requests, MINUTE, Some(500), Some(499), Some(ms(120))),
            obs(Quota::Tokens, MINUTE, Some(30_000), Some(29_422), Some(ms(1_156))),
        ]
    );
    assert_eq!(report.retry_after, None);
    assert_eq!(report.ignored, []);
    assert_eq!(Provider::detect(OPENAI.iter().map(|h| h.0)), Some(Provider::OpenAi));
}

#[test]
fn openai_reset_that_is_not_a_go_duration_is_malformed() {
    // A bare number could be seconds or milliseconds: not guessed.
    let report = parse(Provider::OpenAi, &[("x-ratelimit-reset-tokens", "20")]);
    assert_eq!(report.observed, []);
    assert_eq!(report.ignored, [ignored("x-ratelimit-reset-tokens", IgnoreReason::Malformed)]);
}

#[test]
fn values_are_trimmed_of_spaces_and_tabs() {
    let report = parse(
        Provider::OpenAi,
        &[("x-ratelimit-remaining-tokens", " \t42 "), ("x-ratelimit-reset-tokens", " 6m0s\t")],
    );
    assert_eq!(report.observed, [obs(Quota::Tokens, MINUTE, None, Some(42), Some(secs(360)))]);
}

#[test]
fn byte_values_and_owned_strings_are_accepted() {
    let bytes: [(&[u8], &[u8]); 1] = [(b"x-ratelimit-limit-tokens", b"10")];
    let report = parse_headers(Provider::OpenAi, bytes, None);
    assert_eq!(report.observed[0].limit, Some(10));
    let owned = vec![(String::from("x-ratelimit-limit-tokens"), String::from("11"))];
    let report = parse_headers(Provider::OpenAi, owned, None);
    assert_eq!(report.observed[0].limit, Some(11));
}

#[test]
fn non_text_and_malformed_counts_are_ignored() {
    let headers: [(&[u8], &[u8]); 5] = [
        (b"x-ratelimit-limit-tokens", b"\xff\xfe"),
        (b"x-ratelimit-remaining-tokens", b"-5"),
        (b"x-ratelimit-limit-requests", b"1e3"),
        (b"x-ratelimit-remaining-requests", b"99999999999999999999999"),
        (b"x-ratelimit-reset-requests", b""),
    ];
    let report = parse_headers(Provider::OpenAi, headers, None);
    assert_eq!(report.observed, []);
    assert_eq!(
        report.ignored.iter().map(|i| i.reason).collect::<Vec<_>>(),
        [IgnoreReason::Malformed; 5]
    );
}

#[test]
fn a_header_repeated_with_the_same_value_is_used() {
    let report = parse(
        Provider::OpenAi,
        &[("x-ratelimit-limit-tokens", "100"), ("X-RATELIMIT-LIMIT-TOKENS", "100")],
    );
    assert_eq!(report.observed, [obs(Quota::Tokens, MINUTE, Some(100), None, None)]);
    assert_eq!(report.ignored, []);
}

#[test]
fn a_header_repeated_with_another_value_is_not_used_at_all() {
    let report = parse(
        Provider::OpenAi,
        &[
            ("x-ratelimit-remaining-tokens", "100"),
            ("x-ratelimit-limit-tokens", "1000"),
            ("X-RateLimit-Remaining-Tokens", "90"),
            ("x-ratelimit-remaining-tokens", "100"),
        ],
    );
    assert_eq!(report.observed, [obs(Quota::Tokens, MINUTE, Some(1_000), None, None)]);
    assert_eq!(
        report.ignored,
        [ignored("x-ratelimit-remaining-tokens", IgnoreReason::Conflicting)],
        "listed once, in lower case"
    );
}

#[test]
fn a_malformed_repeat_leaves_the_valid_value_in_place() {
    let report = parse(
        Provider::OpenAi,
        &[("x-ratelimit-remaining-tokens", "abc"), ("x-ratelimit-remaining-tokens", "100")],
    );
    assert_eq!(report.observed, [obs(Quota::Tokens, MINUTE, None, Some(100), None)]);
    assert_eq!(report.ignored, [ignored("x-ratelimit-remaining-tokens", IgnoreReason::Malformed)]);
}

#[test]
fn remaining_above_limit_drops_both() {
    let report = parse(
        Provider::OpenAi,
        &[
            ("x-ratelimit-limit-tokens", "1000"),
            ("x-ratelimit-remaining-tokens", "1001"),
            ("x-ratelimit-reset-tokens", "1s"),
            ("x-ratelimit-limit-requests", "10"),
            ("x-ratelimit-remaining-requests", "10"),
        ],
    );
    assert_eq!(
        report.observed,
        [
            obs(Quota::Requests, MINUTE, Some(10), Some(10), None),
            obs(Quota::Tokens, MINUTE, None, None, Some(secs(1))),
        ]
    );
    assert_eq!(
        report.ignored,
        [
            ignored("x-ratelimit-limit-tokens", IgnoreReason::Contradicts),
            ignored("x-ratelimit-remaining-tokens", IgnoreReason::Contradicts),
        ]
    );
}

#[test]
fn unknown_rate_limit_names_are_reported_and_other_headers_are_not() {
    let report = parse(
        Provider::OpenAi,
        &[
            ("x-ratelimit-limit-tokens-minute", "5"), // Mistral's name, not OpenAI's
            ("anthropic-ratelimit-requests-limit", "5"),
            ("x-ratelimit-limit-images", "5"),
            ("x-request-id", "5"),
            ("ratelimit", "limit=5"),
        ],
    );
    assert_eq!(report.observed, []);
    assert_eq!(
        report.ignored,
        [
            ignored("x-ratelimit-limit-tokens-minute", IgnoreReason::Unrecognized),
            ignored("anthropic-ratelimit-requests-limit", IgnoreReason::Unrecognized),
            ignored("x-ratelimit-limit-images", IgnoreReason::Unrecognized),
        ]
    );
}

#[test]
fn no_headers_is_an_empty_report() {
    assert_eq!(parse(Provider::Anthropic, &[]), HeaderReport::empty(Provider::Anthropic));
}

// ---------------------------------------------------------------------------------------------
// retry-after-ms and retry-after (every provider)

#[test]
fn retry_after_ms_comes_before_retry_after() {
    for provider in [Provider::OpenAi, Provider::Azure, Provider::Anthropic] {
        let report = parse(provider, &[("retry-after", "3"), ("retry-after-ms", "2500")]);
        assert_eq!(report.retry_after, Some(ms(2_500)), "{provider:?}");
    }
    let report = parse(Provider::OpenAi, &[("retry-after-ms", "12.5")]);
    assert_eq!(report.retry_after, Some(Duration::from_micros(12_500)));
}

#[test]
fn retry_after_in_seconds() {
    assert_eq!(parse(Provider::Anthropic, &[("Retry-After", "20")]).retry_after, Some(secs(20)));
    assert_eq!(parse(Provider::OpenAi, &[("retry-after", "1.5")]).retry_after, Some(ms(1_500)));
    assert_eq!(parse(Provider::OpenAi, &[("retry-after", "0")]).retry_after, Some(Duration::ZERO));
}

#[test]
fn a_malformed_retry_after_ms_falls_back_to_retry_after() {
    let report = parse(Provider::Azure, &[("retry-after-ms", "soon"), ("retry-after", "4")]);
    assert_eq!(report.retry_after, Some(secs(4)));
    assert_eq!(report.ignored, [ignored("retry-after-ms", IgnoreReason::Malformed)]);
}

#[test]
fn retry_after_as_an_http_date_needs_the_current_time() {
    let headers = [("retry-after", "Tue, 01 Dec 2026 14:07:00 GMT")];
    let now = secs(1_796_134_000); // 2026-12-01T14:06:40Z
    let report = parse_headers(Provider::OpenAi, headers, Some(now));
    assert_eq!(report.retry_after, Some(secs(20)));
    let report = parse_headers(Provider::OpenAi, headers, Some(now + secs(60)));
    assert_eq!(report.retry_after, Some(Duration::ZERO), "a date already past: retry now");
    let report = parse_headers(Provider::OpenAi, headers, None);
    assert_eq!(report.retry_after, None);
    assert_eq!(report.ignored, [ignored("retry-after", IgnoreReason::NeedsClock)]);
}

#[test]
fn a_negative_or_garbage_retry_after_is_malformed() {
    for value in ["-1", "soon", "1s", "", "Tue, 01 Dec 2026"] {
        let report = parse(Provider::OpenAi, &[("retry-after", value)]);
        assert_eq!(report.retry_after, None, "{value:?}");
        assert_eq!(report.ignored, [ignored("retry-after", IgnoreReason::Malformed)], "{value:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Azure OpenAI

#[test]
fn azure_headers_use_integer_seconds_and_retry_after_ms() {
    let report = parse(
        Provider::Azure,
        &[
            ("x-ms-region", "East US"),
            ("apim-request-id", "abc"),
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", "59"),
            ("x-ratelimit-reset-requests", "1"),
            ("x-ratelimit-limit-tokens", "10000"),
            ("x-ratelimit-remaining-tokens", "9000"),
            ("x-ratelimit-reset-tokens", "6"),
            ("retry-after-ms", "600"),
        ],
    );
    assert_eq!(
        report.observed,
        [
            obs(Quota::Requests, MINUTE, Some(60), Some(59), Some(secs(1))),
            obs(Quota::Tokens, MINUTE, Some(10_000), Some(9_000), Some(secs(6))),
        ]
    );
    assert_eq!(report.retry_after, Some(ms(600)));
    assert_eq!(report.ignored, []);
}

#[test]
fn azure_minus_one_means_unknown() {
    let report = parse(
        Provider::Azure,
        &[
            ("x-ratelimit-remaining-tokens", "-1"),
            ("x-ratelimit-reset-tokens", "-1"),
            ("x-ratelimit-remaining-requests", "12"),
        ],
    );
    assert_eq!(report.observed, [obs(Quota::Requests, MINUTE, None, Some(12), None)]);
    assert_eq!(
        report.ignored,
        [
            ignored("x-ratelimit-remaining-tokens", IgnoreReason::Unknown),
            ignored("x-ratelimit-reset-tokens", IgnoreReason::Unknown),
        ]
    );
}

#[test]
fn azure_also_reads_a_go_duration_reset() {
    // Unambiguous, so read rather than ignored (OpenAI-compatible gateways in front of Azure).
    let report = parse(Provider::Azure, &[("x-ratelimit-reset-tokens", "1m30s")]);
    assert_eq!(report.observed[0].reset_after, Some(secs(90)));
    let report = parse(Provider::Azure, &[("x-ratelimit-reset-tokens", "2.5")]);
    assert_eq!(report.observed[0].reset_after, Some(ms(2_500)));
}

// ---------------------------------------------------------------------------------------------
// Anthropic

const ANTHROPIC_NOW: Duration = Duration::from_secs(1_796_134_000); // 2026-12-01T14:06:40Z

fn anthropic_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("date", "Tue, 01 Dec 2026 14:06:40 GMT"),
        ("content-type", "application/json"),
        ("request-id", "req_01"),
        ("anthropic-organization-id", "org"),
        ("anthropic-ratelimit-requests-limit", "4000"),
        ("anthropic-ratelimit-requests-remaining", "3999"),
        ("anthropic-ratelimit-requests-reset", "2026-12-01T14:06:41Z"),
        ("anthropic-ratelimit-tokens-limit", "480000"),
        ("anthropic-ratelimit-tokens-remaining", "477000"),
        ("anthropic-ratelimit-tokens-reset", "2026-12-01T14:06:41.5Z"),
        ("anthropic-ratelimit-input-tokens-limit", "400000"),
        ("anthropic-ratelimit-input-tokens-remaining", "399000"),
        ("anthropic-ratelimit-input-tokens-reset", "2026-12-01T14:06:42Z"),
        ("anthropic-ratelimit-output-tokens-limit", "80000"),
        ("anthropic-ratelimit-output-tokens-remaining", "78000"),
        ("anthropic-ratelimit-output-tokens-reset", "2026-12-01T15:06:50+01:00"),
        ("via", "1.1 google"),
        ("cf-cache-status", "DYNAMIC"),
        ("server", "cloudflare"),
    ]
}

#[test]
fn anthropic_headers_give_four_quotas_with_rfc3339_resets() {
    let headers = anthropic_headers();
    let report = parse_headers(Provider::Anthropic, headers.iter().copied(), Some(ANTHROPIC_NOW));
    let rounded = |mut o: Observed| {
        o.remaining_tolerance = 500;
        o
    };
    assert_eq!(
        report.observed,
        [
            obs(Quota::Requests, MINUTE, Some(4_000), Some(3_999), Some(secs(1))),
            rounded(obs(Quota::Tokens, MINUTE, Some(480_000), Some(477_000), Some(ms(1_500)))),
            rounded(obs(Quota::InputTokens, MINUTE, Some(400_000), Some(399_000), Some(secs(2)))),
            rounded(obs(Quota::OutputTokens, MINUTE, Some(80_000), Some(78_000), Some(secs(10)))),
        ]
    );
    assert_eq!(report.ignored, []);
    assert_eq!(report.get(Quota::InputTokens).unwrap().remaining_at_least(), Some(398_500));
    assert_eq!(report.get(Quota::Requests).unwrap().remaining_at_least(), Some(3_999));
    assert_eq!(Provider::detect(headers.iter().map(|h| h.0)), Some(Provider::Anthropic));
}

#[test]
fn anthropic_resets_need_the_current_time() {
    let headers = anthropic_headers();
    let report = parse_headers(Provider::Anthropic, headers.iter().copied(), None);
    assert!(report.observed.iter().all(|o| o.reset_after.is_none() && o.limit.is_some()));
    assert_eq!(report.ignored.len(), 4);
    assert!(report.ignored.iter().all(|i| i.reason == IgnoreReason::NeedsClock));
    assert_eq!(report.ignored[0].name, "anthropic-ratelimit-requests-reset");
}

#[test]
fn anthropic_reset_in_the_past_is_zero_and_malformed_reset_is_ignored() {
    let report = parse_headers(
        Provider::Anthropic,
        [
            ("anthropic-ratelimit-requests-reset", "2026-12-01T14:00:00Z"),
            ("anthropic-ratelimit-tokens-reset", "in 5 seconds"),
            ("anthropic-ratelimit-input-tokens-reset", "1s"),
        ],
        Some(ANTHROPIC_NOW),
    );
    assert_eq!(report.observed, [obs(Quota::Requests, MINUTE, None, None, Some(Duration::ZERO))]);
    assert_eq!(
        report.ignored,
        [
            ignored("anthropic-ratelimit-tokens-reset", IgnoreReason::Malformed),
            ignored("anthropic-ratelimit-input-tokens-reset", IgnoreReason::Malformed),
        ]
    );
}

#[test]
fn anthropic_rounded_remaining_may_pass_its_limit_by_the_rounding_only() {
    // 1 300 tokens left of 1 500 is reported as 1 000; 1 499 left as 1 000 too — and 1 500 of
    // 1 500 can be reported as 2 000: not a contradiction, clamped to the limit.
    let report = parse_headers(
        Provider::Anthropic,
        [
            ("anthropic-ratelimit-output-tokens-limit", "1500"),
            ("anthropic-ratelimit-output-tokens-remaining", "2000"),
            ("anthropic-ratelimit-input-tokens-limit", "1500"),
            ("anthropic-ratelimit-input-tokens-remaining", "3000"),
            ("anthropic-ratelimit-requests-limit", "5"),
            ("anthropic-ratelimit-requests-remaining", "6"), // requests are exact
        ],
        Some(ANTHROPIC_NOW),
    );
    let mut output = obs(Quota::OutputTokens, MINUTE, Some(1_500), Some(1_500), None);
    output.remaining_tolerance = 500;
    assert_eq!(report.observed, [output]);
    assert_eq!(
        report.ignored.iter().map(|i| (i.name.as_str(), i.reason)).collect::<Vec<_>>(),
        [
            ("anthropic-ratelimit-requests-limit", IgnoreReason::Contradicts),
            ("anthropic-ratelimit-requests-remaining", IgnoreReason::Contradicts),
            ("anthropic-ratelimit-input-tokens-limit", IgnoreReason::Contradicts),
            ("anthropic-ratelimit-input-tokens-remaining", IgnoreReason::Contradicts),
        ]
    );
}

#[test]
fn anthropic_retry_after_is_seconds() {
    let report = parse_headers(
        Provider::Anthropic,
        [("retry-after", "17"), ("anthropic-ratelimit-tokens-remaining", "0")],
        Some(ANTHROPIC_NOW),
    );
    assert_eq!(report.retry_after, Some(secs(17)));
    assert_eq!(report.observed[0].remaining, Some(0));
}

#[test]
fn anthropic_does_not_send_openai_names() {
    let report = parse(Provider::Anthropic, &[("x-ratelimit-limit-tokens", "5")]);
    assert_eq!(report.observed, []);
    assert_eq!(report.ignored, [ignored("x-ratelimit-limit-tokens", IgnoreReason::Unrecognized)]);
}

// ---------------------------------------------------------------------------------------------
// Groq

#[test]
fn groq_request_limit_is_per_day() {
    let headers = [
        ("x-groq-region", "us-east-1"),
        ("x-ratelimit-limit-requests", "14400"),
        ("x-ratelimit-limit-tokens", "18000"),
        ("x-ratelimit-remaining-requests", "14370"),
        ("x-ratelimit-remaining-tokens", "17997"),
        ("x-ratelimit-reset-requests", "2m59.56s"),
        ("x-ratelimit-reset-tokens", "7.66s"),
        ("retry-after", "2"),
    ];
    let report = parse_headers(Provider::Groq, headers, None);
    assert_eq!(
        report.observed,
        [
            obs(Quota::Requests, DAY, Some(14_400), Some(14_370), Some(ms(179_560))),
            obs(Quota::Tokens, MINUTE, Some(18_000), Some(17_997), Some(ms(7_660))),
        ]
    );
    assert_eq!(report.retry_after, Some(secs(2)));
    assert_eq!(Provider::detect(headers.map(|h| h.0)), Some(Provider::Groq));
}

// ---------------------------------------------------------------------------------------------
// Mistral

#[test]
fn mistral_headers_give_per_minute_limits_without_resets() {
    let headers = [
        ("x-ratelimit-limit-req-minute", "60"),
        ("x-ratelimit-remaining-req-minute", "58"),
        ("x-ratelimit-limit-tokens-minute", "500000"),
        ("x-ratelimit-remaining-tokens-minute", "499000"),
        ("x-ratelimit-reset-tokens", "1s"), // not a Mistral name
    ];
    let report = parse_headers(Provider::Mistral, headers, None);
    assert_eq!(
        report.observed,
        [
            obs(Quota::Requests, MINUTE, Some(60), Some(58), None),
            obs(Quota::Tokens, MINUTE, Some(500_000), Some(499_000), None),
        ]
    );
    assert_eq!(report.ignored, [ignored("x-ratelimit-reset-tokens", IgnoreReason::Unrecognized)]);
    assert_eq!(Provider::detect(headers.map(|h| h.0)), Some(Provider::Mistral));
}

// ---------------------------------------------------------------------------------------------
// Detection

#[test]
fn detection_from_names() {
    let cases: &[(&[&str], Option<Provider>)] = &[
        (&["Anthropic-RateLimit-Tokens-Remaining"], Some(Provider::Anthropic)),
        (&["x-ratelimit-remaining-tokens-minute"], Some(Provider::Mistral)),
        (&["x-ratelimit-limit-req-minute"], Some(Provider::Mistral)),
        (&["x-groq-region", "x-ratelimit-limit-requests"], Some(Provider::Groq)),
        (&["x-ratelimit-limit-requests", "x-ms-region"], Some(Provider::Azure)),
        (&["apim-request-id"], Some(Provider::Azure)),
        (&["x-ratelimit-remaining-tokens", "retry-after-ms"], Some(Provider::Azure)),
        (&["openai-processing-ms"], Some(Provider::OpenAi)),
        (&["x-ratelimit-reset-tokens"], Some(Provider::OpenAi)),
        (&["retry-after", "content-type"], None),
        (&[], None),
    ];
    for &(names, want) in cases {
        assert_eq!(Provider::detect(names), want, "{names:?}");
    }
}
