//! [`KeyedRateLimiter`]: one GCRA bucket per key (a client address, an API key, a user id),
//! with bounded memory and exact eviction. Needs `alloc`.
//!
//! # Implementation details
//!
//! *The map.* The core is `no_std` + `alloc`, so the concurrent maps of the ecosystem
//! (dashmap, scc, papaya) are out: they need `std`. Keys are spread over a fixed number of
//! shards (a power of two, 16 by default) by their hash; each shard is the crate's own
//! `Mutex` (`std`'s where there is one, a critical section without) around a
//! [`hashbrown::HashTable`] (`no_std`, MIT/Apache-2.0, the table inside `std`'s `HashMap`). A
//! key is hashed once per operation: the same hash picks the shard and probes its table.
//! Every decision is a few arithmetic operations under the shard's lock, so the lock is held
//! for tens of nanoseconds; shards are cache-line padded so two threads on different shards
//! do not share a line.
//!
//! *Why a `Mutex`, not a read-write lock.* governor's layout — a shared (read) lock on the
//! shard and a compare-and-swap on the key's TAT, an atomic in the table — was built and
//! measured here (issue 12) and lost: on one hot key from two threads, 58 ns a decision per
//! thread against the `Mutex`'s 31 ns, and on one thread 18 against 15 ns (two more atomic
//! read-modify-writes per decision); paired rounds, 2 shared vCPUs. Readers that share the
//! lock still pass the lock word's and the TAT's cache lines between the cores on every
//! decision, while a contended `Mutex` parks the loser and lets the winner run a stretch with
//! both lines in its own cache: more decisions per second in all.
//!
//! *The hasher.* A server keyed by client address is fed keys by the clients, so the hash
//! must be seeded, or one client could pick addresses that all collide (HashDoS). The default
//! is [`foldhash`]'s `RandomState` (`no_std`, Zlib licence, the hasher `hashbrown` itself
//! defaults to): seeded per limiter, from the clock, a thread-local counter and addresses
//! with `std`, and from addresses (which ASLR randomises) alone without it. Firmware, or
//! anyone who wants a seed from a real random source, passes any [`BuildHasher`] with
//! [`KeyedBuilder::hasher`], e.g. `foldhash::fast::SeedableRandomState::with_seed(seed, ..)`.
//!
//! *A key's state.* A key nobody waits on is its bucket's TAT: one `u64` beside the key in
//! the table (the same bytes as governor's keyed state). A key someone must wait on moves to a
//! second, small table as a whole [`AsyncRateLimiter`] (its bucket, built from that TAT, and
//! its wait line) in an `Arc` shared with the waiting futures, and goes through the one wait
//! machine of `wait.rs`: FIFO per key, free to cancel. When the last future drops its `Arc`,
//! the key goes back to being a TAT.
//!
//! *Exact eviction.* A bucket that has refilled completely (its TAT is not after `now`) makes
//! from then on exactly the decisions of a bucket never used, so forgetting it changes no
//! decision. Every new key, and every eighth operation on a shard, inspects the next two
//! buckets of the shard's table and forgets the keys there that refilled (a constant cost: no
//! sweep of the whole map); a table about to grow first forgets what it can; [`KeyedRateLimiter::retain_recent`] sweeps every shard, one at a time. Busy
//! keys are only forgotten once no future holds them.
//!
//! *The key cap.* [`KeyedBuilder::max_keys`] bounds the keys held: each shard holds at most
//! `max_keys / shards` (rounded up). A new key that finds its shard full of keys that have not
//! refilled is refused with [`Error::RateLimited`], whose [`Refusal`](crate::Refusal) is the
//! earliest instant at which a key of that shard could be forgotten (at least one token's
//! time ahead, so that a caller sleeping until then never spins); until then the shard only
//! looks again at its keys someone was waiting on. A wait for a new key waits for that room
//! like a wait for a token: `acquire*` sleeps until then and asks again, and a bounded wait
//! whose bound comes first is refused at once with [`Error::MaxWaitExceeded`]. Keys already
//! held are served as usual. So under a flood of new keys the limiter refuses newcomers rather
//! than forgetting the state of clients it is limiting (which would let them start over with a
//! full burst).
//!
//! *Without `std`,* every shard operation is one critical section (interrupts masked on a
//! single-core MCU). The eviction step is constant, but [`KeyedRateLimiter::retain_recent`]
//! and the sweep before a table grows are proportional to the shard's size: on firmware, use
//! more shards or a key cap to keep those sections short.
//!
//! # Coming from governor's keyed limiter
//!
//! | governor | tollgate |
//! | --- | --- |
//! | `RateLimiter::keyed(Quota::per_second(n))`, `DefaultKeyedRateLimiter<K>` | `tollgate_tokio::KeyedRateLimiter::<K>::per_second(n)` (or any adapter's alias), `KeyedRateLimiter::new(rate, burst)` |
//! | `Quota::allow_burst(b)` | the `burst` argument |
//! | `check_key(&k)` → `Err(NotUntil)`, `wait_time_from(clock.now())` | `try_acquire(&k)` → `Err(Error::RateLimited(refusal))`, `refusal.retry_after(now)` |
//! | `check_key_n(&k, n)` → `Err(InsufficientCapacity)` (outer `Result`) | `try_acquire_n(&k, n)` → `Err(Error::InsufficientCapacity { .. })` |
//! | `until_key_ready(&k).await` (a retry loop; jitter to spread the retries) | `acquire(&k).await`: a FIFO line per key, woken once, free to cancel; bounded: `acquire_within(&k, d)` |
//! | `retain_recent()`, `shrink_to_fit()`, `len()` | the same names; eviction also runs by itself, and `max_keys` bounds memory |
//! | a `String` key is looked up with `&String` | `&str` works too (any `Borrow` form) |

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use core::time::Duration;

