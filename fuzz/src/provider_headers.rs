//! `provider_headers` target: whole header sets through `tollgate::provider::parse_headers`.
//!
//! Two kinds of input:
//! - **free**: any names (the known ones in any case, or any bytes) with any values (any
//!   bytes, counts, `-1`, Go durations, seconds, RFC 3339 and HTTP dates around "now"), for any
//!   provider. Checked: no panic; a well-formed report (`check_report`: remaining ≤ limit,
//!   one entry per quota…); the same report for the headers in reverse order (conflicts are
//!   symmetric: no value wins by coming first or last) and with every name in upper case;
//! - **consistent**: what a provider would send for limits drawn from the input — each quota
//!   the provider reports with a limit, a remaining ≤ limit (rounded to the thousand for
//!   Anthropic's tokens) and a reset in the provider's own syntax, a retry-after, and noise
//!   headers, shuffled. Checked: the report is exactly those limits, with nothing ignored.

use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use tollgate::provider::{GoDuration, HeaderReport, Observed, Provider, Quota, parse_headers};

use crate::provider_check::check_report;
use crate::provider_values::{NAMES, PROVIDERS, civil, imf_fixdate};

/// Most headers in one free input.
const MAX_HEADERS: usize = 64;

#[derive(Arbitrary, Debug)]
enum Input {
    Free(Free),
    Consistent(Consistent),
}

#[derive(Arbitrary, Debug)]
struct Free {
    provider: u8,
    now: Option<u32>,
    headers: Vec<(NameIn, ValueIn)>,
}

