//! [`TokenBucket`]: a GCRA token bucket whose whole state is one 64-bit atomic word — lock-free
//! on targets with native 64-bit atomics, one critical section per operation elsewhere (see
//! `sync.rs`).
//!
//! # How it counts
//!
//! GCRA keeps one number, the *theoretical arrival time* (TAT): the moment the bucket would be
//! full again. A request for `n` tokens at `now` moves it to `max(TAT, now) + n·T` (`T` = one
//! token's worth of time) and is admitted if that stays within `burst·T` of `now`.
//!
//! Instead of nanoseconds, the TAT here is kept in *token units*: fixed-point tokens with
//! [`TokenBucket::fractional_bits`] bits after the point. `now` is converted to token units by
//! one 64×64-bit multiply with a precomputed 64.64 factor, and admitting `n` tokens adds exactly
//! `n << bits`. Nothing is rounded per request, so rounding never accumulates: the long-run
//! admitted rate matches the configured rate to better than 1e-9 relative, from one per day to
//! billions per second. The number of fractional bits is picked per bucket so that the token
//! clock covers the whole `u64` nanosecond range of [`Instant`] (584 years) while the largest
//! reservation still fits. Fast rates (above 2.5·10^8 per second) get whole tokens and a token
//! clock that ends after 2^62/rate ns: 34 years at `u32::MAX` per second. Rates above 8 per
//! nanosecond, whose clock would end within 18 years, are refused at construction.
//!
//! A rejected attempt writes nothing. An admitted one is a single compare-and-swap.

use core::time::Duration;

use crate::error::{Error, InvalidConfig};
use crate::refusal::Refusal;
use crate::sync::{AtomicU64, Ordering, const_fn};
use crate::{Instant, Rate};

/// The token clock saturates here; `TAT - now` may add at most this much again, so `TAT` stays
/// below 2^63 and `TAT + n·unit` cannot overflow.
const TOKEN_CLOCK_MAX: u64 = 1 << 62;
/// Longest allowed lead of the TAT over the token clock (queued reservations included).
const HORIZON: u64 = 1 << 62;
/// `burst << bits` must stay below this.
const BURST_UNITS_MAX: u64 = 1 << 61;
/// Orderings of every access to the TAT: see "Memory ordering" on `TokenBucket::update_tat`.
const LOAD: Ordering = Ordering::Relaxed;
const RMW: Ordering = Ordering::Relaxed;

/// The immutable part of a bucket: rate, burst and its token clock.
#[derive(Debug, Clone, Copy)]
struct Config {
    rate: Rate,
    burst: u64,
    /// Fractional bits of a token unit.
    bits: u32,
    /// `burst << bits`.
    burst_units: u64,
    clock: TokenClock,
    /// Nanoseconds per token unit, 64.64 fixed-point, rounded down: the inverse of the
    /// clock's factor, used only to *estimate* ready instants on the eager paths (the exact
    /// instant is then searched from the estimate). Saves a 128-bit division per conversion.
    nanos_per_unit_int: u64,
    nanos_per_unit_frac: u64,
}

/// A bucket's fixed-point clock: converts instants to token units, and token units back to
/// the first instant that reaches them. Two words define it completely, so a [`Refusal`]
/// carries a copy and converts later to exactly the instant the bucket would have computed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenClock {
    /// Token units per nanosecond as a 64.64 fixed-point number: `int + frac / 2^64`.
    per_nano_int: u64,
    per_nano_frac: u64,
}

impl Config {
    const fn new(rate: Rate, burst: u64) -> Result<Self, InvalidConfig> {
        if burst == 0 {
            return Err(InvalidConfig::new("burst", "must be at least 1"));
        }
        if burst >= BURST_UNITS_MAX {
            return Err(InvalidConfig::new("burst", "must be below 2^61"));
        }
        let n = rate.count() as u128;
        let p = rate.period_nanos() as u128;
        // Above 8 tokens per nanosecond the token clock (whole tokens, capped at 2^62) would
        // stop within 2^59 ns (18 years) of the clock's epoch, after which the bucket could
        // never refill. Refuse such rates rather than fail silently years later.
        if n > 8 * p {
            return Err(InvalidConfig::new("rate", "must be at most 8 per nanosecond"));
        }
        // Most bits such that (a) the token clock at Instant::MAX stays within
        // TOKEN_CLOCK_MAX: n·2^(64+bits)/p ≤ 2^62, i.e. n·2^(bits+2) ≤ p; and (b) the burst
        // fits. Fast rates violate (a) even at 0 bits; they keep whole tokens and their token
        // clock saturates after 2^62/rate ns (over 34 years at u32::MAX per second).
        let mut bits: u32 = 0;
        while bits < 61
            && (n << (bits + 3)) <= p
            && ((burst as u128) << (bits + 1)) < BURST_UNITS_MAX as u128
        {
            bits += 1;
        }
        let scaled = n << bits; // < 2^125
        let inv_int = p / scaled; // p < 2^64, so this fits
        let inv_frac = ((p % scaled) << 64) / scaled; // p mod scaled ≤ p < 2^64: no overflow
        Ok(Self {
            rate,
            burst,
            bits,
            burst_units: burst << bits,
            clock: TokenClock::new(scaled, p),
            nanos_per_unit_int: inv_int as u64,
            nanos_per_unit_frac: if inv_frac > u64::MAX as u128 {
                u64::MAX
            } else {
                inv_frac as u64
            },
        })
    }

