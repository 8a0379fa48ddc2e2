//! One shard of a [`KeyedRateLimiter`](super::KeyedRateLimiter): the table of its keys, the
//! decisions made under its lock, and the incremental eviction of keys that refilled.
//!
//! A key lives in exactly one of two tables. `idle` holds the common case: a key nobody waits
//! on, whose whole state is its bucket's TAT (one `u64` beside the key). `busy` holds the few
//! keys someone waits on (or a live future is about to): a whole [`AsyncRateLimiter`] with its
//! wait line, shared with the waiting futures through an `Arc`. When the last future lets go
//! of the `Arc` (seen exactly with `Arc::get_mut`, under this shard's lock, where all clones are
//! made), the key moves back to `idle`, or is forgotten if its bucket has refilled.

use alloc::sync::Arc;
use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use core::time::Duration;

use hashbrown::HashTable;

use crate::{AsyncRateLimiter, Error, Instant, Refusal, TokenBucket};

/// Buckets of the `idle` table inspected by one eviction step. Each insert of a new key takes
/// a step, so the table is gone through once every `buckets / 2` inserts: it cannot fill up
/// with refilled keys faster than they are forgotten.
const EVICT_PER_STEP: usize = 2;

/// Operations on known keys take a step once in this many, so eviction goes on when no new
/// key comes (a fixed set of returning clients). Not on every operation: with 10^6 keys the
/// cursor's bucket is a cache miss, measured at 30 ns a step (`benches/keyed.rs`), so every
/// eighth costs about 4 ns an operation; on a hot key it is below a nanosecond either way.
const STEP_EVERY: u32 = 8;

/// What every shard operation needs from its limiter.
pub(super) struct Ctx<'a, S> {
    /// The configuration of every key's bucket.
    pub(super) bucket: &'a TokenBucket,
    pub(super) hasher: &'a S,
    /// Most keys this shard may hold.
    pub(super) cap: usize,
}