mod acquire;
mod shard;

pub use acquire::{KeyedAcquire, KeyedAcquireOwned};

use crate::error::InvalidConfig;
use crate::sync::Mutex;
use crate::wait::Limit;
use crate::{AsyncRateLimiter, Clock, Error, Instant, Rate, Timer, TokenBucket};
use shard::{Ctx, Shard, Slot};

/// The shards, each on its own cache lines.
type Shards<K, T> = Box<[Padded<Mutex<Shard<K, T>>>]>;

/// The default hasher of a [`KeyedRateLimiter`]: foldhash, seeded per limiter (see the
/// [module docs](self) for why).
pub type DefaultHashBuilder = foldhash::fast::RandomState;

/// Shards when none are asked for.
const DEFAULT_SHARDS: usize = 16;
/// Most shards: the shard index is taken from bits 40 and up of the hash, away from the low
/// bits (a table's bucket index) and the top seven (its control bytes).
const MAX_SHARDS: usize = 1 << 16;

/// A shard on its own cache lines (128 bytes: adjacent-line prefetch pairs lines on x86).
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

/// A rate limiter with one GCRA bucket per key: each key gets `burst` at once, then `rate`.
///
/// Keys are anything `Hash + Eq + Clone`: `IpAddr`, `String`, `u64`, tuples. Lookups borrow,
/// so a `String`-keyed limiter is asked with a `&str` and allocates only for a new key.
/// Memory is bounded by the keys that are *live* — whose bucket has not refilled — and a key
/// that refilled is forgotten without changing any decision (see the [module docs](self)).
///
/// ```
/// use core::time::Duration;
/// use tollgate::keyed::KeyedRateLimiter;
/// use tollgate::{Clock, Error, ManualClock, Rate};
///
/// let clock = ManualClock::new();
/// let limiter: KeyedRateLimiter<String, _> =
///     KeyedRateLimiter::with_timer(Rate::per_second(1), 2, &clock);
/// assert!(limiter.try_acquire("alice").is_ok());
/// assert!(limiter.try_acquire("alice").is_ok());
/// let Err(Error::RateLimited(refusal)) = limiter.try_acquire("alice") else { panic!() };
/// assert_eq!(refusal.retry_after(clock.now()), Duration::from_secs(1));
/// assert!(limiter.try_acquire("bob").is_ok()); // every key has its own bucket
///
/// clock.advance(Duration::from_secs(2)); // both refilled: nothing left to remember
/// limiter.retain_recent();
/// assert_eq!(limiter.len(), 0);
/// ```
///
/// Waiting (`acquire*`) needs a [`Timer`] that is `Clone + 'static` (the adapters' timers are;
/// in tests use an `Arc<ManualClock>`): a key that must wait gets its own
/// [`AsyncRateLimiter`] for the time of the wait, and its futures own an `Arc` of it.
///
/// # Fairness and cancellation
///
/// As [`AsyncRateLimiter`], per key: callers of one key that must wait are served in arrival
/// order, [`try_acquire`](Self::try_acquire) refuses while anyone waits on that key, and every
/// future is free to cancel.
pub struct KeyedRateLimiter<K, T, S = DefaultHashBuilder> {
    /// The configuration every key's bucket has; its own TAT is never used.
    template: TokenBucket,
    timer: T,
    hasher: S,
    shards: Shards<K, T>,
    /// `shards.len() - 1`.
    mask: u64,
    /// Most keys a shard holds.
    cap_per_shard: usize,
}