    #[inline]
    fn check_n(&self, n: u64) -> Result<u64, Error> {
        if n > self.burst {
            return Err(Error::InsufficientCapacity { requested: n, capacity: self.burst });
        }
        Ok(n << self.bits)
    }

    /// Where a request that would move the TAT to `new_tat` stands at token clock `clock`:
    /// `None` if it fits now, else the token-clock reading from which it fits. The one place
    /// that turns "a new TAT" into "when": [`Config::ready_at`] and [`Config::refusal`]
    /// convert its answer, eagerly and lazily.
    #[inline]
    const fn wait_target(&self, new_tat: u64, clock: u64) -> Option<u64> {
        if new_tat <= clock + self.burst_units { None } else { Some(new_tat - self.burst_units) }
    }

    /// The instant from which a TAT of `new_tat` fits, for a caller at `now` (`clock` on the
    /// token clock): `now` if it fits already, `None` if only after the end of the clock.
    #[inline]
    fn ready_at(&self, new_tat: u64, clock: u64, now: Instant) -> Option<Instant> {
        match self.wait_target(new_tat, clock) {
            None => Some(now),
            // Past `now`, since the token clock reads `clock < target` at `now`.
            Some(target) => self.instant_of(target),
        }
    }

    /// The refusal of a request that fits from token-clock reading `target` on (a
    /// [`Config::wait_target`]): the same instant as [`Config::ready_at`], computed only if
    /// asked for.
    #[inline]
    fn refusal(&self, target: u64) -> Refusal {
        Refusal::tokens(target, self.clock)
    }

    /// The first instant at which the token clock reads `units` (see
    /// [`TokenClock::instant_of`]), searched from the estimate of the precomputed inverse.
    fn instant_of(&self, units: u64) -> Option<Instant> {
        let estimate = units as u128 * self.nanos_per_unit_int as u128
            + ((units as u128 * self.nanos_per_unit_frac as u128) >> 64);
        let guess = if estimate > u64::MAX as u128 { u64::MAX } else { estimate as u64 };
        self.clock.instant_of(units, guess)
    }
}

impl TokenClock {
    /// The clock that counts `scaled` token units (tokens shifted by the fractional bits)
    /// per `period` nanoseconds; as [`Config::new`] picks them, nothing here overflows.
    const fn new(scaled: u128, period: u128) -> Self {
        let int = scaled / period;
        let rem = scaled % period; // < period ≤ 2^64
        // Rounded up, so the token clock is exact at whole-token instants ("ready at 100 ms",
        // not 100.000001 ms); it may then read at most one unit high elsewhere.
        let frac = (rem << 64).div_ceil(period);
        Self {
            per_nano_int: if int > u64::MAX as u128 { u64::MAX } else { int as u64 },
            per_nano_frac: if frac > u64::MAX as u128 { u64::MAX } else { frac as u64 },
        }
    }

    /// The token clock: `now` in token units, rounded down, saturating at TOKEN_CLOCK_MAX.
    #[inline]
    const fn tokens_at(&self, now: Instant) -> u64 {
        let t = now.as_nanos() as u128;
        let whole = t * self.per_nano_int as u128;
        let part = (t * self.per_nano_frac as u128) >> 64;
        let units = whole + part;
        if units > TOKEN_CLOCK_MAX as u128 { TOKEN_CLOCK_MAX } else { units as u64 }
    }

    /// Whether the token clock reads at least `units` at `t` ns.
    #[inline]
    const fn reached(&self, t: u64, units: u64) -> bool {
        self.tokens_at(Instant::from_nanos(t)) >= units
    }

    /// A first guess at the instant the clock reaches `units`, for [`TokenClock::instant_of`]
    /// when no precomputed inverse is at hand: one 128-bit division.
    pub(crate) const fn estimate(&self, units: u64) -> u64 {
        let per_nano = ((self.per_nano_int as u128) << 64) | self.per_nano_frac as u128;
        // A u64 shifted by 64 fits in 128 bits; the factor is never zero (`frac` is rounded
        // up, and `int` is at least 1 when there is no remainder).
        let nanos = ((units as u128) << 64) / per_nano;
        if nanos > u64::MAX as u128 { u64::MAX } else { nanos as u64 }
    }