/// The time one token takes to come back (at least a nanosecond).
fn one_token(bucket: &TokenBucket) -> Duration {
    let rate = bucket.rate();
    let nanos = (rate.period().as_nanos() / u128::from(rate.count().max(1))).max(1);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Where a key is, as found under the lock.
pub(super) enum Slot<'s, T> {
    /// Nobody waits on it: its TAT.
    Idle(&'s mut u64),
    /// Someone waits on it (or holds a future that will): its limiter.
    Busy(&'s Arc<AsyncRateLimiter<T>>),
    /// Never seen, or forgotten (the same thing).
    Absent,
}

/// The keys of one shard.
pub(super) struct Shard<K, T> {
    idle: HashTable<(K, u64)>,
    busy: HashTable<(K, Arc<AsyncRateLimiter<T>>)>,
    /// Next bucket index of `idle` the eviction looks at.
    cursor: usize,
    /// Next bucket index of `busy` the eviction looks at.
    busy_cursor: usize,
    /// With a key cap: no key of this shard can be forgotten before this instant (the
    /// earliest refill found by the last full sweep), so a full shard refuses new keys until
    /// then without sweeping again.
    full_until: Instant,
    /// Operations since the last eviction step on a known key (see [`STEP_EVERY`]).
    ops: u32,
    /// Keys inserted since the last sweep before growth: a sweep of the whole table is run
    /// before it grows only once enough inserts have paid for it (see [`Shard::insert`]).
    inserted: usize,
}

impl<K, T> core::fmt::Debug for Shard<K, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shard")
            .field("idle", &self.idle.len())
            .field("busy", &self.busy.len())
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq, T> Shard<K, T> {
    pub(super) fn new() -> Self {
        Self {
            idle: HashTable::new(),
            busy: HashTable::new(),
            cursor: 0,
            busy_cursor: 0,
            full_until: Instant::ZERO,
            inserted: 0,
            ops: 0,
        }
    }

    /// Keys held (idle and busy).
    pub(super) fn len(&self) -> usize {
        self.idle.len() + self.busy.len()
    }

    /// Bytes allocated by the tables (not counting what keys own or the busy limiters).
    pub(super) fn table_bytes(&self) -> usize {
        self.idle.allocation_size() + self.busy.allocation_size()
    }

    /// The incremental part of eviction, run by every operation before it decides: once in
    /// [`STEP_EVERY`] operations, an eviction step. (An insert takes a step of its own.)
    #[inline]
    pub(super) fn tick<S: BuildHasher>(&mut self, now: Instant, bucket: &TokenBucket, hasher: &S) {
        self.ops = self.ops.wrapping_add(1);
        if self.ops % STEP_EVERY == 0 {
            self.step_idle(now, bucket);
            if !self.busy.is_empty() {
                self.step_busy(now, bucket, hasher);
            }
        }
    }

    /// One eviction step: looks at the next few buckets of `idle` and forgets the keys that
    /// have refilled. Exact: a full bucket decides as a fresh one does.
    #[inline]
    fn step_idle(&mut self, now: Instant, bucket: &TokenBucket) {
        let buckets = self.idle.num_buckets();
        if buckets == 0 {
            return;
        }
        for _ in 0..EVICT_PER_STEP {
            // `num_buckets` is a power of two.
            self.cursor = (self.cursor + 1) & (buckets - 1);
            if let Ok(entry) = self.idle.get_bucket_entry(self.cursor) {
                if bucket.tat_is_full_at(entry.get().1, now) {
                    entry.remove();
                }
            }
        }
    }

    /// The busy table's step: one of its keys, moved back to `idle` (or forgotten) if no
    /// future holds it any more.
    #[cold]
    fn step_busy<S: BuildHasher>(&mut self, now: Instant, bucket: &TokenBucket, hasher: &S) {
        let buckets = self.busy.num_buckets();
        self.busy_cursor = (self.busy_cursor + 1) & (buckets - 1);
        if let Ok(mut entry) = self.busy.get_bucket_entry(self.busy_cursor) {
            if Arc::get_mut(&mut entry.get_mut().1).is_some() {
                let ((key, limiter), _) = entry.remove();
                let tat = limiter.bucket().tat();
                if !bucket.tat_is_full_at(tat, now) {
                    let hash = hasher.hash_one(&key);
                    self.idle.insert_unique(hash, (key, tat), |e| hasher.hash_one(&e.0));
                }
            }
        }
    }

    /// Finds `key`. A busy key that no future holds any more is moved back to `idle` first.
    #[inline]
    pub(super) fn locate<Q, S>(&mut self, hash: u64, key: &Q, hasher: &S) -> Slot<'_, T>
    where
        K: Borrow<Q>,
        Q: ?Sized + Eq,
        S: BuildHasher,
    {
        // `busy` first, while it is non-empty: a key is in one table only, and this order
        // lets the `idle` borrow be the last thing done (no conditional borrow to work around).
        if !self.busy.is_empty() {
            if let Ok(mut entry) = self.busy.find_entry(hash, |e| e.0.borrow() == key) {
                if Arc::get_mut(&mut entry.get_mut().1).is_none() {
                    return Slot::Busy(&entry.into_mut().1);
                }
                let ((k, limiter), _) = entry.remove();
                let tat = limiter.bucket().tat();
                let entry = self.idle.insert_unique(hash, (k, tat), |e| hasher.hash_one(&e.0));
                return Slot::Idle(&mut entry.into_mut().1);
            }
        }
        match self.idle.find_mut(hash, |e| e.0.borrow() == key) {
            Some(entry) => Slot::Idle(&mut entry.1),
            None => Slot::Absent,
        }
    }

    /// Remembers a new key whose TAT is `tat`, unless the shard already holds `cap` keys that
    /// have not refilled: then the new key is refused until one can be forgotten.
    pub(super) fn insert<S: BuildHasher>(
        &mut self,
        hash: u64,
        key: K,
        tat: u64,
        now: Instant,
        cx: &Ctx<'_, S>,
    ) -> Result<(), Error> {
        let (bucket, hasher) = (cx.bucket, cx.hasher);
        if self.len() >= cx.cap {
            if now < self.full_until {
                // No idle key can have refilled yet; a busy key may have been let go since
                // (there are few of those, so looking is cheap).
                self.sweep_busy(now, bucket, hasher);
                if self.len() >= cx.cap {
                    return Err(Error::RateLimited(Refusal::at(self.full_until)));
                }
            } else {
                self.sweep(now, bucket, hasher);
            }
        }
        if self.len() >= cx.cap {
            // Never now or earlier (a key held by a future may be full already but cannot go
            // while held): a caller that waits for room must not spin.
            let soonest = now.saturating_add(one_token(bucket));
            self.full_until = self.earliest_refill(bucket).max(soonest);
            return Err(Error::RateLimited(Refusal::at(self.full_until)));
        }
        // Evict before growing: a table about to double first forgets what it can, so it
        // grows only for keys that are really live. The sweep reads the whole table, so it
        // runs only once an eighth of the table's capacity was inserted since the last one:
        // at most eight entries read per insert, even when each sweep frees little and the
        // table stays at its capacity.
        let capacity = self.idle.capacity();
        if self.idle.len() == capacity && self.inserted >= capacity / 8 {
            self.sweep(now, bucket, hasher);
            self.inserted = 0;
        }
        self.step_idle(now, bucket);
        self.inserted = self.inserted.saturating_add(1);
        self.idle.insert_unique(hash, (key, tat), |e| hasher.hash_one(&e.0));
        Ok(())
    }

    /// Moves an idle key to `busy` with a limiter built by `make` from its TAT, and returns
    /// that limiter. `None` if the key is not idle (the caller located it just before, under
    /// the same lock, so this does not happen).
    pub(super) fn promote<Q, S>(
        &mut self,
        hash: u64,
        key: &Q,
        hasher: &S,
        make: impl FnOnce(u64) -> AsyncRateLimiter<T>,
    ) -> Option<Arc<AsyncRateLimiter<T>>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Eq,
        S: BuildHasher,
    {
        let entry = self.idle.find_entry(hash, |e| e.0.borrow() == key).ok()?;
        let ((k, tat), _) = entry.remove();
        let limiter = Arc::new(make(tat));
        self.busy.insert_unique(hash, (k, Arc::clone(&limiter)), |e| hasher.hash_one(&e.0));
        Some(limiter)
    }

    /// Forgets every key that has refilled and that no future holds: the full form of
    /// [`Shard::tick`], for `retain_recent` and before the table grows.
    pub(super) fn sweep<S: BuildHasher>(&mut self, now: Instant, bucket: &TokenBucket, hasher: &S) {
        self.idle.retain(|e| !bucket.tat_is_full_at(e.1, now));
        self.sweep_busy(now, bucket, hasher);
    }

    /// The busy half of [`Shard::sweep`]: keys no future holds any more go back to `idle`, or
    /// are forgotten if they refilled.
    fn sweep_busy<S: BuildHasher>(&mut self, now: Instant, bucket: &TokenBucket, hasher: &S) {
        if self.busy.is_empty() {
            return;
        }
        let mut released = self.busy.extract_if(|e| Arc::get_mut(&mut e.1).is_some());
        let mut back = alloc::vec::Vec::new();
        for (key, limiter) in released.by_ref() {
            let tat = limiter.bucket().tat();
            if !bucket.tat_is_full_at(tat, now) {
                back.push((key, tat));
            }
        }
        drop(released);
        for (key, tat) in back {
            let hash = hasher.hash_one(&key);
            self.idle.insert_unique(hash, (key, tat), |e| hasher.hash_one(&e.0));
        }
    }

    /// Frees the tables' spare room.
    pub(super) fn shrink<S: BuildHasher>(&mut self, hasher: &S) {
        self.idle.shrink_to_fit(|e| hasher.hash_one(&e.0));
        self.busy.shrink_to_fit(|e| hasher.hash_one(&e.0));
    }

    /// The earliest instant at which some key of this shard could have refilled (a lower
    /// bound: TATs only move forward while a key is held).
    fn earliest_refill(&self, bucket: &TokenBucket) -> Instant {
        let idle = self.idle.iter().map(|e| e.1).min().map(|tat| bucket.full_at_tat(tat));
        let busy = self.busy.iter().map(|e| e.1.bucket().full_at()).min();
        match (idle, busy) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Instant::ZERO,
        }
    }
}