impl<K, T, S> core::fmt::Debug for KeyedRateLimiter<K, T, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("rate", &self.template.rate())
            .field("burst", &self.template.burst())
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// Settings of a [`KeyedRateLimiter`] beyond rate and burst, from
/// [`KeyedRateLimiter::builder`].
///
/// ```
/// use tollgate::keyed::KeyedRateLimiter;
/// use tollgate::{ManualClock, Rate};
///
/// let clock = ManualClock::new();
/// let limiter: KeyedRateLimiter<u64, _> = KeyedRateLimiter::builder(Rate::per_second(5), 5)
///     .shards(4)
///     .max_keys(1_000)
///     .build_with_timer(&clock)
///     .unwrap();
/// assert!(limiter.try_acquire(&7).is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct KeyedBuilder<S = DefaultHashBuilder> {
    rate: Rate,
    burst: u64,
    shards: usize,
    max_keys: Option<usize>,
    hasher: S,
}

impl KeyedBuilder {
    /// Settings for `rate` per key with room for `burst` at once, and the defaults: 16
    /// shards, no key cap, the seeded default hasher. The same as
    /// [`KeyedRateLimiter::builder`], for use through an adapter's alias:
    ///
    /// ```
    /// use tollgate::keyed::{KeyedBuilder, KeyedRateLimiter};
    /// use tollgate::{ManualClock, Rate};
    ///
    /// let limiter: KeyedRateLimiter<u64, ManualClock> =
    ///     KeyedBuilder::new(Rate::per_second(5), 5).max_keys(10_000).build().unwrap();
    /// assert_eq!(limiter.burst(), 5);
    /// ```
    pub fn new(rate: Rate, burst: u64) -> Self {
        Self { rate, burst, shards: DEFAULT_SHARDS, max_keys: None, hasher: Default::default() }
    }
}

impl<S> KeyedBuilder<S> {
    /// Number of shards (rounded up to a power of two, at most 65 536; 16 by default). More
    /// shards, less contention between threads on different keys.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        self
    }

    /// At most about `max_keys` keys held at once (each shard holds `max_keys / shards`,
    /// rounded up); new keys beyond are refused until some key refills. Unbounded by default.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = Some(max_keys);
        self
    }

    /// The hasher of keys (seed it: see the [module docs](self)).
    pub fn hasher<S2>(self, hasher: S2) -> KeyedBuilder<S2> {
        KeyedBuilder {
            rate: self.rate,
            burst: self.burst,
            shards: self.shards,
            max_keys: self.max_keys,
            hasher,
        }
    }

    /// The limiter, waiting on `timer`.
    ///
    /// # Errors
    /// [`InvalidConfig`] for a zero or huge burst, a rate above 8 per nanosecond, or
    /// `max_keys(0)` (no key could ever be held).
    pub fn build_with_timer<K, T>(
        self,
        timer: T,
    ) -> Result<KeyedRateLimiter<K, T, S>, InvalidConfig>
    where
        K: Hash + Eq,
    {
        let template = TokenBucket::try_new(self.rate, self.burst)?;
        if self.max_keys == Some(0) {
            return Err(InvalidConfig::new("max_keys", "must be at least 1"));
        }
        let shards: Box<[_]> = (0..self.shards).map(|_| Padded(Mutex::new(Shard::new()))).collect();
        let cap_per_shard = match self.max_keys {
            Some(max) => max.div_ceil(self.shards),
            None => usize::MAX,
        };
        Ok(KeyedRateLimiter {
            template,
            timer,
            hasher: self.hasher,
            mask: shards.len() as u64 - 1,
            shards,
            cap_per_shard,
        })
    }

    /// The limiter, on the default timer of `T` (an adapter's).
    ///
    /// # Errors
    /// As [`KeyedBuilder::build_with_timer`].
    pub fn build<K, T>(self) -> Result<KeyedRateLimiter<K, T, S>, InvalidConfig>
    where
        K: Hash + Eq,
        T: Default,
    {
        self.build_with_timer(T::default())
    }
}