    /// The first instant at which the token clock reads at least `units`, or `None` if it
    /// never does (the end of the clock comes first), searched from the instant `guess`. The
    /// answer does not depend on the guess, only the time taken to find it does. "Never"
    /// must stay distinct from `Instant::MAX`: at `now == Instant::MAX` the two would
    /// otherwise read as "now".
    pub(crate) const fn instant_of(&self, units: u64, guess: u64) -> Option<Instant> {
        if units == 0 {
            return Some(Instant::ZERO);
        }
        if units > self.tokens_at(Instant::MAX) {
            return None;
        }
        // Search for the first nanosecond at which the token clock reaches `units`
        // (galloping from the guess, then bisecting): the token clock may be one unit off the
        // exact value, and one unit can span many nanoseconds on slow rates.
        // Invariant once set up: !reached(lo) && reached(hi).
        let (mut lo, mut hi);
        if self.reached(guess, units) {
            if guess == 0 || !self.reached(guess - 1, units) {
                return Some(Instant::from_nanos(guess));
            }
            hi = guess - 1;
            let mut step: u64 = 1;
            loop {
                let probe = hi.saturating_sub(step);
                if !self.reached(probe, units) {
                    lo = probe;
                    break;
                }
                if probe == 0 {
                    return Some(Instant::ZERO);
                }
                hi = probe;
                step = step.saturating_mul(2);
            }
        } else {
            lo = guess;
            let mut step: u64 = 1;
            loop {
                let probe = lo.saturating_add(step);
                if self.reached(probe, units) {
                    hi = probe;
                    break;
                }
                lo = probe;
                step = step.saturating_mul(2);
            }
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.reached(mid, units) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(Instant::from_nanos(hi))
    }
}

/// A token bucket (GCRA): up to `burst` tokens at once, refilled at `rate`. Lock-free where
/// the target has native 64-bit atomics; elsewhere each operation is one critical section.
///
/// Every operation takes the current time explicitly (`*_at(now)`), so the bucket works with
/// any [`Clock`](crate::Clock) and in `static`s on targets with no clock at all; the limiters
/// read the clock for you.
///
/// ```
/// use tollgate::{Instant, Rate, TokenBucket};
///
/// static RADIO: TokenBucket = TokenBucket::new(Rate::per_second(2), 2);
///
/// let t0 = Instant::ZERO;
/// assert!(RADIO.try_acquire_at(2, t0).is_ok()); // the full burst at once
/// let err = RADIO.try_acquire_at(1, t0).unwrap_err();
/// assert_eq!(err.ready_at(), Some(Instant::from_millis(500))); // then one every 500 ms
/// assert!(RADIO.try_acquire_at(1, Instant::from_millis(500)).is_ok());
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    /// Theoretical arrival time in token units. 0 means "full since the epoch".
    tat: AtomicU64,
    config: Config,
}

/// Tokens committed by [`TokenBucket::reserve_at`]: the holder may proceed at
/// [`ready_at`](Reservation::ready_at). Give it back with [`TokenBucket::cancel`].
///
/// Not `Clone`: each reservation can be given back at most once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a reservation holds tokens; wait until `ready_at` or give it back with `cancel`"]
pub struct Reservation {
    tokens: u64,
    /// The bucket's TAT right after this reservation: if it is still the TAT, nobody reserved
    /// after us and the reservation can be undone exactly.
    tat_after: u64,
    ready_at: Instant,
}

impl Reservation {
    /// The instant from which the holder may proceed.
    pub fn ready_at(&self) -> Instant {
        self.ready_at
    }

    /// How many tokens are held.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

impl TokenBucket {
    const_fn! {
        /// A full bucket holding up to `burst` tokens, refilled at `rate`.
        ///
        /// # Panics
        /// If `burst` is 0 or not below 2^61, or the rate is above 8 per nanosecond (at compile
        /// time in const context). Use
        /// [`TokenBucket::try_new`] for values read at run time.
        pub fn new(rate: Rate, burst: u64) -> Self {
            match Config::new(rate, burst) {
                Ok(config) => Self { tat: AtomicU64::new(0), config },
                Err(_) => panic!("tollgate::TokenBucket needs 1 <= burst < 2^61 and at most 8 tokens per ns"),
            }
        }
    }

    const_fn! {
        /// A full bucket, or an error if `burst` is 0 or not below 2^61, or the rate is above 8
        /// per nanosecond.
        pub fn try_new(rate: Rate, burst: u64) -> Result<Self, InvalidConfig> {
            match Config::new(rate, burst) {
                Ok(config) => Ok(Self { tat: AtomicU64::new(0), config }),
                Err(e) => Err(e),
            }
        }
    }

    /// The refill rate.
    pub fn rate(&self) -> Rate {
        self.config.rate
    }

    /// The most tokens the bucket can hold (and grant at once).
    pub fn burst(&self) -> u64 {
        self.config.burst
    }

    /// Fractional bits of the bucket's fixed-point token clock: time is resolved to
    /// `2^-bits` of a token. Over any interval of length `d` the bucket admits at most
    /// `burst + rate·d + 2^(1-bits)` tokens (whole tokens only, so the last term matters only
    /// for rates above 2.5·10^8 per second, which count whole tokens).
    pub fn fractional_bits(&self) -> u32 {
        self.config.bits
    }

