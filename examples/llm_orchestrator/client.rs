//! How the job's requests use the limiter: admission with the request's input and output
//! apart, settling with what it used, and — in the run with feedback — every answer's headers
//! parsed and observed, and every 429 reported so the model cools down.

use core::time::Duration;

use tollgate::model::{Estimate, FeedbackReport};
use tollgate::provider::{HeaderReport, Provider, classify_429, parse_headers};
use tollgate_tokio::{Error, ModelPermit, ModelRateLimiter};

use super::provider::{Answer, Ask, Style};

pub type Limiter = ModelRateLimiter;

/// The parser for a model's header style.
fn provider_of(style: Style) -> Provider {
    match style {
        Style::OpenAi => Provider::OpenAi,
        Style::Anthropic => Provider::Anthropic,
    }
}

/// Waits for admission of `ask` on `model`: its input reserved, and its `max_tokens` in the
/// total-token limits.
pub async fn admit<'a>(
    limiter: &'a Limiter,
    model: &str,
    ask: Ask,
) -> Result<ModelPermit<'a>, Error> {
    limiter.acquire_with(model, Estimate { input: ask.input, output: ask.max_output }).await
}

/// Ends a served request with what it used.
pub fn settle(permit: ModelPermit<'_>, ask: Ask, output: u64) {
    permit.settle_io(ask.input, output);
}

/// Parses an answer's headers (`wall_now`: the simulated wall clock, for Anthropic's RFC 3339
/// resets).
pub fn parse(style: Style, answer: &Answer, wall_now: Duration) -> HeaderReport {
    let headers = answer.headers.iter().map(|(name, value)| (*name, value.as_str()));
    parse_headers(provider_of(style), headers, Some(wall_now))
}

/// Ends a served request with what it used, then gives the answer's headers to the limiter,
/// which drains and learns from them (settled first: the headers count the request at what it
/// used, and so must the books they are compared with).
pub fn settle_and_observe(
    permit: ModelPermit<'_>,
    ask: Ask,
    output: u64,
    style: Style,
    answer: &Answer,
    wall_now: Duration,
) {
    permit.settle_and_observe(ask.input, output, &parse(style, answer, wall_now));
}

/// Parses a 429's headers and gives them to the limiter.
pub fn observe(
    limiter: &Limiter,
    model: &str,
    style: Style,
    answer: &Answer,
    wall_now: Duration,
) -> HeaderReport {
    let report = parse(style, answer, wall_now);
    // A model the limiter knows: the only error `observe` has is an unknown model.
    let _ = limiter.observe(model, &report);
    report
}

/// A 429 on `permit`'s request: classified from its headers and body, and reported, which
/// starts (or extends) the model's cooldown and releases the slot into it.
pub fn rate_limited(
    permit: ModelPermit<'_>,
    report: &HeaderReport,
    answer: &Answer,
) -> FeedbackReport {
    permit.throttled(&classify_429(report, answer.body.as_bytes()))
}