/// What a wait found at its first poll (and after each wait for room), under the shard lock.
pub(crate) enum Begin<T> {
    /// Decided at once.
    Done(Result<(), Error>),
    /// The key's limiter to wait on, and the limit as an absolute deadline.
    Wait(Arc<AsyncRateLimiter<T>>, Limit),
    /// A new key whose shard is full (a key cap): sleep until this instant, when a key of the
    /// shard could be forgotten, then begin again within the limit (an absolute deadline).
    Room(Instant, Limit),
}

/// The state of one key's bucket, from [`KeyedRateLimiter::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStatus {
    /// Whole tokens available at `at` (the burst for a key not held).
    pub available: u64,
    /// The instant from which the bucket is full again (`at` or earlier for a key not held):
    /// the reset of the key's quota, as the HTTP `RateLimit` field states it.
    pub full_at: Instant,
    /// The clock reading this status was read at.
    pub at: Instant,
}

impl KeyedRateLimiter<(), ()> {
    /// Settings beyond rate and burst: shards, a key cap, the hasher.
    pub fn builder(rate: Rate, burst: u64) -> KeyedBuilder {
        KeyedBuilder::new(rate, burst)
    }
}

impl<K: Hash + Eq, T> KeyedRateLimiter<K, T> {
    /// A limiter giving each key `rate` with room for `burst` at once, waiting on `timer`.
    ///
    /// # Panics
    /// If `burst` is 0 or not below 2^61; see [`KeyedRateLimiter::try_with_timer`].
    pub fn with_timer(rate: Rate, burst: u64, timer: T) -> Self {
        match Self::try_with_timer(rate, burst, timer) {
            Ok(limiter) => limiter,
            Err(e) => panic!("tollgate::KeyedRateLimiter: {e}"),
        }
    }

    /// A limiter, or an error for a zero or huge burst or a rate above 8 per nanosecond.
    pub fn try_with_timer(rate: Rate, burst: u64, timer: T) -> Result<Self, InvalidConfig> {
        KeyedBuilder::new(rate, burst).build_with_timer(timer)
    }
}

impl<K: Hash + Eq, T: Default> KeyedRateLimiter<K, T> {
    /// `n` requests per second per key, with a burst of `n`.
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn per_second(n: u32) -> Self {
        let rate = Rate::per_second(n);
        Self::with_timer(rate, rate.default_burst(), T::default())
    }

    /// `rate` per key with room for `burst` at once. Panics if `burst` is 0.
    pub fn new(rate: Rate, burst: u64) -> Self {
        Self::with_timer(rate, burst, T::default())
    }
}

impl<K, T, S> KeyedRateLimiter<K, T, S> {
    /// The rate of every key.
    pub fn rate(&self) -> Rate {
        self.template.rate()
    }

    /// The burst of every key.
    pub fn burst(&self) -> u64 {
        self.template.burst()
    }

    /// The timer this limiter reads and waits on.
    pub fn timer(&self) -> &T {
        &self.timer
    }

    /// The hasher of keys.
    pub fn hasher(&self) -> &S {
        &self.hasher
    }
}

