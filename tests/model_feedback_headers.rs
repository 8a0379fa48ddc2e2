//! The glue from the provider parsers to the model limiter, on a manual clock: real header
//! sets (OpenAI, Anthropic with input and output limits, Groq's requests per day, Mistral)
//! drain and learn through `observe`; classified 429s pause, exhaust or refuse through
//! `observe_429` and the permit's `throttled`.

use core::time::Duration;

use tollgate::model::{Counts, Limit};
use tollgate::provider::{HeaderReport, Provider, Quota, Throttled, classify_429, parse_headers};
use tollgate::{Error, Instant, ManualClock, ModelRateLimiter, RateLimitConfig};

const MINUTE: Duration = Duration::from_secs(60);

fn limiter(config: RateLimitConfig) -> ModelRateLimiter<ManualClock> {
    ModelRateLimiter::new([("m", config.clone())], config).unwrap()
}

fn used(l: &ModelRateLimiter<ManualClock>) -> Vec<String> {
    l.stats()["m"].limits.iter().map(|l| format!("{} {}", l.name, l.usage)).collect()
}

#[test]
fn openai_headers_drain_both_minute_limits_and_learn_the_lower_token_limit() {
    let l = limiter(RateLimitConfig { rpm: 500, tpm: 40_000, ..Default::default() });
    let p = l.try_acquire("m", 2_000).unwrap();
    let headers = [
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-remaining-requests", "450"),
        ("x-ratelimit-reset-requests", "6s"),
        ("x-ratelimit-limit-tokens", "30000"),
        ("x-ratelimit-remaining-tokens", "12000"),
        ("x-ratelimit-reset-tokens", "2m59.56s"),
    ];
    let report = l.observe("m", &parse_headers(Provider::OpenAi, headers, None)).unwrap();
    assert!(report.unmatched.is_empty() && report.cooldown.is_none() && report.error.is_none());
    // rpm: 499 of room locally, 450 at the provider; tpm: learned 30 000, then 28 000 of
    // room locally, 12 000 there.
    assert_eq!(report.drained.iter().map(|d| d.charged).collect::<Vec<_>>(), [49, 16_000]);
    assert_eq!(report.learned.len(), 1);
    assert_eq!(used(&l), ["rpm 50/500", "tpm 18000/30000"]);
    p.settle(1_500);
    assert_eq!(used(&l), ["rpm 50/500", "tpm 17500/30000"]);
    // Feedback never loosens: a response with more remaining than the local room drains
    // nothing, and a higher limit never goes above the configured one.
    let headers =
        [("x-ratelimit-limit-tokens", "90000"), ("x-ratelimit-remaining-tokens", "90000")];
    let report = l.observe("m", &parse_headers(Provider::OpenAi, headers, None)).unwrap();
    assert!(report.drained.is_empty());
    assert_eq!((report.learned[0].from, report.learned[0].to), (30_000, 40_000));
    assert_eq!(used(&l), ["rpm 50/500", "tpm 17500/40000"]);
}

#[test]
fn anthropic_headers_drain_input_and_output_limits_to_the_least_the_provider_can_have() {
    let config = RateLimitConfig {
        rpm: 50,
        tpm: 1_000_000,
        limits: vec![
            Limit::window("itpm", Counts::InputTokens, 40_000, MINUTE),
            Limit::window("otpm", Counts::OutputTokens, 8_000, MINUTE),
        ],
        ..Default::default()
    };
    let l = limiter(config);
    // The limiter's clock has run for more than a window (a drain cannot be put in a slot
    // before the clock began: in a process's first minute it lasts a whole window).
    l.timer().set(Instant::from_secs(100));
    // RFC 3339 resets need the current time: 2026-01-01T00:00:00Z as the wall clock.
    let now = Some(Duration::from_secs(1_767_225_600));
    let headers = [
        ("anthropic-ratelimit-input-tokens-limit", "40000"),
        ("anthropic-ratelimit-input-tokens-remaining", "30000"),
        ("anthropic-ratelimit-input-tokens-reset", "2026-01-01T00:00:15Z"),
        ("anthropic-ratelimit-output-tokens-limit", "8000"),
        ("anthropic-ratelimit-output-tokens-remaining", "2000"),
        ("anthropic-ratelimit-output-tokens-reset", "2026-01-01T00:00:30Z"),
    ];
    let parsed = parse_headers(Provider::Anthropic, headers, now);
    assert!(parsed.ignored.is_empty(), "{:?}", parsed.ignored);
    let report = l.observe("m", &parsed).unwrap();
    // Rounded to the nearest thousand: at least 29 500 and 1 500 left.
    let drained: Vec<_> = report.drained.iter().map(|d| (&*d.limit, d.charged)).collect();
    assert_eq!(drained, [("itpm", 10_500), ("otpm", 6_500)]);
    assert_eq!(used(&l), ["rpm 0/50", "tpm 0/1000000", "itpm 10500/40000", "otpm 6500/8000"]);
    // Each lasts until about its provider's reset (at most one slot later), no longer.
    l.timer().set(Instant::from_secs(117));
    assert_eq!(used(&l)[2..], ["itpm 0/40000", "otpm 6500/8000"]);
    l.timer().set(Instant::from_secs(132));
    assert_eq!(used(&l)[2..], ["itpm 0/40000", "otpm 0/8000"]);
}

