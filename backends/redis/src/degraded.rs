//! [`Degraded`]: what a limiter does while the store cannot be reached, and [`Share`], the part
//! of a limit one process may use on its own then.

use tollgate::RateLimitConfig;
use tollgate::model::Limit;

/// What an acquire does when Redis cannot be reached (or does not answer in time). Whichever
/// it is, a `tracing` warning under the `tollgate_redis` target says it happened.
///
/// The default is [`FailClosed`](Degraded::FailClosed): shared limits exist because the
/// provider enforces them across every process, and a silent per-process fallback lets N
/// processes overrun them N-fold.
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
    /// deadline (at most the response timeout).
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