impl<K: Hash + Eq, T, S: BuildHasher> KeyedRateLimiter<K, T, S> {
    fn ctx(&self) -> Ctx<'_, S> {
        Ctx { bucket: &self.template, hasher: &self.hasher, cap: self.cap_per_shard }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard<K, T>> {
        // In range: `mask` is `len - 1` and the index is masked.
        &self.shards[((hash >> 40) & self.mask) as usize].0
    }

    /// Keys held now: those that have not refilled, plus refilled ones that eviction has not
    /// reached yet (call [`retain_recent`](Self::retain_recent) first for an exact count of
    /// live keys).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.with(|s| s.len())).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frees the spare room of every shard's table (after [`retain_recent`](Self::retain_recent),
    /// to give memory back after a burst of keys).
    pub fn shrink_to_fit(&self) {
        for shard in self.shards.iter() {
            shard.0.with(|s| s.shrink(&self.hasher));
        }
    }

    /// Bytes the shards' tables have allocated (not counting what keys own on the heap, nor
    /// the limiters of keys someone waits on): for memory monitoring.
    pub fn table_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.0.with(|s| s.table_bytes())).sum()
    }
}

impl<K: Hash + Eq, T: Clock, S: BuildHasher> KeyedRateLimiter<K, T, S> {
    /// Takes one token of `key` if available now; never waits.
    ///
    /// # Errors
    /// [`Error::RateLimited`], whose [`Refusal`](crate::Refusal) says when the token will be
    /// available (or, with a key cap, when a new key could be taken in).
    #[inline]
    pub fn try_acquire<Q>(&self, key: &Q) -> Result<(), Error>
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        self.try_acquire_n(key, 1)
    }

    /// Takes `n` tokens of `key` if all are available now and nobody waits on `key`.
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] if `n > burst`; [`Error::RateLimited`] otherwise.
    pub fn try_acquire_n<Q>(&self, key: &Q, n: u64) -> Result<(), Error>
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        let now = self.timer.now();
        let hash = self.hasher.hash_one(key);
        let bucket = &self.template;
        let cx = self.ctx();
        self.shard(hash).with(|shard| {
            shard.tick(now, &cx);
            match shard.locate(hash, key, &cx) {
                Slot::Idle(tat) => bucket.try_acquire_tat(tat, n, now),
                Slot::Busy(limiter) => limiter.try_acquire_n(n),
                Slot::Absent => {
                    let mut tat = 0;
                    bucket.try_acquire_tat(&mut tat, n, now)?;
                    if tat == 0 {
                        return Ok(()); // took nothing: nothing to remember
                    }
                    shard.insert(hash, key.to_owned(), tat, now, &cx)
                }
            }
        })
    }

    /// [`try_acquire`](Self::try_acquire) and then [`status`](Self::status), from one clock
    /// reading and one lookup: the token taken and what is left, or the refusal. This is what
    /// an HTTP layer reporting the `RateLimit` field on admitted responses needs, at the cost
    /// of one decision instead of two lookups and two clock reads.
    ///
    /// ```
    /// use tollgate::keyed::KeyedRateLimiter;
    /// use tollgate::{Instant, ManualClock, Rate};
    ///
    /// let clock = ManualClock::new();
    /// let limiter: KeyedRateLimiter<u64, _> =
    ///     KeyedRateLimiter::with_timer(Rate::per_second(2), 3, &clock);
    /// let status = limiter.try_acquire_status(&7).unwrap();
    /// assert_eq!(status.available, 2);
    /// assert_eq!(status.full_at, Instant::from_millis(500)); // the token taken comes back
    /// ```
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    pub fn try_acquire_status<Q>(&self, key: &Q) -> Result<KeyStatus, Error>
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        let now = self.timer.now();
        let hash = self.hasher.hash_one(key);
        let bucket = &self.template;
        let cx = self.ctx();
        let of_tat = |tat: u64| KeyStatus {
            available: bucket.available_tat(tat, now),
            full_at: bucket.full_at_tat(tat),
            at: now,
        };
        self.shard(hash).with(|shard| {
            shard.tick(now, &cx);
            match shard.locate(hash, key, &cx) {
                Slot::Idle(tat) => {
                    bucket.try_acquire_tat(tat, 1, now)?;
                    Ok(of_tat(*tat))
                }
                Slot::Busy(limiter) => {
                    // A key someone waits on (rare): its limiter decides, on its own reading.
                    limiter.try_acquire_n(1)?;
                    Ok(KeyStatus {
                        available: limiter.bucket().available_at(now),
                        full_at: limiter.bucket().full_at(),
                        at: now,
                    })
                }
                Slot::Absent => {
                    let mut tat = 0;
                    bucket.try_acquire_tat(&mut tat, 1, now)?;
                    let status = of_tat(tat);
                    shard.insert(hash, key.to_owned(), tat, now, &cx)?;
                    Ok(status)
                }
            }
        })
    }

    /// Whole tokens of `key` available now (`burst` for a key never seen).
    pub fn available<Q>(&self, key: &Q) -> u64
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        self.status(key).available
    }

    /// Whole tokens of `key` available now and the instant its bucket is full again, read in
    /// one lookup (for the HTTP `RateLimit` field's `r` and `t`).
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::keyed::KeyedRateLimiter;
    /// use tollgate::{Instant, ManualClock, Rate};
    ///
    /// let clock = ManualClock::new();
    /// let limiter: KeyedRateLimiter<u64, _> =
    ///     KeyedRateLimiter::with_timer(Rate::per_second(2), 4, &clock);
    /// limiter.try_acquire_n(&1, 3).unwrap();
    /// let status = limiter.status(&1);
    /// assert_eq!(status.available, 1);
    /// assert_eq!(status.full_at, Instant::from_millis(1_500)); // 3 tokens at 2 per second
    /// assert_eq!(limiter.status(&2).available, 4); // never seen: a full bucket
    /// ```
    pub fn status<Q>(&self, key: &Q) -> KeyStatus
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let now = self.timer.now();
        let hash = self.hasher.hash_one(key);
        let bucket = &self.template;
        let cx = self.ctx();
        self.shard(hash).with(|shard| match shard.locate(hash, key, &cx) {
            Slot::Idle(&mut tat) => KeyStatus {
                available: bucket.available_tat(tat, now),
                full_at: bucket.full_at_tat(tat),
                at: now,
            },
            Slot::Busy(limiter) => KeyStatus {
                available: limiter.bucket().available_at(now),
                full_at: limiter.bucket().full_at(),
                at: now,
            },
            Slot::Absent => KeyStatus { available: bucket.burst(), full_at: now, at: now },
        })
    }

    /// Callers waiting on `key` now.
    pub fn waiters<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let hash = self.hasher.hash_one(key);
        let cx = self.ctx();
        self.shard(hash).with(|shard| match shard.locate(hash, key, &cx) {
            Slot::Busy(limiter) => limiter.waiters(),
            Slot::Idle(_) | Slot::Absent => 0,
        })
    }

    /// Forgets every key that has refilled and that no future holds, one shard at a time
    /// (each shard is locked only for its own sweep). Eviction also runs by itself, a little
    /// at a time (on new keys, and on every eighth operation); this is for an exact [`len`](Self::len) or to free memory at once.
    pub fn retain_recent(&self) {
        let now = self.timer.now();
        let cx = self.ctx();
        for shard in self.shards.iter() {
            shard.0.with(|s| s.sweep(now, &cx));
        }
    }
}