#[test]
fn groq_requests_per_day_match_a_day_limit_and_not_the_minute_one() {
    let config = RateLimitConfig {
        rpm: 30,
        limits: vec![Limit::per_day("rpd", Counts::Requests, 14_400)],
        ..Default::default()
    };
    let l = limiter(config);
    let headers = [
        ("x-ratelimit-limit-requests", "14400"),
        ("x-ratelimit-remaining-requests", "14000"),
        ("x-ratelimit-reset-requests", "2m59.56s"),
    ];
    let report = l.observe("m", &parse_headers(Provider::Groq, headers, None)).unwrap();
    assert_eq!(report.drained.len(), 1);
    assert_eq!((&*report.drained[0].limit, report.drained[0].charged), ("rpd", 400));
    assert_eq!(used(&l), ["rpm 0/30", "tpm 0/200000", "rpd 400/14400"]);
}

#[test]
fn quotas_with_no_local_limit_over_their_window_are_reported_unmatched() {
    // No day limit: Groq's per-day requests apply to nothing (not to rpm).
    let l = limiter(RateLimitConfig { rpm: 30, ..Default::default() });
    let headers =
        [("x-ratelimit-limit-requests", "14400"), ("x-ratelimit-remaining-requests", "1")];
    let report = l.observe("m", &parse_headers(Provider::Groq, headers, None)).unwrap();
    assert_eq!(report.unmatched, [Quota::Requests]);
    assert!(report.drained.is_empty() && report.learned.is_empty());
    assert_eq!(used(&l), ["rpm 0/30", "tpm 0/200000"]);
    // Mistral's per-minute names match rpm and tpm.
    let headers =
        [("x-ratelimit-limit-req-minute", "20"), ("x-ratelimit-remaining-req-minute", "5")];
    let report = l.observe("m", &parse_headers(Provider::Mistral, headers, None)).unwrap();
    assert!(report.unmatched.is_empty());
    assert_eq!(used(&l), ["rpm 15/20", "tpm 0/200000"]);
}

#[test]
fn a_retry_later_429_on_a_permit_cools_the_model_down_by_the_providers_delay() {
    let l = limiter(RateLimitConfig::default());
    let p = l.try_acquire("m", 500).unwrap();
    let headers = [("retry-after-ms", "1500"), ("retry-after", "2")];
    let parsed = parse_headers(Provider::Azure, headers, None);
    let report = p.throttled(&classify_429(&parsed, b"{}"));
    assert_eq!(report.cooldown.unwrap().until, Instant::from_millis(1_500));
    assert_eq!(report.error, None);
    assert_eq!(l.stats()["m"].cooldown_until, Some(Instant::from_millis(1_500)));
    assert_eq!(l.stats()["m"].tokens.used, 0);
    assert_eq!(l.stats()["m"].active.used, 0);
    let Err(Error::RateLimited(r)) = l.try_acquire("m", 1) else { panic!() };
    assert_eq!(r.ready_at(), Instant::from_millis(1_500));
}

#[test]
fn a_429_without_a_delay_cools_down_by_the_configured_default() {
    let l =
        limiter(RateLimitConfig { default_cooldown: Duration::from_secs(4), ..Default::default() });
    let report = l.observe_429("m", &Throttled::RetryLater { after: None }).unwrap();
    assert_eq!(report.cooldown.unwrap().until, Instant::from_secs(4));
}

#[test]
fn an_insufficient_quota_429_makes_admissions_fail_until_resumed() {
    let l = limiter(RateLimitConfig::default());
    let p = l.try_acquire("m", 500).unwrap();
    let body = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    let report = p.throttled(&classify_429(&HeaderReport::empty(Provider::OpenAi), body));
    assert_eq!(report.error, Some(Error::QuotaExhausted { reset_at: None }));
    assert_eq!(report.quota_exhausted, Some(None));
    assert_eq!(l.try_acquire("m", 1).unwrap_err(), Error::QuotaExhausted { reset_at: None });
    l.resume("m").unwrap();
    l.try_acquire("m", 1).unwrap().settle(1);
}

#[test]
fn a_per_day_quota_429_exhausts_until_its_reset() {
    let l = limiter(RateLimitConfig::default());
    let body = br#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"3600s"}]}}"#;
    let throttled = classify_429(&HeaderReport::empty(Provider::OpenAi), body);
    let report = l.observe_429("m", &throttled).unwrap();
    let reset_at = Some(Instant::from_secs(3_600));
    assert_eq!(report.error, Some(Error::QuotaExhausted { reset_at }));
    assert_eq!(l.try_acquire("m", 1).unwrap_err(), Error::QuotaExhausted { reset_at });
    l.timer().set(Instant::from_secs(3_600));
    l.try_acquire("m", 1).unwrap().settle(1);
}

#[test]
fn a_request_too_large_429_is_the_same_error_as_an_estimate_above_the_local_limit() {
    let l = limiter(RateLimitConfig { tpm: 30_000, ..Default::default() });
    let p = l.try_acquire("m", 20_000).unwrap();
    let body = br#"{"error":{"message":"Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 36055.","code":"rate_limit_exceeded"}}"#;
    let report = p.throttled(&classify_429(&HeaderReport::empty(Provider::OpenAi), body));
    let local = l.try_acquire("m", 36_055).unwrap_err();
    assert_eq!(report.error, Some(local));
    assert_eq!(local, Error::InsufficientCapacity { requested: 36_055, capacity: 30_000 });
    // Nothing else changed: no cooldown, other requests go in.
    assert_eq!(report.cooldown, None);
    l.try_acquire("m", 1_000).unwrap().settle(1_000);
}
