//! The plain numbers in header values: counts, and delays in (decimal) seconds or
//! milliseconds; plus the exact decimal arithmetic the duration parsers share.

use core::time::Duration;

/// Nanoseconds per second.
pub(super) const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Fraction digits past this many are dropped: they are worth less than 10⁻⁷ ns in the largest
/// unit (an hour), and keeping the product in a `u128` needs a bound.
const MAX_FRACTION_DIGITS: usize = 19;

/// A count: one to twenty ASCII digits, no sign, fitting a `u64`.
pub(super) fn parse_count(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// `int.frac` of `unit_ns` nanoseconds, in nanoseconds, below 1 ns truncated; both digit
/// strings are ASCII digits (either may be empty). `None` on overflow.
pub(super) fn decimal_nanos(int: &[u8], frac: &[u8], unit_ns: u128) -> Option<u128> {
    let mut whole: u128 = 0;
    for &d in int {
        whole = whole.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
    }
    let mut num: u128 = 0;
    let mut den: u128 = 1;
    for &d in frac.iter().take(MAX_FRACTION_DIGITS) {
        num = num * 10 + u128::from(d - b'0');
        den *= 10;
    }
    // num < den ≤ 10^19 and unit_ns ≤ 3.6·10^12: the product stays below 2^128.
    whole.checked_mul(unit_ns)?.checked_add(num * unit_ns / den)
}

/// A [`Duration`] of `nanos` nanoseconds, if it fits.
pub(super) fn nanos_to_duration(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).ok()?;
    // The remainder is below 10^9.
    Some(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// A non-negative decimal (`20`, `1.5`, `.5`, `3.`) of `unit_ns` nanoseconds: the delay forms
/// of `retry-after` (seconds), `retry-after-ms` and Azure's resets.
pub(super) fn parse_decimal(text: &[u8], unit_ns: u128) -> Option<Duration> {
    let (int, frac) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &[][..]),
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    nanos_to_duration(decimal_nanos(int, frac, unit_ns)?)
}

/// Seconds as a decimal.
pub(super) fn parse_seconds(text: &[u8]) -> Option<Duration> {
    parse_decimal(text, NANOS_PER_SEC)
}

/// Milliseconds as a decimal.
pub(super) fn parse_millis(text: &[u8]) -> Option<Duration> {
    parse_decimal(text, 1_000_000)
}
