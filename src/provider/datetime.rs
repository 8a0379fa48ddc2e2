//! Absolute instants in header values: RFC 3339 (Anthropic's resets) and the HTTP date of
//! `retry-after`, both as a [`Duration`] since the Unix epoch. Only what the headers use is
//! read; there is no time zone database (RFC 3339 carries its offset, HTTP dates are GMT).

use core::time::Duration;

/// Parses an RFC 3339 date-time (`2026-12-01T14:05:09Z`, `2026-12-01T15:05:09.5+01:00`) as
/// the time since the Unix epoch. `T` and `Z` may be lower case and `T` a space (RFC 3339
/// allows both); a leap second (`:60`) counts as the first second of the next minute;
/// fraction digits past nanoseconds are dropped. `None` when it does not parse, is not a
/// real date, or is before 1970.
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::parse_rfc3339;
///
/// assert_eq!(parse_rfc3339(b"1970-01-02T00:00:01Z"), Some(Duration::from_secs(86_401)));
/// assert_eq!(parse_rfc3339(b"1970-01-02T01:00:01+01:00"), Some(Duration::from_secs(86_401)));
/// assert_eq!(parse_rfc3339(b"2026-02-29T00:00:00Z"), None);
/// ```
pub fn parse_rfc3339(text: &[u8]) -> Option<Duration> {
    // YYYY-MM-DDTHH:MM:SS is 19 bytes; then a fraction, then the offset.
    if text.len() < 20 {
        return None;
    }
    let (date_time, rest) = text.split_at(19);
    let year = digits(&date_time[0..4])?;
    let month = digits(&date_time[5..7])?;
    let day = digits(&date_time[8..10])?;
    let hour = digits(&date_time[11..13])?;
    let minute = digits(&date_time[14..16])?;
    let second = digits(&date_time[17..19])?;
    if date_time[4] != b'-'
        || date_time[7] != b'-'
        || !matches!(date_time[10], b'T' | b't' | b' ')
        || date_time[13] != b':'
        || date_time[16] != b':'
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let (nanos, offset) = match rest.split_first() {
        Some((b'.', after)) => {
            let n = after.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            let mut nanos: u32 = 0;
            for i in 0..9 {
                let d = after.get(i).filter(|_| i < n).map_or(0, |b| b - b'0');
                nanos = nanos * 10 + u32::from(d);
            }
            (nanos, &after[n..])
        }
        _ => (0, rest),
    };
    let offset_secs: i64 = match offset {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h * 3_600 + m * 60);
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_since_epoch(year, month, day)?;
    let secs = days * 86_400 + i64::from(hour * 3_600 + minute * 60 + second) - offset_secs;
    Some(Duration::new(u64::try_from(secs).ok()?, nanos))
}

/// Parses an HTTP date in its preferred form (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`)
/// as the time since the Unix epoch. The obsolete RFC 850 and asctime forms are not read
/// (servers must not send them); the day name is checked to be a day name, not to be the
/// right one. `None` when it does not parse.
///
/// ```
/// use core::time::Duration;
/// use tollgate::provider::parse_http_date;
///
/// assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:01:00 GMT"), Some(Duration::from_secs(60)));
/// ```
pub fn parse_http_date(text: &[u8]) -> Option<Duration> {
    const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // "Sun, 06 Nov 1994 08:49:37 GMT": 29 bytes at fixed places.
    if text.len() != 29
        || !DAYS.iter().any(|d| &text[0..3] == *d)
        || &text[3..5] != b", "
        || text[7] != b' '
        || text[11] != b' '
        || text[16] != b' '
        || text[19] != b':'
        || text[22] != b':'
        || &text[25..] != b" GMT"
    {
        return None;
    }
    let day = digits(&text[5..7])?;
    let month = MONTHS.iter().position(|m| &text[8..11] == *m)? as u32 + 1;
    let year = digits(&text[12..16])?;
    let (hour, minute, second) =
        (digits(&text[17..19])?, digits(&text[20..22])?, digits(&text[23..25])?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_since_epoch(year, month, day)?;
    let secs = days * 86_400 + i64::from(hour * 3_600 + minute * 60 + second);
    Some(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// The value of a run of ASCII digits (at most 4 here).
fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |n, &b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
}

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (negative before it);
/// `None` when the date does not exist.
fn days_since_epoch(year: u32, month: u32, day: u32) -> Option<i64> {
    const BEFORE_MONTH: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    const LENGTH: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let m = (month - 1) as usize;
    let leap_day = u32::from(month == 2 && is_leap(year));
    if day > LENGTH[m] + leap_day {
        return None;
    }
    // Whole years since 1970, each 365 days plus the leap days among them (counted from year
    // 0, where the Gregorian rule starts its 400-year cycle).
    let leaps_before = |y: i64| y / 4 - y / 100 + y / 400; // leap years in [1, y]
    let y = i64::from(year);
    let leap_days = leaps_before(y - 1) - leaps_before(1969);
    let in_year = i64::from(BEFORE_MONTH[m] + u32::from(month > 2 && is_leap(year)) + day - 1);
    Some((y - 1970) * 365 + leap_days + in_year)
}
