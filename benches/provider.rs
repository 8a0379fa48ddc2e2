//! The cost of reading one response's rate-limit headers (`tollgate::provider::parse_headers`)
//! and of classifying one 429 (`classify_429`); the issue's target is ≤ 1 µs per response.
//!
//! - `openai_20_headers`: a realistic OpenAI response, 6 rate-limit headers among 14 others;
//! - `anthropic_27_headers`: an Anthropic response, 12 rate-limit headers (RFC 3339 resets)
//!   and a retry-after among 14 others;
//! - `openai_header_map`: the OpenAI set from an `http::HeaderMap` (feature `http`);
//! - `classify_429_openai` / `classify_429_gemini`: a rate-limit body of each (≈ 300 B and
//!   ≈ 900 B).
//!
//! Before the criterion groups, each header case prints its *best* time per parse over 200
//! batches of 1 000 parses: on a shared machine (other builds on the same cores) criterion's
//! estimate carries their load, and the fastest batch is the closest to the parser's own cost.
//!
//! Run: `cargo bench --bench provider --features http -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use core::hint::black_box;
use core::time::Duration;

use std::time::Instant as StdInstant;

use criterion::{Criterion, criterion_group};
use tollgate::provider::{HeaderReport, Provider, classify_429, parse_headers};

const OPENAI: &[(&str, &str)] = &[
    ("date", "Tue, 01 Dec 2026 14:06:28 GMT"),
    ("content-type", "application/json"),
    ("transfer-encoding", "chunked"),
    ("connection", "keep-alive"),
    ("access-control-expose-headers", "X-Request-ID"),
    ("openai-organization", "org-abc123"),
    ("openai-processing-ms", "812"),
    ("openai-version", "2020-10-01"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
    ("x-ratelimit-limit-requests", "5000"),
    ("x-ratelimit-limit-tokens", "800000"),
    ("x-ratelimit-remaining-requests", "4999"),
    ("x-ratelimit-remaining-tokens", "799422"),
    ("x-ratelimit-reset-requests", "12ms"),
    ("x-ratelimit-reset-tokens", "43ms"),
    ("x-request-id", "req_0123456789abcdef0123456789abcdef"),
    ("cf-cache-status", "DYNAMIC"),
    ("server", "cloudflare"),
    ("cf-ray", "8f0000000000abcd-AMS"),
    ("alt-svc", "h3=\":443\"; ma=86400"),
];

const ANTHROPIC: &[(&str, &str)] = &[
    ("date", "Tue, 01 Dec 2026 14:06:40 GMT"),
    ("content-type", "application/json"),
    ("transfer-encoding", "chunked"),
    ("connection", "keep-alive"),
    ("anthropic-ratelimit-requests-limit", "4000"),
    ("anthropic-ratelimit-requests-remaining", "3999"),
    ("anthropic-ratelimit-requests-reset", "2026-12-01T14:06:41Z"),
    ("anthropic-ratelimit-tokens-limit", "480000"),
    ("anthropic-ratelimit-tokens-remaining", "477000"),
    ("anthropic-ratelimit-tokens-reset", "2026-12-01T14:06:41Z"),
    ("anthropic-ratelimit-input-tokens-limit", "400000"),
    ("anthropic-ratelimit-input-tokens-remaining", "399000"),
    ("anthropic-ratelimit-input-tokens-reset", "2026-12-01T14:06:42Z"),
    ("anthropic-ratelimit-output-tokens-limit", "80000"),
    ("anthropic-ratelimit-output-tokens-remaining", "78000"),
    ("anthropic-ratelimit-output-tokens-reset", "2026-12-01T14:06:50Z"),
    ("retry-after", "1"),
    ("request-id", "req_011CSHoEeqs5C35K2UUqR7Fy"),
    ("anthropic-organization-id", "2a6e9f0c-0000-4000-8000-000000000000"),
    ("via", "1.1 google"),
    ("cf-cache-status", "DYNAMIC"),
    ("x-robots-tag", "none"),
    ("server", "cloudflare"),
    ("cf-ray", "8f0000000000abcd-AMS"),
    ("content-encoding", "gzip"),
    ("vary", "Accept-Encoding"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
];

const NOW: Duration = Duration::from_secs(1_796_134_000); // 2026-12-01T14:06:40Z

const OPENAI_429: &[u8] = br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29802, Requested 832. Please try again in 1.268s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;

const GEMINI_429: &[u8] = br#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{"location":"global","model":"gemini-2.0-flash"},"quotaValue":"15"}]},{"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"Learn more about Gemini API quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}"#;

fn headers(c: &mut Criterion) {
    // What each bench parses, checked once so a silent change of result cannot go unseen.
    let openai = parse_headers(Provider::OpenAi, OPENAI.iter().copied(), None);
    assert_eq!((openai.observed.len(), openai.ignored.len()), (2, 0));
    let anthropic = parse_headers(Provider::Anthropic, ANTHROPIC.iter().copied(), Some(NOW));
    assert_eq!((anthropic.observed.len(), anthropic.ignored.len()), (4, 0));

    let mut g = c.benchmark_group("provider_headers");
    g.bench_function("openai_20_headers", |b| {
        b.iter(|| parse_headers(Provider::OpenAi, black_box(OPENAI).iter().copied(), None))
    });
    g.bench_function("anthropic_27_headers", |b| {
        b.iter(|| {
            parse_headers(Provider::Anthropic, black_box(ANTHROPIC).iter().copied(), Some(NOW))
        })
    });
    #[cfg(feature = "http")]
    {
        let mut map = http::HeaderMap::new();
        for (n, v) in OPENAI {
            map.append(*n, http::HeaderValue::from_static(v));
        }
        assert_eq!(tollgate::provider::parse_header_map(Provider::OpenAi, &map, None), openai);
        g.bench_function("openai_header_map", |b| {
            b.iter(|| tollgate::provider::parse_header_map(Provider::OpenAi, black_box(&map), None))
        });
    }
    g.finish();
}

fn bodies(c: &mut Criterion) {
    let report = HeaderReport::empty(Provider::OpenAi);
    let mut g = c.benchmark_group("provider_429");
    g.bench_function("classify_429_openai", |b| {
        b.iter(|| classify_429(black_box(&report), black_box(OPENAI_429)))
    });
    g.bench_function("classify_429_gemini", |b| {
        b.iter(|| classify_429(black_box(&report), black_box(GEMINI_429)))
    });
    g.finish();
}

/// The fastest of 200 batches of 1 000 calls of `f`, per call.
fn best_of_batches<R>(mut f: impl FnMut() -> R) -> Duration {
    (0..200)
        .map(|_| {
            let start = StdInstant::now();
            for _ in 0..1_000 {
                black_box(f());
            }
            start.elapsed() / 1_000
        })
        .min()
        .unwrap()
}

fn best_times() {
    let openai = best_of_batches(|| {
        parse_headers(Provider::OpenAi, black_box(OPENAI).iter().copied(), None)
    });
    let anthropic = best_of_batches(|| {
        parse_headers(Provider::Anthropic, black_box(ANTHROPIC).iter().copied(), Some(NOW))
    });
    let report = HeaderReport::empty(Provider::OpenAi);
    let openai_429 = best_of_batches(|| classify_429(black_box(&report), black_box(OPENAI_429)));
    let gemini_429 = best_of_batches(|| classify_429(black_box(&report), black_box(GEMINI_429)));
    println!(
        "best batch, per call: openai_20_headers {openai:?}, anthropic_27_headers {anthropic:?}"
    );
    println!(
        "best batch, per call: classify_429_openai {openai_429:?}, classify_429_gemini {gemini_429:?}"
    );
}

criterion_group!(benches, headers, bodies);

fn main() {
    best_times();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
