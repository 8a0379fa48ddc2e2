//! Go's duration syntax (`time.ParseDuration` / `Duration.String`): `1s`, `6m0s`, `12ms`,
//! `2m59.56s`, `1h2m`, `500µs`, `0` — the form of OpenAI's and Groq's reset headers.

use core::fmt;
use core::time::Duration;

use super::number::{NANOS_PER_SEC, decimal_nanos, nanos_to_duration};

/// Parses a Go duration: one or more `<number><unit>` with units `h`, `m`, `s`, `ms`, `us`
/// (or `µs`, `μs`), `ns`, and decimal fractions (`1.5s`); or a lone `0`. A sign is not
/// accepted (a reset is never negative). `None` when it does not parse or does not fit a
/// [`Duration`]; fractions of a nanosecond are dropped, as Go drops them.
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::parse_go_duration;
///
/// assert_eq!(parse_go_duration(b"2m59.56s"), Some(Duration::from_millis(179_560)));
/// assert_eq!(parse_go_duration(b"12ms"), Some(Duration::from_millis(12)));
/// assert_eq!(parse_go_duration(b"12"), None);
/// ```
pub fn parse_go_duration(text: &[u8]) -> Option<Duration> {
    if text == b"0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.split_first() {
            Some((b'.', f)) => {
                let n = f.iter().take_while(|b| b.is_ascii_digit()).count();
                f.split_at(n)
            }
            _ => (&[][..], after),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = after.iter().take_while(|&&b| !b.is_ascii_digit() && b != b'.').count();
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            b"ns" => 1,
            // "us", U+00B5 MICRO SIGN, U+03BC GREEK SMALL LETTER MU (as Go accepts).
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => NANOS_PER_SEC,
            b"m" => 60 * NANOS_PER_SEC,
            b"h" => 3_600 * NANOS_PER_SEC,
            _ => return None,
        };
        total = total.checked_add(decimal_nanos(int, frac, unit_ns)?)?;
        rest = after;
    }
    nanos_to_duration(total)
}

/// Formats a [`Duration`] as Go does (`Duration.String`): `1h2m0s`, `2m59.56s`, `12ms`,
/// `500µs`, `0s`. What it writes, [`parse_go_duration`] reads back to the same value (for
/// any `Duration`, also beyond Go's 292 years).
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::GoDuration;
///
/// assert_eq!(GoDuration(Duration::from_millis(179_560)).to_string(), "2m59.56s");
/// assert_eq!(GoDuration(Duration::from_secs(360)).to_string(), "6m0s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoDuration(pub Duration);

/// Writes `whole`, then `frac / 10^digits` as a decimal fraction without trailing zeros.
fn write_decimal(f: &mut fmt::Formatter<'_>, whole: u64, frac: u32, digits: u32) -> fmt::Result {
    write!(f, "{whole}")?;
    if frac == 0 {
        return Ok(());
    }
    let mut frac = frac;
    let mut digits = digits as usize;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    write!(f, ".{frac:0digits$}")
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if secs == 0 {
            // Below a second, Go picks the largest unit that keeps the number ≥ 1.
            return match nanos {
                0 => f.write_str("0s"),
                1..=999 => write!(f, "{nanos}ns"),
                1_000..=999_999 => {
                    write_decimal(f, u64::from(nanos / 1_000), nanos % 1_000, 3)?;
                    f.write_str("µs")
                }
                _ => {
                    write_decimal(f, u64::from(nanos / 1_000_000), nanos % 1_000_000, 6)?;
                    f.write_str("ms")
                }
            };
        }
        let (hours, minutes, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
        if hours > 0 {
            write!(f, "{hours}h{minutes}m")?;
        } else if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write_decimal(f, s, nanos, 9)?;
        f.write_str("s")
    }
}