    /// Takes `n` tokens if they are all available at `now`.
    ///
    /// `n == 0` always succeeds and takes nothing. A refusal writes nothing.
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] if `n > burst`; [`Error::RateLimited`] otherwise, whose
    /// [`Refusal`] says when `n` tokens will be available (computed only if asked for).
    #[inline]
    pub fn try_acquire_at(&self, n: u64, now: Instant) -> Result<(), Error> {
        let cost = self.config.check_n(n)?;
        if cost == 0 {
            return Ok(());
        }
        let clock = self.config.clock.tokens_at(now);
        self.update_tat(|tat| {
            let new_tat = tat.max(clock) + cost;
            match self.config.wait_target(new_tat, clock) {
                None => Ok((new_tat, ())),
                Some(target) => Err(Error::RateLimited(self.config.refusal(target))),
            }
        })
    }

    /// Reports whether `n` tokens are available at `now`, without taking them.
    ///
    /// # Errors
    /// As [`TokenBucket::try_acquire_at`].
    pub fn peek_at(&self, n: u64, now: Instant) -> Result<(), Error> {
        let cost = self.config.check_n(n)?;
        if cost == 0 {
            return Ok(());
        }
        let clock = self.config.clock.tokens_at(now);
        let new_tat = self.tat.load(LOAD).max(clock) + cost;
        match self.config.wait_target(new_tat, clock) {
            None => Ok(()),
            Some(target) => Err(Error::RateLimited(self.config.refusal(target))),
        }
    }

    /// Whole tokens available at `now`.
    pub fn available_at(&self, now: Instant) -> u64 {
        let clock = self.config.clock.tokens_at(now);
        let lead = self.tat.load(LOAD).saturating_sub(clock);
        self.config.burst_units.saturating_sub(lead) >> self.config.bits
    }

