//! `provider_429` target: 429 bodies and header reports through
//! `tollgate::provider::classify_429`.
//!
//! Checked:
//! - never panics, whatever the body (any bytes, JSON or not) and the report;
//! - the headers' retry-after comes first: a `RetryLater` from a report with a retry-after
//!   waits exactly that long;
//! - a retry hint planted in a body of harmless bytes is found exactly: OpenAI's "Please try
//!   again in `<Go duration>`." for any duration, and Gemini's `"retryDelay": "<s>.<ns>s"`;
//! - OpenAI's "Request too large … Limit N, Requested M" planted the same way is `NeverFits`
//!   with exactly those numbers; a Gemini per-day quota id is `QuotaExhausted` with its delay.

use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use tollgate::provider::{GoDuration, HeaderReport, Observed, Quota, Throttled, classify_429};

use crate::provider_values::PROVIDERS;

#[derive(Arbitrary, Debug)]
struct Input {
    report: ReportIn,
    body: BodyIn,
}

#[derive(Arbitrary, Debug)]
struct ReportIn {
    provider: u8,
    retry_after: Option<(u64, u32)>,
    observed: Vec<ObservedIn>,
}

#[derive(Arbitrary, Debug)]
struct ObservedIn {
    day: bool,
    limit: Option<u64>,
    remaining: Option<u64>,
    reset: Option<u32>,
}

#[derive(Arbitrary, Debug)]
enum BodyIn {
    Raw(Vec<u8>),
    TryAgain { prefix: Vec<u8>, secs: u64, nanos: u32, suffix: Vec<u8> },
    RetryDelay { prefix: Vec<u8>, secs: u32, nanos: u32, suffix: Vec<u8> },
    TooLarge { prefix: Vec<u8>, limit: u64, requested: u64, suffix: Vec<u8> },
    PerDay { secs: u32 },
}

/// Bytes that can form none of the phrases or keys the classifier looks for (no space, no
/// quote, and none of the letters i-z that every phrase has).
fn harmless(bytes: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefgh0123456789{}[]:,.";
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()]).collect()
}

fn report_of(r: &ReportIn) -> HeaderReport {
    let mut report = HeaderReport::empty(PROVIDERS[r.provider as usize % PROVIDERS.len()]);
    report.retry_after = r.retry_after.map(|(s, n)| Duration::new(s, n % 1_000_000_000));
    // One per quota, in `Quota::ALL` order, as the parser makes them.
    for (q, o) in Quota::ALL.into_iter().zip(&r.observed) {
        let mut obs = Observed::new(q);
        obs.window = Some(Duration::from_secs(if o.day { 86_400 } else { 60 }));
        obs.limit = o.limit;
        obs.remaining = match (o.limit, o.remaining) {
            (Some(l), Some(r)) => Some(r.min(l)),
            (_, r) => r,
        };
        obs.reset_after = o.reset.map(|ms| Duration::from_millis(u64::from(ms)));
        report.observed.push(obs);
    }
    report
}

/// Runs one input.
pub fn run_provider_429(data: &[u8]) {
    let u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary_take_rest(u) else { return };
    let report = report_of(&input.report);
    if crate::debug() {
        eprintln!("{report:?}\n{:?}", input.body);
    }
    match &input.body {
        BodyIn::Raw(body) => {
            let got = classify_429(&report, body);
            if let (Throttled::RetryLater { after }, Some(r)) = (got, report.retry_after) {
                assert_eq!(after, Some(r), "the headers' retry-after comes first");
            }
            assert_eq!(got, classify_429(&report, body));
        }
        BodyIn::TryAgain { prefix, secs, nanos, suffix } => {
            let d = Duration::new(*secs, nanos % 1_000_000_000);
            let mut body = harmless(prefix);
            body.extend(format!(" Please try again in {}. ", GoDuration(d)).bytes());
            body.extend(harmless(suffix));
            check_hint(&report, &body, d);
        }
        BodyIn::RetryDelay { prefix, secs, nanos, suffix } => {
            let d = Duration::new(u64::from(*secs), nanos % 1_000_000_000);
            let mut body = harmless(prefix);
            body.extend(
                format!(r#""retryDelay": "{}.{:09}s""#, d.as_secs(), d.subsec_nanos()).bytes(),
            );
            body.extend(harmless(suffix));
            check_hint(&report, &body, d);
        }
        BodyIn::TooLarge { prefix, limit, requested, suffix } => {
            let mut body = harmless(prefix);
            body.extend(
                format!(
                    "Request too large for gpt-4o in organization org-abc on tokens per min \
                     (TPM): Limit {limit}, Requested {requested}. The input or output tokens \
                     must be reduced in order to run successfully."
                )
                .bytes(),
            );
            body.extend(harmless(suffix));
            let got = classify_429(&HeaderReport::empty(report.provider), &body);
            let want = Throttled::NeverFits { requested: Some(*requested), limit: Some(*limit) };
            assert_eq!(got, want, "{}", String::from_utf8_lossy(&body));
        }
        BodyIn::PerDay { secs } => {
            let body = format!(
                r#"{{"error":{{"details":[{{"violations":[{{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}}]}},{{"retryDelay":"{secs}s"}}]}}}}"#
            );
            let got = classify_429(&report, body.as_bytes());
            let want = Throttled::QuotaExhausted {
                reset_after: Some(Duration::from_secs(u64::from(*secs))),
            };
            assert_eq!(got, want, "{body}");
        }
    }
}

/// A body with one planted hint of `d`: found exactly when the headers say nothing, and the
/// headers' retry-after wins when they do.
fn check_hint(report: &HeaderReport, body: &[u8], d: Duration) {
    let empty = HeaderReport::empty(report.provider);
    let text = String::from_utf8_lossy(body);
    assert_eq!(classify_429(&empty, body), Throttled::RetryLater { after: Some(d) }, "{text}");
    if let Some(r) = report.retry_after {
        let mut only_retry = HeaderReport::empty(report.provider);
        only_retry.retry_after = Some(r);
        assert_eq!(classify_429(&only_retry, body), Throttled::RetryLater { after: Some(r) });
    }
}
