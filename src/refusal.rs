//! [`Refusal`]: what a non-waiting call that found no room says about when room appears,
//! computed only when asked.
//!
//! A refused `try_acquire` on a [`TokenBucket`](crate::TokenBucket) knows *where* on the
//! bucket's token clock the request would fit, but turning that position into an [`Instant`]
//! costs several 64×64→128-bit multiplies and a short search. Most callers that are refused
//! never ask (they drop the request, or count it), so the refusal keeps the position and the
//! bucket's token clock (two words that define it completely), and converts them when
//! [`Refusal::ready_at`] is called. The instant is the one the bucket's eager paths
//! (`reserve_at`) compute, to the nanosecond: the same search on the same clock, started from
//! another first guess (one division here, a precomputed inverse there).

use core::fmt;
use core::hash::{Hash, Hasher};
use core::time::Duration;

use crate::Instant;
use crate::bucket::TokenClock;

/// When a refused request would succeed (if nothing else arrives first), carried by
/// [`Error::RateLimited`](crate::Error::RateLimited).
///
/// Small and `Copy`. Two refusals are equal when they name the same instant, however they were
/// made.
///
/// ```
/// use core::time::Duration;
/// use tollgate::{Error, Instant, Rate, Refusal, TokenBucket};
///
/// let bucket = TokenBucket::new(Rate::per_second(4), 1);
/// bucket.try_acquire_at(1, Instant::ZERO).unwrap();
/// let Err(Error::RateLimited(refusal)) = bucket.try_acquire_at(1, Instant::ZERO) else {
///     panic!("the only token is spent")
/// };
/// assert_eq!(refusal.ready_at(), Instant::from_millis(250));
/// assert_eq!(refusal.retry_after(Instant::from_millis(100)), Duration::from_millis(150));
/// assert_eq!(refusal, Refusal::at(Instant::from_millis(250)));
/// ```
#[derive(Clone, Copy)]
pub struct Refusal {
    repr: Repr,
}

#[derive(Clone, Copy)]
enum Repr {
    /// The instant is known already (windows, the model limiter, a waiting line).
    At(Instant),
    /// A token bucket's refusal: the request fits once the bucket's token clock, of which
    /// this is a copy, reads `units`.
    Tokens { units: u64, clock: TokenClock },
}

impl Refusal {
    /// A refusal whose instant is known: room at `ready_at`.
    ///
    /// ```
    /// use tollgate::{Instant, Refusal};
    ///
    /// assert_eq!(Refusal::at(Instant::from_secs(3)).ready_at(), Instant::from_secs(3));
    /// ```
    pub const fn at(ready_at: Instant) -> Self {
        Self { repr: Repr::At(ready_at) }
    }

    /// A bucket's refusal: room once its token clock reads `units`.
    #[inline]
    pub(crate) const fn tokens(units: u64, clock: TokenClock) -> Self {
        Self { repr: Repr::Tokens { units, clock } }
    }

    /// The earliest instant at which the refused request would succeed, if nothing else
    /// arrives first. [`Instant::MAX`] if it can only succeed after the end of the clock.
    ///
    /// For a bucket's refusal this is computed on each call (one 128-bit division and a few
    /// multiplies); keep the result if you need it more than once.
    pub const fn ready_at(&self) -> Instant {
        match self.repr {
            Repr::At(at) => at,
            Repr::Tokens { units, clock } => match clock.instant_of(units, clock.estimate(units)) {
                Some(at) => at,
                None => Instant::MAX,
            },
        }
    }

    /// How long to wait from `now` until [`ready_at`](Refusal::ready_at): zero if that is
    /// already past. `now` must come from the clock the limiter uses.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::{Instant, Refusal};
    ///
    /// let refusal = Refusal::at(Instant::from_secs(2));
    /// assert_eq!(refusal.retry_after(Instant::from_millis(500)), Duration::from_millis(1_500));
    /// assert_eq!(refusal.retry_after(Instant::from_secs(5)), Duration::ZERO);
    /// ```
    pub const fn retry_after(&self, now: Instant) -> Duration {
        self.ready_at().saturating_duration_since(now)
    }
}

impl PartialEq for Refusal {
    fn eq(&self, other: &Self) -> bool {
        self.ready_at() == other.ready_at()
    }
}

impl Eq for Refusal {}

impl Hash for Refusal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ready_at().hash(state);
    }
}

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusal").field("ready_at", &self.ready_at()).finish()
    }
}

#[cfg(all(test, not(tollgate_loom)))]
mod tests {
    use super::*;
    use crate::{Rate, TokenBucket};

    #[test]
    fn a_known_instant_is_kept_and_compared_by_instant() {
        let r = Refusal::at(Instant::from_secs(1));
        assert_eq!(r.ready_at(), Instant::from_secs(1));
        // The same instant reached lazily, through a bucket's token clock.
        let b = TokenBucket::new(Rate::per_second(1), 1);
        b.try_acquire_at(1, Instant::ZERO).unwrap();
        let Err(crate::Error::RateLimited(lazy)) = b.try_acquire_at(1, Instant::ZERO) else {
            panic!("the only token is spent")
        };
        assert_eq!(lazy.ready_at(), Instant::from_secs(1));
        assert_eq!(lazy, r);
        assert_ne!(Refusal::at(Instant::from_nanos(999_999_999)), lazy);
    }

    #[test]
    fn retry_after_counts_from_now_and_never_goes_negative() {
        let r = Refusal::at(Instant::from_millis(300));
        assert_eq!(r.retry_after(Instant::ZERO), Duration::from_millis(300));
        assert_eq!(r.retry_after(Instant::from_millis(300)), Duration::ZERO);
        assert_eq!(r.retry_after(Instant::MAX), Duration::ZERO);
    }

    #[cfg(feature = "std")]
    #[test]
    fn debug_shows_the_instant_not_the_token_units() {
        let b = TokenBucket::new(Rate::per_second(2), 1);
        b.try_acquire_at(1, Instant::ZERO).unwrap();
        let Err(crate::Error::RateLimited(refusal)) = b.try_acquire_at(1, Instant::ZERO) else {
            panic!("the only token is spent")
        };
        let shown = std::format!("{refusal:?}");
        assert_eq!(shown, std::format!("Refusal {{ ready_at: {:?} }}", Instant::from_millis(500)));
    }
}
