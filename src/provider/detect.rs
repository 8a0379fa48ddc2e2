//! [`Provider::detect`]: which provider sent a set of headers, from their names alone.

use super::names::strip_prefix_ci;
use super::report::Provider;

impl Provider {
    /// Guesses the provider from the header names of a response, or `None` when nothing in
    /// them points to one (names compare without regard to case).
    ///
    /// A heuristic — pass the provider you called when you know it. From the most specific
    /// sign to the least: an `anthropic-ratelimit-*` name is Anthropic; a
    /// `x-ratelimit-*-req-minute` or `*-tokens-minute` name is Mistral; an `x-groq-*` name is
    /// Groq; an `x-ms-*`, `apim-request-id`, `azureml-*` or `retry-after-ms` name is Azure
    /// (which forwards OpenAI's names); an `openai-*` name, or OpenAI's own
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, is OpenAI.
    ///
    /// ```
    /// use tollgate::provider::Provider;
    ///
    /// let names = ["content-type", "anthropic-ratelimit-requests-limit", "request-id"];
    /// assert_eq!(Provider::detect(names), Some(Provider::Anthropic));
    /// assert_eq!(Provider::detect(["x-ratelimit-limit-tokens", "x-ms-region"]), Some(Provider::Azure));
    /// assert_eq!(Provider::detect(["content-type"]), None);
    /// ```
    pub fn detect<I, N>(names: I) -> Option<Provider>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        // The strongest sign seen so far: a lower rank is more specific.
        let mut best: Option<(u8, Provider)> = None;
        for name in names {
            let Some(sign) = sign(name.as_ref()) else { continue };
            if best.is_none_or(|(rank, _)| sign.0 < rank) {
                best = Some(sign);
            }
        }
        best.map(|(_, provider)| provider)
    }
}

/// What one name says, with its rank (lower: more specific).
fn sign(name: &[u8]) -> Option<(u8, Provider)> {
    let has = |prefix: &[u8]| strip_prefix_ci(name, prefix).is_some();
    let ends = |suffix: &[u8]| {
        name.len() >= suffix.len() && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    if has(b"anthropic-ratelimit-") {
        Some((0, Provider::Anthropic))
    } else if has(b"x-ratelimit-") && (ends(b"-req-minute") || ends(b"-tokens-minute")) {
        Some((1, Provider::Mistral))
    } else if has(b"x-groq-") {
        Some((2, Provider::Groq))
    } else if has(b"x-ms-")
        || has(b"azureml-")
        || name.eq_ignore_ascii_case(b"apim-request-id")
        || name.eq_ignore_ascii_case(b"retry-after-ms")
    {
        Some((3, Provider::Azure))
    } else if has(b"openai-") {
        Some((4, Provider::OpenAi))
    } else {
        const OPENAI: [&[u8]; 6] = [
            b"limit-requests",
            b"limit-tokens",
            b"remaining-requests",
            b"remaining-tokens",
            b"reset-requests",
            b"reset-tokens",
        ];
        let rest = strip_prefix_ci(name, b"x-ratelimit-")?;
        OPENAI.iter().any(|n| rest.eq_ignore_ascii_case(n)).then_some((5, Provider::OpenAi))
    }
}
