//! The HTTP answer of a refusal: `Retry-After` and the `RateLimit-Policy` / `RateLimit` fields
//! of draft-ietf-httpapi-ratelimit-headers-11, written from a bucket's rate and burst.

use core::time::Duration;

use http::HeaderValue;
use http::header::HeaderName;

use crate::Rate;

/// `RateLimit-Policy`.
pub(super) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub(super) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A policy name that is not a valid Structured Fields string (printable ASCII only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPolicyName;

impl core::fmt::Display for InvalidPolicyName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a RateLimit policy name must be printable ASCII (0x20..=0x7E)")
    }
}

impl core::error::Error for InvalidPolicyName {}

/// A bucket's quota as the draft's fields state it, with the policy name quoted once.
#[derive(Debug, Clone)]
pub(super) struct Quota {
    /// The name as an SF string, quotes included.
    quoted: String,
    /// `RateLimit-Policy`, the same on every response.
    policy: HeaderValue,
}

impl Quota {
    /// `q` is the burst, `w` the time an empty bucket takes to refill completely, rounded up
    /// to whole seconds (at least 1): a client that sends at most `q` requests in any `w`
    /// seconds is never refused (a GCRA bucket admits `burst + rate·d` in any interval d).
    pub(super) fn new(name: &str, rate: Rate, burst: u64) -> Result<Self, InvalidPolicyName> {
        let mut quoted = String::with_capacity(name.len() + 2);
        quoted.push('"');
        for c in name.chars() {
            match c {
                '"' | '\\' => {
                    quoted.push('\\');
                    quoted.push(c);
                }
                ' '..='~' => quoted.push(c),
                _ => return Err(InvalidPolicyName),
            }
        }
        quoted.push('"');
        let refill =
            rate.period().as_nanos().saturating_mul(u128::from(burst)) / u128::from(rate.count());
        let window = refill.div_ceil(1_000_000_000).max(1);
        let policy = format!("{quoted};q={burst};w={window}");
        let policy = HeaderValue::from_str(&policy).map_err(|_| InvalidPolicyName)?;
        Ok(Self { quoted, policy })
    }

    /// The `RateLimit-Policy` value.
    pub(super) fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// A `RateLimit` value: `r` requests available now; `t`, when given, the seconds within
    /// which no more than `r` can be used.
    ///
    /// Written on every refusal (and every admitted response when reporting): one allocation,
    /// the value's own, which the `HeaderValue` takes over; digits written by hand rather than
    /// through `core::fmt`.
    pub(super) fn limit(&self, r: u64, t: Option<u64>) -> HeaderValue {
        // The name, `;r=`, `;t=`, and at most 20 digits each.
        let mut value = Vec::with_capacity(self.quoted.len() + 46);
        value.extend_from_slice(self.quoted.as_bytes());
        value.extend_from_slice(b";r=");
        push_decimal(&mut value, r);
        if let Some(t) = t {
            value.extend_from_slice(b";t=");
            push_decimal(&mut value, t);
        }
        // Printable ASCII by construction (checked in `new`).
        HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20]; // u64::MAX has 20
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is a digit: the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `Retry-After` in whole seconds: rounded up (a client retrying then finds its token), and
/// never 0 (a refused client must wait, and `0` invites an immediate retry storm).
pub(super) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0));
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_states_burst_and_refill_window() {
        let q = Quota::new("default", Rate::per_second(10), 10).unwrap();
        assert_eq!(q.policy(), "\"default\";q=10;w=1");
        // 2 per second, burst 5: an empty bucket refills in 2.5 s, stated as 3.
        let q = Quota::new("per-ip", Rate::per_second(2), 5).unwrap();
        assert_eq!(q.policy(), "\"per-ip\";q=5;w=3");
        let q = Quota::new("hourly", Rate::per_hour(100), 100).unwrap();
        assert_eq!(q.policy(), "\"hourly\";q=100;w=3600");
        // Faster than a second still says one second.
        let q = Quota::new("x", Rate::per_second(1000), 1).unwrap();
        assert_eq!(q.policy(), "\"x\";q=1;w=1");
    }

    #[test]
    fn the_limit_field_names_the_policy() {
        let q = Quota::new("default", Rate::per_second(10), 10).unwrap();
        assert_eq!(q.limit(0, Some(5)), "\"default\";r=0;t=5");
        assert_eq!(q.limit(7, None), "\"default\";r=7");
    }

    #[test]
    fn the_limit_field_writes_every_number_in_full() {
        let q = Quota::new("p", Rate::per_second(1), 1).unwrap();
        for (r, t) in [(0, 0), (9, 10), (10, 99), (1_234_567_890, 1), (u64::MAX, u64::MAX)] {
            assert_eq!(q.limit(r, Some(t)), format!("\"p\";r={r};t={t}").as_str());
            assert_eq!(q.limit(r, None), format!("\"p\";r={r}").as_str());
        }
    }

    #[test]
    fn names_are_escaped_or_refused() {
        let q = Quota::new(r#"a"b\c"#, Rate::per_second(1), 1).unwrap();
        assert_eq!(q.policy(), r#""a\"b\\c";q=1;w=1"#);
        assert_eq!(Quota::new("é", Rate::per_second(1), 1).unwrap_err(), InvalidPolicyName);
        assert_eq!(Quota::new("a\nb", Rate::per_second(1), 1).unwrap_err(), InvalidPolicyName);
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }
}