    /// Commits `n` tokens now and returns when the caller may proceed: the reservations of
    /// all callers are served in the order they were made, each at its own instant. This is
    /// what waiting is built on: the first caller in a limiter's line reserves, then sleeps
    /// once until [`Reservation::ready_at`].
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] if `n > burst`; [`Error::MaxWaitExceeded`] if the queue
    /// of reservations already reaches beyond 2^62 token units (about 146 years at one per
    /// nanosecond). Nothing is reserved on error.
    pub fn reserve_at(&self, n: u64, now: Instant) -> Result<Reservation, Error> {
        self.reserve_before_at(n, now, Instant::MAX)
    }

    /// Like [`TokenBucket::reserve_at`], but refuses up front if the caller could not proceed
    /// within `max_wait` of `now` (load shedding): nothing is reserved and the error carries
    /// the instant at which the reservation would be ready.
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`] or [`Error::InsufficientCapacity`].
    pub fn reserve_within_at(
        &self,
        n: u64,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Reservation, Error> {
        self.reserve_before_at(n, now, now.saturating_add(max_wait))
    }

    /// Like [`TokenBucket::reserve_at`], but refuses up front if the caller could not proceed
    /// by `deadline`.
    ///
    /// ```
    /// use tollgate::{Error, Instant, Rate, TokenBucket};
    ///
    /// let bucket = TokenBucket::new(Rate::per_second(1), 1);
    /// let first = bucket.reserve_before_at(1, Instant::ZERO, Instant::ZERO).unwrap();
    /// assert_eq!(first.ready_at(), Instant::ZERO);
    /// // The next token comes at 1 s: too late for a deadline of 500 ms, so nothing is taken.
    /// let late = bucket.reserve_before_at(1, Instant::ZERO, Instant::from_millis(500));
    /// assert_eq!(late.unwrap_err(), Error::MaxWaitExceeded { ready_at: Instant::from_secs(1) });
    /// let second = bucket.reserve_before_at(1, Instant::ZERO, Instant::from_secs(1)).unwrap();
    /// assert_eq!(second.ready_at(), Instant::from_secs(1));
    /// ```
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`] or [`Error::InsufficientCapacity`].
    pub fn reserve_before_at(
        &self,
        n: u64,
        now: Instant,
        deadline: Instant,
    ) -> Result<Reservation, Error> {
        let cost = self.config.check_n(n)?;
        let clock = self.config.clock.tokens_at(now);
        self.update_tat(|tat| {
            let new_tat = tat.max(clock) + cost;
            let Some(ready_at) = self.config.ready_at(new_tat, clock, now) else {
                // Only after the end of the clock: never, whatever the deadline.
                return Err(Error::MaxWaitExceeded { ready_at: Instant::MAX });
            };
            if new_tat - clock > HORIZON || ready_at > deadline {
                return Err(Error::MaxWaitExceeded { ready_at });
            }
            if cost == 0 {
                // Takes nothing, so it writes nothing: the TAT stays as it is.
                return Ok((tat, Reservation { tokens: 0, tat_after: tat, ready_at }));
            }
            Ok((new_tat, Reservation { tokens: n, tat_after: new_tat, ready_at }))
        })
    }

    /// The instant from which the bucket is full again (its TAT as an instant): a head
    /// handed the line later than this by a little was kept from its tokens by the hand-over
    /// alone. `Instant::MAX` if that is past the end of the clock.
    pub(crate) fn full_at(&self) -> Instant {
        self.config.instant_of(self.tat.load(LOAD)).unwrap_or(Instant::MAX)
    }

    /// The instant at which `tokens` more could be admitted at the earliest, counting from
    /// the current state at `now` (never before `now`). Unlike the `try`/`reserve` paths,
    /// `tokens` may exceed the burst: the wait machine asks for everything queued ahead of a
    /// caller plus its own request. `Instant::MAX` means "not before the end of the clock".
    pub(crate) fn estimate_ready_at(&self, tokens: u64, now: Instant) -> Instant {
        let bits = self.config.bits;
        if tokens > (u64::MAX >> bits) {
            return Instant::MAX;
        }
        let clock = self.config.clock.tokens_at(now);
        let new_tat = self.tat.load(LOAD).max(clock).saturating_add(tokens << bits);
        self.config.ready_at(new_tat, clock, now).unwrap_or(Instant::MAX)
    }

    /// Gives a reservation's tokens back, if that moves nobody else: that is, if no tokens
    /// were taken or reserved after it (or those were given back first). Returns whether the
    /// tokens came back.
    ///
    /// When it returns `false` the tokens stay spent: taking them back would let later
    /// callers, whose instants are already fixed, run closer together than the rate allows.
    /// The bucket is never over-admitted; the cost is that one cancelled waiter in the middle
    /// of a queue wastes its slot.
    pub fn cancel(&self, reservation: Reservation) -> bool {
        if reservation.tokens == 0 {
            return true;
        }
        let before = reservation.tat_after - (reservation.tokens << self.config.bits);
        self.update_tat(|tat| if tat == reservation.tat_after { Ok((before, ())) } else { Err(()) })
            .is_ok()
    }

    /// The TAT, for the keyed limiter, which keeps an idle key's state as this one word.
    #[cfg(feature = "alloc")]
    pub(crate) fn tat(&self) -> u64 {
        self.tat.load(LOAD)
    }

    /// A bucket of the same configuration whose state is `tat` (a keyed limiter's key that
    /// someone now waits on gets a whole bucket and a line for the time of the wait).
    #[cfg(feature = "alloc")]
    pub(crate) fn with_tat(&self, tat: u64) -> Self {
        Self { tat: AtomicU64::new(tat), config: self.config }
    }

    /// [`TokenBucket::try_acquire_at`] on a TAT kept outside the bucket (under the keyed
    /// limiter's shard lock): the same decision, written to `tat` only if admitted.
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn try_acquire_tat(&self, tat: &mut u64, n: u64, now: Instant) -> Result<(), Error> {
        let cost = self.config.check_n(n)?;
        if cost == 0 {
            return Ok(());
        }
        let clock = self.config.clock.tokens_at(now);
        let new_tat = (*tat).max(clock) + cost;
        match self.config.wait_target(new_tat, clock) {
            None => {
                *tat = new_tat;
                Ok(())
            }
            Some(target) => Err(Error::RateLimited(self.config.refusal(target))),
        }
    }

    /// Whether a bucket whose TAT is `tat` is full at `now`: then every decision it makes
    /// from `now` on is that of a fresh bucket (TAT 0), so a keyed limiter may forget it.
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn tat_is_full_at(&self, tat: u64, now: Instant) -> bool {
        tat <= self.config.clock.tokens_at(now)
    }

    /// Whole tokens available at `now` in a bucket whose TAT is `tat`.
    #[cfg(feature = "alloc")]
    pub(crate) fn available_tat(&self, tat: u64, now: Instant) -> u64 {
        let clock = self.config.clock.tokens_at(now);
        let lead = tat.saturating_sub(clock);
        self.config.burst_units.saturating_sub(lead) >> self.config.bits
    }

    /// The instant from which a bucket whose TAT is `tat` is full (`Instant::MAX`: never).
    #[cfg(feature = "alloc")]
    pub(crate) fn full_at_tat(&self, tat: u64) -> Instant {
        self.config.instant_of(tat).unwrap_or(Instant::MAX)
    }

    /// The one read-modify-write of the TAT, shared by every operation that changes it:
    /// reads the TAT, lets `decide` turn it into the new TAT and the caller's answer (or a
    /// refusal, which writes nothing), and installs the new TAT with one compare-and-swap.
    /// If another caller changed the TAT in between, `decide` runs again on the value that
    /// won, so every decision is made on the TAT it replaces. A decision that returns the TAT
    /// it was given writes nothing.
    ///
    /// # Memory ordering
    ///
    /// Relaxed throughout, on purpose. The TAT is the bucket's whole state, and nothing else
    /// is published or consumed through it: a decision depends only on the TAT and the
    /// caller's arguments, and an admitted caller learns nothing about any other memory from
    /// having been admitted. What the bucket promises — no token granted twice, a cancel
    /// undoing exactly its own reservation — needs only that each compare-and-swap decides
    /// on the TAT it replaces, and that holds at every ordering: read-modify-writes of one
    /// atomic are totally ordered (its modification order), and a compare-and-swap succeeds
    /// only against the latest value in that order. A stale first `load` costs one failed
    /// compare-and-swap, which returns the current value to decide on again. The plain
    /// loads (`peek_at`, `available_at`, the estimates) are advisory snapshots either way.
    /// Where an order with *other* state matters — a cancelled head's tokens coming back
    /// before the next head reserves (`wait.rs`) — it comes from the semaphore hand-off
    /// between the two, whose release and acquire order the two threads' bucket operations
    /// like any other memory. `tests/loom_bucket.rs` checks these races under loom's model
    /// of relaxed atomics.
    ///
    /// The cost of the stronger orderings would be nothing on x86 (the same `lock cmpxchg`
    /// and plain load) and a barrier per operation on Arm and RISC-V; without native 64-bit
    /// atomics every operation is a critical section, which orders everything anyway.
    #[inline(always)]
    fn update_tat<T, E>(&self, mut decide: impl FnMut(u64) -> Result<(u64, T), E>) -> Result<T, E> {
        let mut tat = self.tat.load(LOAD);
        loop {
            let (new_tat, answer) = decide(tat)?;
            if new_tat == tat {
                return Ok(answer);
            }
            match self.tat.compare_exchange_weak(tat, new_tat, RMW, LOAD) {
                Ok(_) => return Ok(answer),
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(all(test, not(tollgate_loom)))]
mod tests {
    use super::*;

    fn ns(n: u64) -> Instant {
        Instant::from_nanos(n)
    }

    #[test]
    fn burst_then_exact_pacing() {
        let b = TokenBucket::new(Rate::per_second(10), 10);
        for _ in 0..10 {
            b.try_acquire_at(1, Instant::ZERO).unwrap();
        }
        let err = b.try_acquire_at(1, Instant::ZERO).unwrap_err();
        assert_eq!(err, Error::RateLimited(Refusal::at(Instant::from_millis(100))));
        assert!(b.try_acquire_at(1, ns(99_999_999)).is_err());
        b.try_acquire_at(1, Instant::from_millis(100)).unwrap();
        assert_eq!(b.available_at(Instant::from_millis(100)), 0);
        assert_eq!(b.available_at(Instant::from_secs(5)), 10);
    }

    #[test]
    fn n_above_burst_fails_at_once_and_zero_is_free() {
        let b = TokenBucket::new(Rate::per_second(5), 5);
        let e = Error::InsufficientCapacity { requested: 6, capacity: 5 };
        assert_eq!(b.try_acquire_at(6, Instant::ZERO), Err(e));
        assert_eq!(b.reserve_at(6, Instant::ZERO).unwrap_err(), e);
        assert!(matches!(
            b.try_acquire_at(u64::MAX, Instant::ZERO),
            Err(Error::InsufficientCapacity { requested: u64::MAX, capacity: 5 })
        ));
        b.try_acquire_at(0, Instant::ZERO).unwrap();
        assert_eq!(b.available_at(Instant::ZERO), 5);
    }

    /// Found in review: a faster rate's token clock would saturate within years and the
    /// bucket would then never refill; it is refused up front instead.
    #[test]
    fn rates_above_eight_per_nanosecond_are_refused() {
        let too_fast = Rate::new(9, Duration::from_nanos(1));
        assert_eq!(TokenBucket::try_new(too_fast, 1).unwrap_err().field, "rate");
        assert!(TokenBucket::try_new(Rate::new(u64::MAX, Duration::from_nanos(1)), 1).is_err());
        let fastest = TokenBucket::new(Rate::new(8, Duration::from_nanos(1)), 8);
        // Still refilling after 18 years of clock.
        let late = Instant::from_secs(18 * 365 * 86_400);
        fastest.try_acquire_at(8, late).unwrap();
        fastest.try_acquire_at(8, late + Duration::from_nanos(1)).unwrap();
        // u32::MAX per second (the most `per_second` takes) is well inside the range.
        assert!(TokenBucket::try_new(Rate::per_second(u32::MAX), u32::MAX as u64).is_ok());
    }

    #[test]
    fn invalid_burst_is_a_typed_error() {
        assert_eq!(TokenBucket::try_new(Rate::per_second(1), 0).unwrap_err().field, "burst");
        assert!(TokenBucket::try_new(Rate::per_second(1), u64::MAX).is_err());
        assert!(TokenBucket::try_new(Rate::per_second(1), (1 << 61) - 1).is_ok());
    }

    #[test]
    fn rejection_writes_nothing() {
        let b = TokenBucket::new(Rate::per_second(1), 1);
        b.try_acquire_at(1, Instant::ZERO).unwrap();
        let before = b.tat.load(Ordering::Relaxed);
        for _ in 0..5 {
            assert!(b.try_acquire_at(1, ns(10)).is_err());
            assert!(b.peek_at(1, ns(10)).is_err());
        }
        assert_eq!(b.tat.load(Ordering::Relaxed), before);
    }

    #[test]
    fn reservations_queue_in_order_and_the_last_can_be_undone() {
        let b = TokenBucket::new(Rate::per_second(1), 1);
        let r1 = b.reserve_at(1, Instant::ZERO).unwrap();
        let r2 = b.reserve_at(1, Instant::ZERO).unwrap();
        let r3 = b.reserve_at(1, Instant::ZERO).unwrap();
        assert_eq!(r1.ready_at(), Instant::ZERO);
        assert_eq!(r2.ready_at(), Instant::from_secs(1));
        assert_eq!(r3.ready_at(), Instant::from_secs(2));
        // r2 is in the middle: giving it back would move r3.
        assert!(!b.cancel(r2));
        assert!(b.cancel(r3));
        let r4 = b.reserve_at(1, Instant::ZERO).unwrap();
        assert_eq!(r4.ready_at(), Instant::from_secs(2));
        let _ = r1; // never given back: it stays spent
    }

    #[test]
    fn max_wait_refuses_up_front_with_the_ready_instant() {
        let b = TokenBucket::new(Rate::per_second(1), 1);
        b.try_acquire_at(1, Instant::ZERO).unwrap();
        let err = b.reserve_within_at(1, Instant::ZERO, Duration::from_millis(999)).unwrap_err();
        assert_eq!(err, Error::MaxWaitExceeded { ready_at: Instant::from_secs(1) });
        let r = b.reserve_within_at(1, Instant::ZERO, Duration::from_secs(1)).unwrap();
        assert_eq!(r.ready_at(), Instant::from_secs(1));
    }

    #[test]
    fn a_clock_that_steps_back_only_makes_it_stricter() {
        let b = TokenBucket::new(Rate::per_second(1), 2);
        b.try_acquire_at(2, Instant::from_secs(100)).unwrap();
        assert!(b.try_acquire_at(1, Instant::from_secs(50)).is_err());
        assert!(b.try_acquire_at(1, Instant::ZERO).is_err());
        b.try_acquire_at(1, Instant::from_secs(101)).unwrap();
    }

    /// Found by fuzzing: at `Instant::MAX` "ready only after the end of the clock" must not
    /// read as "ready now".
    #[test]
    fn nothing_is_granted_after_the_end_of_the_clock() {
        let b = TokenBucket::new(Rate::per_day(44_985), 1);
        b.try_acquire_at(1, Instant::MAX).unwrap();
        assert_eq!(
            b.reserve_at(1, Instant::MAX),
            Err(Error::MaxWaitExceeded { ready_at: Instant::MAX })
        );
        assert_eq!(
            b.try_acquire_at(1, Instant::MAX),
            Err(Error::RateLimited(Refusal::at(Instant::MAX)))
        );
        assert_eq!(b.available_at(Instant::MAX), 0);
    }

    #[test]
    fn extremes_of_the_clock_do_not_overflow() {
        for rate in [
            Rate::per_day(1),
            Rate::per_second(3),
            Rate::per_second(1_000_000_000),
            Rate::per_second(u32::MAX),
            Rate::new(8, Duration::from_nanos(1)),
            Rate::new(1, Duration::MAX),
        ] {
            let b = TokenBucket::new(rate, rate.default_burst().min(1 << 40));
            for t in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
                let _ = b.try_acquire_at(1, ns(t));
                let _ = b.reserve_at(b.burst(), ns(t));
                assert!(b.available_at(ns(t)) <= b.burst(), "{rate:?} at {t}");
            }
            // At the end of the clock, with the burst spent, nothing more is granted.
            assert!(b.try_acquire_at(b.burst(), Instant::MAX).is_err(), "{rate:?}");
        }
    }

    /// Ready instants are exact: one nanosecond earlier fails, the instant itself succeeds.
    #[test]
    fn ready_instants_are_exact() {
        for rate in [
            Rate::per_second(3),
            Rate::per_second(7),
            Rate::per_day(1),
            Rate::per_second(700_000_000),
            Rate::new(2, Duration::from_secs(5)),
        ] {
            let b = TokenBucket::new(rate, 1);
            let mut now = Instant::from_secs(12_345);
            for _ in 0..50 {
                match b.try_acquire_at(1, now) {
                    Ok(()) => {}
                    Err(Error::RateLimited(refusal)) => {
                        let ready_at = refusal.ready_at();
                        assert!(ready_at > now);
                        let before = Instant::from_nanos(ready_at.as_nanos() - 1);
                        assert!(b.peek_at(1, before).is_err(), "{rate:?} at {before:?}");
                        b.try_acquire_at(1, ready_at).unwrap();
                        now = ready_at;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }

    /// The lazy refusal names the same instant as the eager paths (`reserve_at`, the wait
    /// line's estimate) would, across the fixed-point regimes: many fractional bits, few,
    /// and whole tokens.
    #[test]
    fn a_refusal_computes_the_instant_the_reservation_would_get() {
        for (rate, burst) in [
            (Rate::per_second(3), 3),
            (Rate::per_second(7), 1),
            (Rate::per_day(1), 1),
            (Rate::per_second(700_000_000), 700_000_000),
            (Rate::per_second(u32::MAX), 1 << 40),
            (Rate::new(2, Duration::from_secs(5)), 2),
            (Rate::new(8, Duration::from_nanos(1)), 8),
            (Rate::new(1, Duration::MAX), 1),
        ] {
            let b = TokenBucket::new(rate, burst);
            let mut now = Instant::from_secs(777);
            b.try_acquire_at(burst, now).unwrap();
            for step in 0..40u64 {
                now = now + Duration::from_nanos(step * 1_234_567);
                let n = 1 + step % burst;
                match b.try_acquire_at(n, now) {
                    Ok(()) => {}
                    Err(Error::RateLimited(refusal)) => {
                        let eager = b.estimate_ready_at(n, now);
                        assert_eq!(refusal.ready_at(), eager, "{rate:?} n={n} at {now:?}");
                        let reservation = b.reserve_at(n, now);
                        match reservation {
                            Ok(r) => {
                                assert_eq!(r.ready_at(), eager);
                                assert!(b.cancel(r));
                            }
                            Err(e) => assert_eq!(e.ready_at(), Some(Instant::MAX), "{e}"),
                        }
                        assert_eq!(b.peek_at(n, now), Err(Error::RateLimited(refusal)));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }

    /// The conversion back from token units is a search whose answer does not depend on
    /// where it starts: the lazy refusal's one-division guess, the eager paths' inverse
    /// factor, or a poor guess all find the same first instant.
    #[test]
    fn the_instant_of_a_target_does_not_depend_on_the_guess() {
        for rate in [
            Rate::per_second(3),
            Rate::per_day(1),
            Rate::per_second(700_000_007),
            Rate::new(8, Duration::from_nanos(1)),
            Rate::new(1, Duration::MAX),
        ] {
            let config = TokenBucket::new(rate, 1).config;
            let clock = config.clock;
            for t in [1, 999, 1_000_000_007, 1 << 40, u64::MAX / 3] {
                let units = clock.tokens_at(Instant::from_nanos(t)) + 1;
                let eager = config.instant_of(units);
                assert_eq!(clock.instant_of(units, clock.estimate(units)), eager, "{rate:?}");
                for guess in [0, t / 2, t, t.saturating_mul(3), u64::MAX] {
                    assert_eq!(clock.instant_of(units, guess), eager, "{rate:?} from {guess}");
                }
                if let Some(at) = eager {
                    assert!(clock.tokens_at(at) >= units);
                    assert!(clock.tokens_at(Instant::from_nanos(at.as_nanos() - 1)) < units);
                }
            }
        }
    }

    /// The lazy form keeps `Refusal` at four words and so `Error` at 40 bytes on 64-bit
    /// targets, as before. On 32-bit targets the `u64` words do not shrink with the pointer
    /// size, so there `Error` grew (to 40 bytes, from about 24): said in BENCHMARKS.md.
    #[test]
    fn a_refusal_is_small() {
        assert!(core::mem::size_of::<Refusal>() <= 32);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(core::mem::size_of::<Error>(), 40);
        assert!(core::mem::size_of::<Error>() <= 40);
    }

    /// A cancel that lost its race (someone reserved after it) gives nothing back and
    /// changes nothing; the one that is still the newest does.
    #[test]
    fn cancel_is_exact_or_nothing() {
        let b = TokenBucket::new(Rate::per_second(1), 1);
        let first = b.reserve_at(1, Instant::ZERO).unwrap();
        let second = b.reserve_at(1, Instant::ZERO).unwrap();
        let before = b.tat.load(Ordering::Relaxed);
        assert!(!b.cancel(first));
        assert_eq!(b.tat.load(Ordering::Relaxed), before);
        assert!(b.cancel(second));
        assert_eq!(b.full_at(), Instant::from_secs(1));
    }

    /// Walk a bucket through `steps` admissions of `n`, each at its ready instant, and
    /// compare the elapsed time with the ideal.
    fn elapsed_for(rate: Rate, burst: u64, n: u64, steps: u64) -> u128 {
        let b = TokenBucket::new(rate, burst);
        let start = Instant::from_secs(1_000);
        b.try_acquire_at(burst, start).unwrap(); // empty the bucket
        let mut now = start;
        for _ in 0..steps {
            now = match b.try_acquire_at(n, now) {
                Ok(()) => now,
                Err(Error::RateLimited(refusal)) => {
                    let ready_at = refusal.ready_at();
                    b.try_acquire_at(n, ready_at).unwrap();
                    ready_at
                }
                Err(e) => panic!("{e}"),
            };
        }
        (now - start).as_nanos()
    }

    #[test]
    fn long_run_rate_has_no_drift() {
        // (rate, burst, tokens per request, requests)
        let cases = [
            (Rate::per_second(3), 3, 1, 3_000), // 1000 s
            (Rate::per_day(1), 1, 1, 2_000),    // 2000 days
            (Rate::per_second(1_000_000_000), 1_000_000_000, 1_000_000_000, 1_000),
            (Rate::per_second(700_000_007), 700_000_007, 700_000_007, 1_000),
            (Rate::per_second(u32::MAX), u32::MAX as u64, u32::MAX as u64, 1_000),
            (Rate::new(2, Duration::from_secs(5)), 1, 1, 10_000),
        ];
        for (rate, burst, n, steps) in cases {
            let ideal = (steps as u128 * n as u128 * rate.period_nanos() as u128) as f64
                / rate.count() as f64;
            let got = elapsed_for(rate, burst, n, steps) as f64;
            let rel = ((got - ideal) / ideal).abs();
            assert!(rel < 1e-9, "{rate:?}: elapsed {got} ns vs ideal {ideal} ns ({rel:e})");
        }
    }
}
