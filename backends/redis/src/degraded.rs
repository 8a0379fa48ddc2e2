//! [`Degraded`]: what a limiter does while the store cannot be reached, and [`Share`], the part
//! of a limit one process may use on its own then.

use tollgate::RateLimitConfig;
use tollgate::model::Limit;

/// What an acquire does when Redis cannot be reached. Whichever it is, a `tracing` warning
/// under the `tollgate_redis` target says it happened.
///
/// The default is [`FailClosed`](Degraded::FailClosed): shared limits exist because the
/// provider enforces them across every process, and a silent per-process fallback lets N
/// processes overrun them N-fold.
///
/// # When the policy answers
///
/// Only on a fault: a connection error, no answer within the whole
/// [`response_timeout`](crate::StoreOptions::response_timeout), or the breaker open after one
/// of them (see [`breaker_cooldown`](crate::StoreOptions::breaker_cooldown); past its
/// cooldown, until the server answers again, the store still counts as unreachable).
///
/// A call cut short by the **caller's own bound** is not a fault: an `acquire_within` or
/// `acquire_before` whose time left is shorter than the response timeout, against a server
/// that is merely slow (load, a long link), fails with
/// [`Error::Store`](crate::Error::Store)`(`[`StoreError::Timeout`](crate::StoreError::Timeout)`)`,
/// its `after` shorter than the response timeout, under **every** policy, nothing admitted,
/// with a warning saying so. Otherwise every short-bounded caller would be admitted past the
/// shared limit exactly when the server is busy, by `FailOpen` without any limit. So does a
/// caller whose bound, even one longer than the response timeout, runs out while it waits for
/// a call this process shares between its callers (behind another call): its `after` is its
/// bound.
///
/// So that `Local` and `FailOpen` still engage when the server is truly gone but every caller
/// uses short bounds (a blackhole: no connection error, no call ever waits the whole
/// timeout), a cut call starts one background probe of the same server (on a cluster, the
/// node of the limit's keys), at most one at a time, that waits the whole response timeout:
/// no answer opens the breaker, and from then on acquires take the policy at once. So within
/// about one response timeout of the server going silent, the policy answers. With
/// `breaker_cooldown` zero there is no breaker to open: only a call that itself waits the
/// whole timeout or sees a connection error takes the policy, and the callers with no bound
/// of their own (`acquire`, `try_acquire`) that waited in this process's line behind it (see
/// below).
///
/// # Callers with no bound of their own
///
/// An `acquire` or `try_acquire` waits at most the response timeout from when it asked, also
/// when it waits for a call this process shares between its callers. Behind a call that
/// hangs the whole timeout (or sees a connection error), it is turned away when that call
/// fails, [`StoreError::Unavailable`](crate::StoreError::Unavailable), not tried: a fault,
/// the policy answers. Behind calls that answer, each within the timeout, but too slowly
/// for it to be answered in one (a call out when it asked, then the one
/// carrying it), its wait ends at the timeout with
/// [`StoreError::Timeout`](crate::StoreError::Timeout): as for a caller's own bound, not a
/// fault unless the store is known unreachable, under every policy.
///
/// ```
/// use tollgate_redis::{Degraded, Share};
///
/// assert_eq!(Degraded::default(), Degraded::FailClosed);
/// let quarter = Degraded::Local { share: Share::percent(25) };
/// # let _ = quarter;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Degraded {
    /// Admit nothing: every acquire returns [`Error::Store`](crate::Error::Store) by its
    /// deadline (at most the response timeout), as a cut call does under every policy.
    #[default]
    FailClosed,
    /// Admit everything, unlimited (the permit says it was not counted).
    FailOpen,
    /// Admit through an in-process limiter holding `share` of every limit (at least 1 of
    /// each): with N processes, `share = 1/N` keeps the total within the limit.
    Local {
        /// This process's part of each limit.
        share: Share,
    },
}

/// A fraction of a limit, `numerator / denominator`, at most 1.
///
/// ```
/// use tollgate_redis::Share;
///
/// assert_eq!(Share::percent(25).of(1_000), 250);
/// assert_eq!(Share::new(1, 3).of(10), 3);
/// assert_eq!(Share::new(1, 1_000).of(10), 1); // never below 1
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Share {
    numerator: u32,
    denominator: u32,
}

impl Share {
    /// `numerator / denominator`, clamped into `(0, 1]` (a zero denominator counts as 1).
    pub const fn new(numerator: u32, denominator: u32) -> Self {
        let d = if denominator == 0 { 1 } else { denominator };
        let n = if numerator > d { d } else { numerator };
        Self { numerator: n, denominator: d }
    }

    /// `p` percent (at most 100).
    pub const fn percent(p: u32) -> Self {
        Self::new(p, 100)
    }

    /// This share of `limit`, rounded down, at least 1.
    pub fn of(&self, limit: u64) -> u64 {
        let v = u128::from(limit) * u128::from(self.numerator) / u128::from(self.denominator);
        u64::try_from(v).unwrap_or(u64::MAX).max(1)
    }

    /// `config` with every limit scaled to this share.
    pub(crate) fn config(&self, config: &RateLimitConfig) -> RateLimitConfig {
        RateLimitConfig {
            rpm: u32::try_from(self.of(config.rpm.into())).unwrap_or(u32::MAX),
            tpm: self.of(config.tpm),
            max_parallel_requests: u32::try_from(self.of(config.max_parallel_requests.into()))
                .unwrap_or(u32::MAX),
            limits: config
                .limits
                .iter()
                .map(|l| Limit { max: self.of(l.max), ..l.clone() })
                .collect(),
            ..config.clone()
        }
    }
}