impl<K, T, S> KeyedRateLimiter<K, T, S>
where
    K: Hash + Eq,
    T: Timer + Clone + 'static,
    S: BuildHasher,
{
    /// The decision at a wait's first poll: at once if `key` is idle and its tokens are there
    /// (or never can be), else the key's limiter to wait on.
    pub(crate) fn begin<Q>(&self, key: &Q, n: u64, limit: Limit) -> Begin<T>
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        let now = self.timer.now();
        // Fixed now, from the reading the decision is made at, as `wait.rs` does.
        let deadline = match limit {
            Limit::Forever => Instant::MAX,
            Limit::Within(d) => now.saturating_add(d),
            Limit::Before(t) => t,
        };
        let limit = if deadline == Instant::MAX { Limit::Forever } else { Limit::Before(deadline) };
        let hash = self.hasher.hash_one(key);
        let bucket = &self.template;
        let cx = self.ctx();
        self.shard(hash).with(|shard| {
            shard.tick(now, &cx);
            match shard.locate(hash, key, &cx) {
                Slot::Idle(tat) => match bucket.try_acquire_tat(tat, n, now) {
                    Ok(()) => return Begin::Done(Ok(())),
                    Err(Error::RateLimited(refusal)) if deadline != Instant::MAX => {
                        let ready_at = refusal.ready_at();
                        if ready_at > deadline {
                            return Begin::Done(Err(Error::MaxWaitExceeded { ready_at }));
                        }
                    }
                    Err(Error::RateLimited(_)) => {}
                    Err(e) => return Begin::Done(Err(e)),
                },
                Slot::Busy(limiter) => return Begin::Wait(Arc::clone(limiter), limit),
                Slot::Absent => {
                    // A fresh bucket has its whole burst: this admits or `n` exceeds it.
                    let mut tat = 0;
                    if let Err(e) = bucket.try_acquire_tat(&mut tat, n, now) {
                        return Begin::Done(Err(e));
                    }
                    if tat == 0 {
                        return Begin::Done(Ok(()));
                    }
                    return match shard.insert(hash, key.to_owned(), tat, now, &cx) {
                        // No room in the shard (a key cap) until `ready_at`: wait for it as
                        // for a token, within the same bound.
                        Err(Error::RateLimited(refusal)) => {
                            let ready_at = refusal.ready_at();
                            if ready_at > deadline {
                                Begin::Done(Err(Error::MaxWaitExceeded { ready_at }))
                            } else {
                                Begin::Room(ready_at, limit)
                            }
                        }
                        decided => Begin::Done(decided),
                    };
                }
            }
            // Idle but short of tokens: the key gets a limiter and a line for the wait.
            let make =
                |tat| AsyncRateLimiter::from_bucket(bucket.with_tat(tat), self.timer.clone());
            match shard.promote(hash, key, cx.hasher, make) {
                Some(limiter) => Begin::Wait(limiter, limit),
                None => unreachable!("located as idle under the same lock"),
            }
        })
    }

    /// Waits for one token of `key`.
    ///
    /// With a key cap, a new key that finds its shard full waits until there is room. If the
    /// token can never come (the end of the clock), the future never completes.
    ///
    /// # Cancel safety
    /// Cancel safe, and free, as [`AsyncRateLimiter::acquire`].
    pub async fn acquire<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        if self.acquire_n(key, 1).await.is_err() {
            // One token fits any burst: only a token past the end of the clock. Wait
            // forever rather than go ahead without it.
            core::future::pending::<()>().await;
        }
    }

    /// Waits for `n` tokens of `key`, taken together. With a key cap, a new key whose shard
    /// is full first waits for room (until a key of the shard could be forgotten).
    ///
    /// # Errors
    /// [`Error::InsufficientCapacity`] at once if `n > burst`; [`Error::MaxWaitExceeded`] if
    /// the tokens can never come.
    pub fn acquire_n<'a, Q>(&'a self, key: &'a Q, n: u64) -> KeyedAcquire<'a, K, Q, T, S>
    where
        Q: ?Sized,
    {
        KeyedAcquire::new(self, key, n, Limit::Forever)
    }

    /// Waits at most `max_wait` (from the first poll) for one token of `key`; refuses at once,
    /// taking nothing, if it could not come in time. With a key cap, a new key whose shard is
    /// full waits for room within the same bound, and is refused at once if room comes later.
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`] with the instant the token (or the room) would have been
    /// ready.
    pub fn acquire_within<'a, Q>(
        &'a self,
        key: &'a Q,
        max_wait: Duration,
    ) -> KeyedAcquire<'a, K, Q, T, S>
    where
        Q: ?Sized,
    {
        KeyedAcquire::new(self, key, 1, Limit::Within(max_wait))
    }

    /// [`acquire_within`](Self::acquire_within) for `n` tokens.
    ///
    /// # Errors
    /// As [`acquire_within`](Self::acquire_within) and [`acquire_n`](Self::acquire_n).
    pub fn acquire_n_within<'a, Q>(
        &'a self,
        key: &'a Q,
        n: u64,
        max_wait: Duration,
    ) -> KeyedAcquire<'a, K, Q, T, S>
    where
        Q: ?Sized,
    {
        KeyedAcquire::new(self, key, n, Limit::Within(max_wait))
    }

    /// Waits until `deadline` at most for one token of `key`.
    ///
    /// # Errors
    /// As [`acquire_within`](Self::acquire_within).
    pub fn acquire_before<'a, Q>(
        &'a self,
        key: &'a Q,
        deadline: Instant,
    ) -> KeyedAcquire<'a, K, Q, T, S>
    where
        Q: ?Sized,
    {
        KeyedAcquire::new(self, key, 1, Limit::Before(deadline))
    }

    /// [`acquire_before`](Self::acquire_before) for `n` tokens.
    ///
    /// # Errors
    /// As [`acquire_n_within`](Self::acquire_n_within).
    pub fn acquire_n_before<'a, Q>(
        &'a self,
        key: &'a Q,
        n: u64,
        deadline: Instant,
    ) -> KeyedAcquire<'a, K, Q, T, S>
    where
        Q: ?Sized,
    {
        KeyedAcquire::new(self, key, n, Limit::Before(deadline))
    }
}

/// `'static` forms for spawned tasks and services: the future owns the limiter's `Arc` and
/// the key.
impl<K, T, S> KeyedRateLimiter<K, T, S>
where
    K: Hash + Eq + Clone,
    T: Timer + Clone + 'static,
    S: BuildHasher,
{
    /// [`acquire`](Self::acquire) on an `Arc`ed limiter.
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_owned(self: Arc<Self>, key: K) {
        self.acquire(&key).await;
    }

    /// [`acquire_n`](Self::acquire_n) on an `Arc`ed limiter.
    ///
    /// # Errors
    /// As [`acquire_n`](Self::acquire_n).
    pub fn acquire_n_owned(self: Arc<Self>, key: K, n: u64) -> KeyedAcquireOwned<K, T, S> {
        KeyedAcquireOwned::new(self, key, n, Limit::Forever)
    }

    /// [`acquire_within`](Self::acquire_within) on an `Arc`ed limiter.
    ///
    /// # Errors
    /// As [`acquire_within`](Self::acquire_within).
    pub fn acquire_within_owned(
        self: Arc<Self>,
        key: K,
        max_wait: Duration,
    ) -> KeyedAcquireOwned<K, T, S> {
        KeyedAcquireOwned::new(self, key, 1, Limit::Within(max_wait))
    }

    /// [`acquire_n_within`](Self::acquire_n_within) on an `Arc`ed limiter.
    ///
    /// # Errors
    /// As [`acquire_n_within`](Self::acquire_n_within).
    pub fn acquire_n_within_owned(
        self: Arc<Self>,
        key: K,
        n: u64,
        max_wait: Duration,
    ) -> KeyedAcquireOwned<K, T, S> {
        KeyedAcquireOwned::new(self, key, n, Limit::Within(max_wait))
    }

    /// [`acquire_before`](Self::acquire_before) on an `Arc`ed limiter.
    ///
    /// # Errors
    /// As [`acquire_before`](Self::acquire_before).
    pub fn acquire_before_owned(
        self: Arc<Self>,
        key: K,
        deadline: Instant,
    ) -> KeyedAcquireOwned<K, T, S> {
        KeyedAcquireOwned::new(self, key, 1, Limit::Before(deadline))
    }

    /// [`acquire_n_before`](Self::acquire_n_before) on an `Arc`ed limiter.
    ///
    /// # Errors
    /// As [`acquire_n_before`](Self::acquire_n_before).
    pub fn acquire_n_before_owned(
        self: Arc<Self>,
        key: K,
        n: u64,
        deadline: Instant,
    ) -> KeyedAcquireOwned<K, T, S> {
        KeyedAcquireOwned::new(self, key, n, Limit::Before(deadline))
    }
}
