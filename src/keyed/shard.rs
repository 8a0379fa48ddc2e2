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
use alloc::vec::Vec;
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
    /// No idle key of this shard refills before this instant: the earliest refill found by
    /// the last full sweep, lowered by every key that came into `idle` since (a new key, or a
    /// busy one let go, whose wait may have been cancelled and given its reservation back).
    /// So a full shard (a key cap) looks again only at its few busy keys until then.
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
    /// [`STEP_EVERY`] operations, an eviction step (the next few buckets of `idle`, and one
    /// of `busy`). (An insert takes a step of its own.)
    #[inline]
    pub(super) fn tick<S: BuildHasher>(&mut self, now: Instant, cx: &Ctx<'_, S>) {
        self.ops = self.ops.wrapping_add(1);
        if self.ops % STEP_EVERY == 0 {
            self.step_idle(now, cx.bucket);
            if !self.busy.is_empty() {
                self.step_busy(now, cx);
            }
        }
    }

    /// Looks at the next few buckets of `idle` and forgets the keys that have refilled.
    /// Exact: a full bucket decides as a fresh one does.
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

    /// The busy table's step: one of its keys, let go if no future holds it any more.
    #[cold]
    fn step_busy<S: BuildHasher>(&mut self, now: Instant, cx: &Ctx<'_, S>) {
        let buckets = self.busy.num_buckets();
        self.busy_cursor = (self.busy_cursor + 1) & (buckets - 1);
        if let Ok(mut entry) = self.busy.get_bucket_entry(self.busy_cursor) {
            if Arc::get_mut(&mut entry.get_mut().1).is_some() {
                let ((key, limiter), _) = entry.remove();
                let hash = cx.hasher.hash_one(&key);
                Self::let_go(
                    &mut self.idle,
                    &mut self.full_until,
                    hash,
                    key,
                    &limiter,
                    Some(now),
                    cx,
                );
            }
        }
    }

    /// The move of a busy key that no future holds any more back to `idle`, as its TAT, in
    /// one place. With `forget_at`, a key whose bucket is full then is forgotten instead.
    /// Either way the key can no longer hold up a full shard: `full_until` is lowered to its
    /// refill (a cancelled wait may have given back its reservation since the bound was set).
    /// (Over the two fields it changes, so [`Shard::locate`] can call it while it borrows
    /// `busy`.)
    fn let_go<'t, S: BuildHasher>(
        idle: &'t mut HashTable<(K, u64)>,
        full_until: &mut Instant,
        hash: u64,
        key: K,
        limiter: &AsyncRateLimiter<T>,
        forget_at: Option<Instant>,
        cx: &Ctx<'_, S>,
    ) -> Option<&'t mut u64> {
        let tat = limiter.bucket().tat();
        if forget_at.is_some_and(|now| cx.bucket.tat_is_full_at(tat, now)) {
            return None;
        }
        *full_until = (*full_until).min(cx.bucket.full_at_tat(tat));
        let hasher = cx.hasher;
        let entry = idle.insert_unique(hash, (key, tat), |e| hasher.hash_one(&e.0));
        Some(&mut entry.into_mut().1)
    }

    /// Finds `key`. A busy key that no future holds any more is moved back to `idle` first.
    #[inline]
    pub(super) fn locate<Q, S>(&mut self, hash: u64, key: &Q, cx: &Ctx<'_, S>) -> Slot<'_, T>
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
                let (idle, full_until) = (&mut self.idle, &mut self.full_until);
                return match Self::let_go(idle, full_until, hash, k, &limiter, None, cx) {
                    Some(tat) => Slot::Idle(tat),
                    None => unreachable!("kept: no instant to forget at"),
                };
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
        let bucket = cx.bucket;
        if self.len() >= cx.cap {
            if now < self.full_until {
                // No idle key can have refilled yet; a busy key may have been let go since
                // (there are few of those, so looking is cheap).
                self.sweep_busy(now, cx);
            } else {
                self.sweep(now, cx);
                self.full_until = self.earliest_idle_refill(bucket);
            }
            if self.len() >= cx.cap {
                return Err(Error::RateLimited(Refusal::at(self.room_at(now, bucket))));
            }
        }
        // Evict before growing: a table about to double first forgets what it can, so it
        // grows only for keys that are really live. The sweep reads the whole table, so it
        // runs only once an eighth of the table's capacity was inserted since the last one:
        // at most eight entries read per insert, even when each sweep frees little and the
        // table stays at its capacity.
        let capacity = self.idle.capacity();
        if self.idle.len() == capacity && self.inserted >= capacity / 8 {
            self.sweep(now, cx);
            self.inserted = 0;
        }
        self.step_idle(now, bucket);
        self.inserted = self.inserted.saturating_add(1);
        self.full_until = self.full_until.min(bucket.full_at_tat(tat));
        let hasher = cx.hasher;
        self.idle.insert_unique(hash, (key, tat), |e| hasher.hash_one(&e.0));
        Ok(())
    }

    /// When a full shard may next have room: the earliest refill of its keys (the idle ones
    /// bounded by `full_until`; the busy ones read now, since a cancelled wait lowers a busy
    /// key's TAT at any time). If that is not after `now` (a key held by a future may be full
    /// already, but cannot go while held), one token from `now`: never an instant already
    /// past, so a caller that sleeps until then does not spin.
    fn room_at(&self, now: Instant, bucket: &TokenBucket) -> Instant {
        let busy = self.busy.iter().map(|e| e.1.bucket().full_at()).min();
        let earliest = busy.map_or(self.full_until, |b| b.min(self.full_until));
        if earliest > now { earliest } else { now.saturating_add(one_token(bucket)) }
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
    pub(super) fn sweep<S: BuildHasher>(&mut self, now: Instant, cx: &Ctx<'_, S>) {
        let bucket = cx.bucket;
        self.idle.retain(|e| !bucket.tat_is_full_at(e.1, now));
        self.sweep_busy(now, cx);
    }

    /// The busy half of [`Shard::sweep`]: every key no future holds any more is let go.
    fn sweep_busy<S: BuildHasher>(&mut self, now: Instant, cx: &Ctx<'_, S>) {
        if self.busy.is_empty() {
            return;
        }
        let released: Vec<_> = self.busy.extract_if(|e| Arc::get_mut(&mut e.1).is_some()).collect();
        for (key, limiter) in released {
            let hash = cx.hasher.hash_one(&key);
            Self::let_go(&mut self.idle, &mut self.full_until, hash, key, &limiter, Some(now), cx);
        }
    }

    /// Frees the tables' spare room.
    pub(super) fn shrink<S: BuildHasher>(&mut self, hasher: &S) {
        self.idle.shrink_to_fit(|e| hasher.hash_one(&e.0));
        self.busy.shrink_to_fit(|e| hasher.hash_one(&e.0));
    }

    /// The earliest instant at which an idle key of this shard refills (`Instant::MAX` if
    /// there is none): exact when computed, and a lower bound from then on, since an idle
    /// key's TAT only moves forward.
    fn earliest_idle_refill(&self, bucket: &TokenBucket) -> Instant {
        self.idle.iter().map(|e| bucket.full_at_tat(e.1)).min().unwrap_or(Instant::MAX)
    }
}
