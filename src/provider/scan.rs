//! A small scanner over a 429 body's bytes: finds a few known phrases and JSON keys without
//! parsing the body as JSON.
//!
//! Why not serde: the core is `no_std` without a JSON dependency, and a 429 body need not be
//! JSON at all (a proxy's HTML page, a truncated stream, plain text). What is wanted is a few
//! phrases and keys wherever they sit — OpenAI puts its hint inside a message string, Gemini
//! in a `details` array — so searching the bytes finds them in any of those bodies, allocates
//! nothing, and cannot fail on a body that is not valid JSON.

/// Where `needle` (ASCII, lower case) first occurs in `hay` from `from` on, comparing without
/// regard to ASCII case.
pub(super) fn find_ci(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut i = from;
    while i + needle.len() <= hay.len() {
        // Skip quickly to the next byte that can start a match.
        let at = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|b| b.to_ascii_lowercase() == first)?;
        i += at;
        if hay[i..i + needle.len()].eq_ignore_ascii_case(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Whether `hay` holds `needle` (ASCII, lower case), without regard to case.
pub(super) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    find_ci(hay, needle, 0).is_some()
}

/// Every string value of the JSON key `key` (given with its quotes, `"retryDelay"`), in
/// order, with where its key starts: `"key"`, white space, `:`, white space, then a string
/// without escapes. A key whose value is not such a string is skipped.
pub(super) fn json_strings<'a>(
    body: &'a [u8],
    key: &'a [u8],
) -> impl Iterator<Item = (usize, &'a [u8])> {
    let mut from = 0;
    core::iter::from_fn(move || {
        loop {
            let at = find_ci(body, key, from)?;
            from = at + key.len();
            if let Some(value) = string_value(&body[from..]) {
                return Some((at, value));
            }
        }
    })
}

/// The string after a key: `: "value"`, with JSON's white space around the colon.
fn string_value(after_key: &[u8]) -> Option<&[u8]> {
    let rest = skip_space(after_key).strip_prefix(b":")?;
    let rest = skip_space(rest).strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest[end] == b'"').then(|| &rest[..end])
}

fn skip_space(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')).count();
    &s[n..]
}

/// The number right after the first `word` (ASCII, lower case, with its trailing space: `"limit "`)
/// that is followed by a digit: OpenAI's "Limit 30000, Requested 36055".
pub(super) fn number_after(body: &[u8], word: &[u8]) -> Option<u64> {
    let mut from = 0;
    while let Some(at) = find_ci(body, word, from) {
        from = at + word.len();
        let digits = body[from..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 {
            return body[from..from + digits]
                .iter()
                .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')));
        }
    }
    None
}

/// The word (a run of bytes up to white space, a quote or a comma) that starts `s`.
pub(super) fn word(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'"' | b',' | b'\\'))
        .count();
    &s[..n]
}