#[derive(Arbitrary, Debug)]
enum NameIn {
    Known { index: u8, upper: u64 },
    Any(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum ValueIn {
    Bytes(Vec<u8>),
    Count(u64),
    Small(u16),
    MinusOne,
    Go {
        secs: u64,
        nanos: u32,
    },
    Seconds(u32),
    /// An RFC 3339 instant this many seconds from now.
    Rfc3339(i32),
    /// An HTTP date this many seconds from now.
    HttpDate(i32),
    /// One of the others with spaces and tabs around it.
    Padded(Box<ValueIn>),
}

#[derive(Arbitrary, Debug)]
struct Consistent {
    provider: u8,
    now: u32,
    quotas: [Option<QuotaIn>; 4],
    retry_after_ms: Option<u32>,
    retry_after_secs: Option<u16>,
    noise: Vec<(u8, u32)>,
    shuffle: Vec<u16>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct QuotaIn {
    limit: u64,
    remaining_per_mille: u16,
    reset_ms: u32,
    /// Which of limit, remaining, reset are sent (bits 0, 1, 2; none sent is all sent).
    sent: u8,
}

/// 2026-01-01T00:00:00Z: "now" is counted from here, so dates stay realistic.
const EPOCH_2026: u64 = 1_767_225_600;

/// Runs one input.
pub fn run_provider_headers(data: &[u8]) {
    let u = Unstructured::new(data);
    match Input::arbitrary_take_rest(u) {
        Ok(Input::Free(free)) => run_free(free),
        Ok(Input::Consistent(c)) => run_consistent(c),
        Err(_) => {}
    }
}

fn provider_of(n: u8) -> Provider {
    PROVIDERS[n as usize % PROVIDERS.len()]
}

fn now_of(secs: u32) -> Duration {
    Duration::from_secs(EPOCH_2026 + u64::from(secs))
}

fn rfc3339_of(t: Duration) -> String {
    let (date, time) = civil(t.as_secs());
    format!("{date}T{time}.{:09}Z", t.subsec_nanos())
}

fn value_bytes(v: &ValueIn, now: Duration) -> Vec<u8> {
    let offset = |s: i32| {
        if s >= 0 {
            now + Duration::from_secs(s as u64)
        } else {
            now.saturating_sub(Duration::from_secs(u64::from(s.unsigned_abs())))
        }
    };
    match v {
        ValueIn::Bytes(b) => b.clone(),
        ValueIn::Count(n) => n.to_string().into_bytes(),
        ValueIn::Small(n) => n.to_string().into_bytes(),
        ValueIn::MinusOne => b"-1".to_vec(),
        ValueIn::Go { secs, nanos } => {
            GoDuration(Duration::new(*secs, nanos % 1_000_000_000)).to_string().into_bytes()
        }
        ValueIn::Seconds(n) => n.to_string().into_bytes(),
        ValueIn::Rfc3339(s) => rfc3339_of(offset(*s)).into_bytes(),
        ValueIn::HttpDate(s) => imf_fixdate(offset(*s).as_secs()).into_bytes(),
        ValueIn::Padded(inner) => {
            let mut out = b" \t".to_vec();
            out.extend(value_bytes(inner, now));
            out.extend(b"\t ");
            out
        }
    }
}

fn name_bytes(n: &NameIn) -> Vec<u8> {
    match n {
        NameIn::Known { index, upper } => NAMES[*index as usize % NAMES.len()]
            .bytes()
            .enumerate()
            .map(|(i, b)| if upper >> (i % 64) & 1 == 1 { b.to_ascii_uppercase() } else { b })
            .collect(),
        NameIn::Any(b) => b.clone(),
    }
}

/// The report with its ignored list sorted, for comparing reports of reordered headers.
fn normalised(mut r: HeaderReport) -> HeaderReport {
    r.ignored.sort_by(|a, b| (&a.name, a.reason as u8).cmp(&(&b.name, b.reason as u8)));
    r
}

fn run_free(free: Free) {
    let provider = provider_of(free.provider);
    let now = free.now.map(now_of);
    let clock = now.unwrap_or(now_of(0));
    let headers: Vec<(Vec<u8>, Vec<u8>)> = free
        .headers
        .iter()
        .take(MAX_HEADERS)
        .map(|(n, v)| (name_bytes(n), value_bytes(v, clock)))
        .collect();
    if crate::debug() {
        for (n, v) in &headers {
            eprintln!(
                "{provider:?} {:?}: {:?}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            );
        }
    }
    let report = parse_headers(provider, headers.iter().map(|(n, v)| (n, v)), now);
    check_report(&report);

    let reversed = parse_headers(provider, headers.iter().rev().map(|(n, v)| (n, v)), now);
    assert_eq!(normalised(report.clone()), normalised(reversed), "order changed the report");

    let upper: Vec<(Vec<u8>, &Vec<u8>)> =
        headers.iter().map(|(n, v)| (n.to_ascii_uppercase(), v)).collect();
    let upper = parse_headers(provider, upper.iter().map(|(n, v)| (n, *v)), now);
    assert_eq!(report, upper, "case changed the report");
}

/// The quotas a provider reports, and whether it sends resets.
fn quotas_of(provider: Provider) -> (&'static [Quota], bool) {
    match provider {
        Provider::Anthropic => (&Quota::ALL, true),
        Provider::Mistral => (&[Quota::Requests, Quota::Tokens], false),
        _ => (&[Quota::Requests, Quota::Tokens], true),
    }
}

/// The names of limit, remaining and reset of `quota` at `provider` (Mistral sends no reset).
fn names_of(provider: Provider, quota: Quota) -> [String; 3] {
    let q = match quota {
        Quota::Requests => "requests",
        Quota::Tokens => "tokens",
        Quota::InputTokens => "input-tokens",
        Quota::OutputTokens => "output-tokens",
    };
    match provider {
        Provider::Anthropic => {
            ["limit", "remaining", "reset"].map(|f| format!("anthropic-ratelimit-{q}-{f}"))
        }
        Provider::Mistral => {
            let q = if quota == Quota::Requests { "req" } else { "tokens" };
            ["limit", "remaining", "reset"].map(|f| format!("x-ratelimit-{f}-{q}-minute"))
        }
        _ => ["limit", "remaining", "reset"].map(|f| format!("x-ratelimit-{f}-{q}")),
    }
}

fn run_consistent(c: Consistent) {
    let provider = provider_of(c.provider);
    let now = now_of(c.now);
    let (quotas, resets) = quotas_of(provider);
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut expected: Vec<Observed> = Vec::new();
    for (&quota, q) in quotas.iter().zip(c.quotas) {
        let Some(q) = q else { continue };
        let sent = if q.sent & 7 == 0 || (!resets && q.sent & 3 == 0) { 7 } else { q.sent };
        let rounded = provider == Provider::Anthropic && quota != Quota::Requests;
        let limit = q.limit;
        let remaining =
            (u128::from(limit) * u128::from(q.remaining_per_mille % 1001) / 1000) as u64;
        // Anthropic rounds to the nearest thousand (half up), which may pass the limit.
        let shown = if rounded { remaining.saturating_add(500) / 1000 * 1000 } else { remaining };
        let reset = Duration::from_millis(u64::from(q.reset_ms));
        let [limit_name, remaining_name, reset_name] = names_of(provider, quota);
        let mut o = Observed::new(quota);
        o.window =
            Some(Duration::from_secs(if provider == Provider::Groq && quota == Quota::Requests {
                86_400
            } else {
                60
            }));
        o.remaining_tolerance = if rounded { 500 } else { 0 };
        if sent & 1 != 0 {
            headers.push((limit_name, limit.to_string()));
            o.limit = Some(limit);
        }
        if sent & 2 != 0 {
            headers.push((remaining_name, shown.to_string()));
            o.remaining = Some(if sent & 1 != 0 { shown.min(limit) } else { shown });
        }
        if sent & 4 != 0 && resets {
            let (text, got) = match provider {
                Provider::Anthropic => (rfc3339_of(now + reset), reset),
                // Azure sends whole seconds.
                Provider::Azure => {
                    let s = reset.as_secs();
                    (s.to_string(), Duration::from_secs(s))
                }
                _ => (GoDuration(reset).to_string(), reset),
            };
            headers.push((reset_name, text));
            o.reset_after = Some(got);
        }
        expected.push(o);
    }
    let mut retry_after = None;
    if let Some(s) = c.retry_after_secs {
        headers.push(("Retry-After".into(), s.to_string()));
        retry_after = Some(Duration::from_secs(u64::from(s)));
    }
    if let Some(ms) = c.retry_after_ms {
        headers.push(("retry-after-ms".into(), ms.to_string()));
        retry_after = Some(Duration::from_millis(u64::from(ms)));
    }
    for (i, (kind, n)) in c.noise.iter().take(MAX_HEADERS).enumerate() {
        let name = match kind % 4 {
            0 => format!("x-noise-{i}"),
            1 => "content-type".into(),
            2 => format!("x-request-id-{n}"),
            _ => "ratelimit-policy".into(),
        };
        headers.push((name, n.to_string()));
    }
    for (i, s) in c.shuffle.iter().enumerate() {
        let len = headers.len();
        if len > 1 {
            headers.swap(i % len, *s as usize % len);
        }
    }
    if crate::debug() {
        eprintln!("{provider:?} now {now:?}: {headers:#?}");
    }
    let report = parse_headers(provider, headers.iter().map(|(n, v)| (n, v)), Some(now));
    check_report(&report);
    assert_eq!(report.observed, expected, "{headers:#?}");
    assert_eq!(report.ignored, [], "{headers:#?}");
    assert_eq!(report.retry_after, retry_after, "{headers:#?}");
}
