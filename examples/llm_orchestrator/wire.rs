//! How the simulated provider writes header values: Go durations (OpenAI's resets) and
//! RFC 3339 instants (Anthropic's), with the simulated wall clock they need.

use core::time::Duration;

/// The simulated wall clock at the start of a run, as seconds since the Unix epoch
/// (2026-06-01T00:00:00Z): Anthropic's resets are instants, so the provider and the client
/// need one shared wall clock, and the paused tokio clock has none.
pub const WALL_AT_START: Duration = Duration::from_secs(1_780_272_000);

/// A duration as Go's `time.Duration.String` writes it, to the millisecond: `0s`, `12ms`,
/// `2.5s`, `1m0s`, `2m59.56s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let (minutes, ms) = (ms / 60_000, ms % 60_000);
    let (secs, frac) = (ms / 1_000, ms % 1_000);
    let mut s = String::new();
    if minutes > 0 {
        s += &format!("{minutes}m");
    }
    s += &secs.to_string();
    if frac > 0 {
        let digits = format!("{frac:03}");
        s += ".";
        s += digits.trim_end_matches('0');
    }
    s += "s";
    s
}

/// An instant `since_epoch` after 1970-01-01T00:00:00Z as RFC 3339 in UTC, to the second
/// (Anthropic's resets: `2026-06-01T00:01:00Z`).
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = (rest / 3_600, rest % 3_600 / 60, rest % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): the era arithmetic
/// from the calendar's 400-year cycle.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_as_go_writes_them() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(ms(12)), "12ms");
        assert_eq!(go_duration(ms(2_500)), "2.5s");
        assert_eq!(go_duration(ms(60_000)), "1m0s");
        assert_eq!(go_duration(ms(179_560)), "2m59.56s");
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(WALL_AT_START), "2026-06-01T00:00:00Z");
        assert_eq!(rfc3339(Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }
}
