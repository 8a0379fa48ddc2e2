//! A model's limits as the scripts' arguments: integers in the scripts' time unit (µs with the
//! server clock), checked to stay exact in Lua's doubles, and a fingerprint of the whole config
//! stored with the state so two processes that disagree are told so.

use tollgate::model::{Counts, Limit, LimitKind};
use tollgate::{InvalidConfig, Rate};

/// Every integer a script computes with stays below this (Lua numbers are doubles, exact
/// below 2^53; one bit of headroom for sums).
pub(crate) const EXACT: u64 = 1 << 52;

/// Nanoseconds per time unit of the production scripts (µs, as `TIME` gives).
pub(crate) const UNIT_NS: u64 = 1_000;

fn too_large(field: &'static str) -> InvalidConfig {
    InvalidConfig {
        field,
        reason: "too large for the Redis backend (its arithmetic is exact below 2^52)",
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// One token of `rate` costs `P / D` time units of `unit_ns` each: `(P, D)`, reduced.
pub(crate) fn token_cost(rate: Rate, unit_ns: u64) -> Result<(u64, u64), InvalidConfig> {
    let period = rate.period().as_nanos();
    let d = u128::from(rate.count()) * u128::from(unit_ns);
    let g = gcd(period, d);
    let (p, d) = (period / g, d / g);
    if p >= u128::from(EXACT) || d >= u128::from(EXACT) {
        return Err(too_large("rate"));
    }
    Ok((p as u64, d as u64))
}

/// The limits as 6 integers each (see `rule.lua`), and how long the state must outlive its
/// last write, in ms.
pub(crate) fn limits(limits: &[Limit], unit_ns: u64) -> Result<(Vec<u64>, u64), InvalidConfig> {
    let mut out = Vec::with_capacity(limits.len() * 6);
    let mut ttl_units: u64 = 0;
    for l in limits {
        l.validate()?;
        if l.max >= EXACT / 4 {
            return Err(too_large("max"));
        }
        let counts = match l.counts {
            Counts::Requests => 0,
            Counts::Tokens => 1,
            Counts::InputTokens => 2,
            Counts::OutputTokens => 3,
        };
        match l.kind {
            LimitKind::Window { window, slots } => {
                let w = u64::try_from(window.as_nanos().div_ceil(u128::from(unit_ns)))
                    .map_err(|_| too_large("window"))?
                    .max(1);
                if w >= EXACT / 4 {
                    return Err(too_large("window"));
                }
                let s = w.div_ceil(u64::from(slots));
                out.extend([0, counts, l.max, w, s, u64::from(slots) + 1]);
                ttl_units = ttl_units.max(w + s);
            }
            LimitKind::Bucket { rate } => {
                let (p, d) = token_cost(rate, unit_ns)?;
                let full = u128::from(l.max) * u128::from(p);
                if full >= u128::from(EXACT / 4) {
                    return Err(too_large("max"));
                }
                out.extend([1, counts, l.max, p, d, 0]);
                ttl_units = ttl_units.max(u64::try_from(full / u128::from(d)).unwrap_or(0) + 1);
            }
        }
    }
    let ttl_ms = u128::from(ttl_units) * u128::from(unit_ns) / 1_000_000 + 1_000;
    Ok((out, u64::try_from(ttl_ms).unwrap_or(u64::MAX)))
}

/// A short hex fingerprint of a config's integers.
pub(crate) fn fingerprint(kind: &str, words: &[u64]) -> String {
    let mut h = sha1_smol::Sha1::new();
    h.update(kind.as_bytes());
    for w in words {
        h.update(&w.to_le_bytes());
    }
    h.digest().to_string()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn each_token_class_has_its_own_code() {
        let minute = Duration::from_secs(60);
        let classes = [
            (Counts::Requests, 0),
            (Counts::Tokens, 1),
            (Counts::InputTokens, 2),
            (Counts::OutputTokens, 3),
        ];
        for (counts, code) in classes {
            let (w, _) = limits(&[Limit::window("l", counts, 1_000, minute)], 1_000).unwrap();
            assert_eq!(w[1], code, "{counts:?}");
        }
    }

    #[test]
    fn costs_are_reduced_exactly() {
        assert_eq!(token_cost(Rate::per_second(10), 1_000).unwrap(), (100_000, 1));
        assert_eq!(token_cost(Rate::per_second(1_000_000_000), 1_000).unwrap(), (1, 1_000));
        assert_eq!(token_cost(Rate::per_minute(7), 1).unwrap(), (60_000_000_000, 7));
    }

    #[test]
    fn windows_round_up_to_whole_units() {
        let l = [Limit::requests("r", 5, Duration::from_nanos(1_500)).with_slots(2)];
        let (w, ttl) = limits(&l, 1_000).unwrap();
        assert_eq!(w, [0, 0, 5, 2, 1, 3]);
        assert_eq!(ttl, 1_000);
        assert!(limits(&[Limit::requests("r", EXACT, Duration::from_secs(1))], 1_000).is_err());
    }

    #[test]
    fn fingerprints_differ_with_the_config() {
        assert_eq!(fingerprint("m", &[1, 2]), fingerprint("m", &[1, 2]));
        assert_ne!(fingerprint("m", &[1, 2]), fingerprint("m", &[1, 3]));
        assert_ne!(fingerprint("m", &[1, 2]), fingerprint("b", &[1, 2]));
    }
}
