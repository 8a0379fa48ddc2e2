//! Each provider's rate-limit header names: which [`Quota`] and which field a name reports.
//! Names compare without regard to ASCII case, and without allocating (this runs on every
//! header of every response).

use super::report::{Provider, Quota};

/// Which field of an [`Observed`](super::Observed) a header gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Limit,
    Remaining,
    Reset,
}

/// What a header name is to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Name {
    /// One field of one quota.
    Quota(Quota, Field),
    /// `retry-after-ms`.
    RetryAfterMs,
    /// `retry-after`.
    RetryAfter,
    /// A rate-limit header this provider is not known to send.
    Unrecognized,
    /// Any other header: not ours.
    Other,
}

const X_RATELIMIT: &[u8] = b"x-ratelimit-";
const ANTHROPIC_RATELIMIT: &[u8] = b"anthropic-ratelimit-";

/// `name` without `prefix` (compared without regard to case), if it starts with it.
pub(super) fn strip_prefix_ci<'a>(name: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &name[prefix.len()..])
}

/// What `name` is to `provider`.
pub(super) fn classify(provider: Provider, name: &[u8]) -> Name {
    if let Some(rest) = strip_prefix_ci(name, X_RATELIMIT) {
        let known = match provider {
            Provider::OpenAi | Provider::Azure | Provider::Groq => openai(rest),
            Provider::Mistral => mistral(rest),
            Provider::Anthropic => None,
        };
        return known.map_or(Name::Unrecognized, |(q, f)| Name::Quota(q, f));
    }
    if let Some(rest) = strip_prefix_ci(name, ANTHROPIC_RATELIMIT) {
        let known = if provider == Provider::Anthropic { anthropic(rest) } else { None };
        return known.map_or(Name::Unrecognized, |(q, f)| Name::Quota(q, f));
    }
    if name.eq_ignore_ascii_case(b"retry-after") {
        Name::RetryAfter
    } else if name.eq_ignore_ascii_case(b"retry-after-ms") {
        Name::RetryAfterMs
    } else {
        Name::Other
    }
}

/// OpenAI's (and Azure's, Groq's) `{limit,remaining,reset}-{requests,tokens}`.
fn openai(rest: &[u8]) -> Option<(Quota, Field)> {
    let (field, rest) = field_prefix(rest)?;
    let quota = if rest.eq_ignore_ascii_case(b"requests") {
        Quota::Requests
    } else if rest.eq_ignore_ascii_case(b"tokens") {
        Quota::Tokens
    } else {
        return None;
    };
    Some((quota, field))
}

/// Mistral's `{limit,remaining}-{req,tokens}-minute`.
fn mistral(rest: &[u8]) -> Option<(Quota, Field)> {
    let (field, rest) = field_prefix(rest)?;
    let quota = if rest.eq_ignore_ascii_case(b"req-minute") {
        Quota::Requests
    } else if rest.eq_ignore_ascii_case(b"tokens-minute") {
        Quota::Tokens
    } else {
        return None;
    };
    (field != Field::Reset).then_some((quota, field))
}

/// Anthropic's `{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`.
fn anthropic(rest: &[u8]) -> Option<(Quota, Field)> {
    const QUOTAS: [(&[u8], Quota); 4] = [
        (b"requests-", Quota::Requests),
        (b"tokens-", Quota::Tokens),
        (b"input-tokens-", Quota::InputTokens),
        (b"output-tokens-", Quota::OutputTokens),
    ];
    let (quota, rest) =
        QUOTAS.iter().find_map(|&(p, q)| strip_prefix_ci(rest, p).map(|r| (q, r)))?;
    let field = if rest.eq_ignore_ascii_case(b"limit") {
        Field::Limit
    } else if rest.eq_ignore_ascii_case(b"remaining") {
        Field::Remaining
    } else if rest.eq_ignore_ascii_case(b"reset") {
        Field::Reset
    } else {
        return None;
    };
    Some((quota, field))
}

/// `limit-`, `remaining-` or `reset-` at the start of `rest`.
fn field_prefix(rest: &[u8]) -> Option<(Field, &[u8])> {
    const FIELDS: [(&[u8], Field); 3] =
        [(b"limit-", Field::Limit), (b"remaining-", Field::Remaining), (b"reset-", Field::Reset)];
    FIELDS.iter().find_map(|&(p, f)| strip_prefix_ci(rest, p).map(|r| (f, r)))
}

/// The name `provider` sends for `field` of `quota`, in lower case (for [`Ignored`] entries
/// made after the fact, such as a contradiction).
///
/// [`Ignored`]: super::Ignored
pub(super) fn canonical(provider: Provider, quota: Quota, field: Field) -> &'static str {
    use Field::{Limit, Remaining, Reset};
    use Quota::{InputTokens, OutputTokens, Requests, Tokens};
    match (provider, quota, field) {
        (Provider::Anthropic, Requests, Limit) => "anthropic-ratelimit-requests-limit",
        (Provider::Anthropic, Requests, Remaining) => "anthropic-ratelimit-requests-remaining",
        (Provider::Anthropic, Requests, Reset) => "anthropic-ratelimit-requests-reset",
        (Provider::Anthropic, Tokens, Limit) => "anthropic-ratelimit-tokens-limit",
        (Provider::Anthropic, Tokens, Remaining) => "anthropic-ratelimit-tokens-remaining",
        (Provider::Anthropic, Tokens, Reset) => "anthropic-ratelimit-tokens-reset",
        (_, InputTokens, Limit) => "anthropic-ratelimit-input-tokens-limit",
        (_, InputTokens, Remaining) => "anthropic-ratelimit-input-tokens-remaining",
        (_, InputTokens, Reset) => "anthropic-ratelimit-input-tokens-reset",
        (_, OutputTokens, Limit) => "anthropic-ratelimit-output-tokens-limit",
        (_, OutputTokens, Remaining) => "anthropic-ratelimit-output-tokens-remaining",
        (_, OutputTokens, Reset) => "anthropic-ratelimit-output-tokens-reset",
        (Provider::Mistral, Requests, Limit) => "x-ratelimit-limit-req-minute",
        (Provider::Mistral, Requests, _) => "x-ratelimit-remaining-req-minute",
        (Provider::Mistral, Tokens, Limit) => "x-ratelimit-limit-tokens-minute",
        (Provider::Mistral, Tokens, _) => "x-ratelimit-remaining-tokens-minute",
        (_, Requests, Limit) => "x-ratelimit-limit-requests",
        (_, Requests, Remaining) => "x-ratelimit-remaining-requests",
        (_, Requests, Reset) => "x-ratelimit-reset-requests",
        (_, Tokens, Limit) => "x-ratelimit-limit-tokens",
        (_, Tokens, Remaining) => "x-ratelimit-remaining-tokens",
        (_, Tokens, Reset) => "x-ratelimit-reset-tokens",
    }
}
