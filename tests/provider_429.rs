//! 429 classification: retry later (headers first, then body hints), never fits, quota
//! exhausted — one test per rule, with the bodies providers send.

use core::time::Duration;

use tollgate::provider::{HeaderReport, Provider, Throttled, classify_429, parse_headers};

fn headers(provider: Provider, h: &[(&str, &str)]) -> HeaderReport {
    parse_headers(provider, h.iter().copied(), None)
}

fn none(provider: Provider) -> HeaderReport {
    HeaderReport::empty(provider)
}

fn retry(after: Option<Duration>) -> Throttled {
    Throttled::RetryLater { after }
}

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

const OPENAI_TPM: &[u8] = br#"{
    "error": {
        "message": "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29802, Requested 832. Please try again in 1.268s. Visit https://platform.openai.com/account/rate-limits to learn more.",
        "type": "tokens",
        "param": null,
        "code": "rate_limit_exceeded"
    }
}"#;

const OPENAI_TOO_LARGE: &[u8] = br#"{"error":{"message":"Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Requested 36055. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;

const OPENAI_QUOTA: &[u8] = br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;

const GEMINI_PER_MINUTE: &[u8] = br#"{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
          {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"},
            "quotaValue": "15"
          }
        ]
      },
      {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "30s"
      }
    ]
  }
}"#;

fn gemini_per_day(retry_delay: &str) -> Vec<u8> {
    String::from_utf8(GEMINI_PER_MINUTE.to_vec())
        .unwrap()
        .replace("PerMinutePerProject", "PerDayPerProject")
        .replace("\"30s\"", retry_delay)
        .into_bytes()
}

#[test]
fn retry_after_ms_header_first() {
    let report = headers(Provider::Azure, &[("retry-after-ms", "750"), ("retry-after", "1")]);
    assert_eq!(classify_429(&report, OPENAI_TPM), retry(ms(750)));
}

#[test]
fn retry_after_header_before_the_body() {
    let report = headers(Provider::OpenAi, &[("retry-after", "2")]);
    assert_eq!(classify_429(&report, OPENAI_TPM), retry(ms(2_000)));
}

#[test]
fn openai_body_hints_in_every_unit() {
    for (hint, want) in [
        ("634ms", ms(634)),
        ("1.5s", ms(1_500)),
        ("20s", ms(20_000)),
        ("6m0s", ms(360_000)),
        ("1m30.5s", ms(90_500)),
    ] {
        let body = format!(
            r#"{{"error":{{"message":"Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in {hint}. Visit https://platform.openai.com/account/rate-limits","code":"rate_limit_exceeded"}}}}"#
        );
        assert_eq!(classify_429(&none(Provider::OpenAi), body.as_bytes()), retry(want), "{hint}");
    }
}

#[test]
fn body_hints_in_words() {
    let azure = br#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-06-01 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#;
    assert_eq!(classify_429(&none(Provider::Azure), azure), retry(ms(6_000)));
    let plain = b"Too many requests, try again in 250 milliseconds";
    assert_eq!(classify_429(&none(Provider::OpenAi), plain), retry(ms(250)));
    let plain = b"Slow down. Try again in 2 minutes.";
    assert_eq!(classify_429(&none(Provider::OpenAi), plain), retry(ms(120_000)));
}

#[test]
fn gemini_retry_delay() {
    assert_eq!(classify_429(&none(Provider::OpenAi), GEMINI_PER_MINUTE), retry(ms(30_000)));
    let body = String::from_utf8(GEMINI_PER_MINUTE.to_vec()).unwrap().replace("30s", "1.5s");
    assert_eq!(classify_429(&none(Provider::OpenAi), body.as_bytes()), retry(ms(1_500)));
    // JSON allows any space around the colon.
    let body = br#"{"retryDelay"   :
        "45s"}"#;
    assert_eq!(classify_429(&none(Provider::OpenAi), body), retry(ms(45_000)));
}

#[test]
fn gemini_per_day_quota_is_exhausted_with_its_reset() {
    let body = gemini_per_day("\"3600s\"");
    assert_eq!(
        classify_429(&none(Provider::OpenAi), &body),
        Throttled::QuotaExhausted { reset_after: ms(3_600_000) }
    );
    let body = gemini_per_day("null");
    assert_eq!(
        classify_429(&none(Provider::OpenAi), &body),
        Throttled::QuotaExhausted { reset_after: None }
    );
}

#[test]
fn openai_request_too_large_never_fits() {
    assert_eq!(
        classify_429(&none(Provider::OpenAi), OPENAI_TOO_LARGE),
        Throttled::NeverFits { requested: Some(36_055), limit: Some(30_000) }
    );
    // Even with a retry-after: waiting cannot make it fit.
    let report = headers(Provider::OpenAi, &[("retry-after", "1")]);
    assert_eq!(
        classify_429(&report, OPENAI_TOO_LARGE),
        Throttled::NeverFits { requested: Some(36_055), limit: Some(30_000) }
    );
    assert_eq!(
        classify_429(&none(Provider::OpenAi), b"Request too large."),
        Throttled::NeverFits { requested: None, limit: None }
    );
}

#[test]
fn requested_above_limit_never_fits_whatever_the_wording() {
    let body =
        b"on tokens per min (TPM): Limit 10000, Used 0, Requested 12000. Please try again in 1s.";
    assert_eq!(
        classify_429(&none(Provider::OpenAi), body),
        Throttled::NeverFits { requested: Some(12_000), limit: Some(10_000) }
    );
}

#[test]
fn a_rate_limit_with_limit_and_requested_that_fit_is_retry_later() {
    assert_eq!(classify_429(&none(Provider::OpenAi), OPENAI_TPM), retry(ms(1_268)));
}

#[test]
fn openai_insufficient_quota_is_exhausted_even_with_retry_after() {
    let report = headers(Provider::OpenAi, &[("retry-after", "1")]);
    assert_eq!(
        classify_429(&report, OPENAI_QUOTA),
        Throttled::QuotaExhausted { reset_after: None }
    );
    assert_eq!(
        classify_429(&none(Provider::OpenAi), OPENAI_QUOTA),
        Throttled::QuotaExhausted { reset_after: None }
    );
}

#[test]
fn a_spend_limit_without_retry_after_is_exhausted() {
    for body in [
        &br#"{"error":{"type":"rate_limit_error","message":"You have reached your spend limit for this workspace."}}"#[..],
        br#"{"error":{"message":"Monthly usage limit reached. Check your billing settings."}}"#,
        br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details."}}"#,
    ] {
        assert_eq!(
            classify_429(&none(Provider::Anthropic), body),
            Throttled::QuotaExhausted { reset_after: None },
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn a_spend_limit_with_retry_after_is_retry_later() {
    // The provider says when to come back: a temporary quota, not a spent one.
    let report = headers(Provider::Anthropic, &[("retry-after", "30")]);
    let body = br#"{"error":{"message":"You have reached your spend limit, retry later."}}"#;
    assert_eq!(classify_429(&report, body), retry(ms(30_000)));
}

#[test]
fn an_exhausted_quota_per_day_in_the_headers_is_exhausted_until_its_reset() {
    let report = headers(
        Provider::Groq,
        &[
            ("x-ratelimit-limit-requests", "14400"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "2h5m"),
            ("retry-after", "7500"),
        ],
    );
    assert_eq!(
        classify_429(&report, b"{}"),
        Throttled::QuotaExhausted { reset_after: ms(7_500_000) }
    );
}

#[test]
fn without_retry_after_the_reset_of_an_exhausted_minute_quota_is_used() {
    let report = headers(
        Provider::OpenAi,
        &[
            ("x-ratelimit-remaining-requests", "3"),
            ("x-ratelimit-reset-requests", "40s"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "2.5s"),
        ],
    );
    assert_eq!(classify_429(&report, b"rate limited"), retry(ms(2_500)));
}

#[test]
fn nothing_known_is_retry_later_without_a_delay() {
    assert_eq!(classify_429(&none(Provider::Mistral), b""), retry(None));
    assert_eq!(classify_429(&none(Provider::Mistral), b"<html>429</html>"), retry(None));
    assert_eq!(classify_429(&none(Provider::Mistral), &[0xff; 300]), retry(None));
    assert_eq!(classify_429(&none(Provider::Mistral), b"try again in "), retry(None));
    assert_eq!(classify_429(&none(Provider::Mistral), b"try again in 5 fortnights"), retry(None));
    assert_eq!(classify_429(&none(Provider::Mistral), br#""retryDelay": 5"#), retry(None));
}

#[test]
fn openai_per_day_limit_is_exhausted_until_the_hint() {
    let body = br#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-abc on requests per day (RPD): Limit 10000, Used 10000, Requested 1. Please try again in 8.64s.","type":"requests","code":"rate_limit_exceeded"}}"#;
    assert_eq!(
        classify_429(&none(Provider::OpenAi), body),
        Throttled::QuotaExhausted { reset_after: ms(8_640) }
    );
    let report = headers(Provider::OpenAi, &[("retry-after", "60")]);
    assert_eq!(classify_429(&report, body), Throttled::QuotaExhausted { reset_after: ms(60_000) });
}

#[test]
fn a_request_too_large_for_a_day_quota_never_fits() {
    let body =
        b"Request too large for gpt-4o on tokens per day (TPD): Limit 90000, Requested 100000.";
    let too_large = Throttled::NeverFits { requested: Some(100_000), limit: Some(90_000) };
    assert_eq!(classify_429(&none(Provider::OpenAi), body), too_large);
    let report = headers(
        Provider::Groq,
        &[("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "1h")],
    );
    assert_eq!(classify_429(&report, body), too_large);
}
