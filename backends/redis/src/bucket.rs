//! [`RateLimiter`]: tollgate's GCRA token bucket with its state in Redis, shared by every
//! process using the same namespace and name.
//!
//! An acquire is one `gcra_reserve` script call that commits the reservation and answers how
//! long to wait; the caller then sleeps once, on its own timer. Reservations are ordered by the
//! server, so callers go first come, first served across hosts. Within a process, waiters line
//! up on a FIFO gate and only the head holds a reservation (as in the in-process limiter), so a
//! cancelled wait gives its reservation back exactly: it is always the latest one this process
//! made, and the script undoes it if no other process reserved after it. An acquire that finds
//! nobody of this process at the gate first tries, as `try_acquire` does: concurrent calls of
//! one bucket share a round trip (`crate::line`, `bucket/line.rs`), and one admitted at once
//! holds nothing.

use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::Arc;

use tollgate::{Clock, Instant, Rate, Refusal, TokenBucket};
use tollgate_tokio::TokioTimer;

use crate::degraded::Degraded;
use crate::encode::{self, UNIT_NS};
use crate::error::{Error, StoreError};
use crate::keys::{self, Kind};
use crate::scripts::scripts;
use crate::store::{Job, RedisStore, int, text};
use crate::waiting::Waiting;

mod line;
use crate::line::Line;
use line::{Answer, Ask, CallUndo, Decision};

/// A token bucket shared through Redis: bursts of up to `burst` tokens, refilled at `rate`.
///
/// ```no_run
/// # async fn demo() -> Result<(), tollgate_redis::Error> {
/// use tollgate_redis::{RateLimiter, RedisStore};
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let limiter = RateLimiter::per_second(store, "myapp", "search-api", 10)?;
/// limiter.acquire().await?; // waits if 10 went in the last second, in any process
/// if limiter.try_acquire_n(3).await.is_ok() {
///     // three more, now
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<BucketInner>,
}

#[derive(Debug)]
struct BucketInner {
    store: RedisStore,
    keys: Vec<String>,
    /// Fingerprint, P, D, burst.
    config_args: Vec<Vec<u8>>,
    rate: Rate,
    burst: u64,
    /// This process's waiters, first come first served; the holder has the only reservation.
    gate: tokio::sync::Mutex<()>,
    /// A cancelled reservation (tokens, request id) the next call undoes first, in the
    /// same script: the janitor's copy of the job may land too late.
    pending: std::sync::Mutex<Pending>,
    /// This process's reservations waiting for a call (see `line.rs`).
    line: Line<BucketInner>,
    /// The give-back of the latest shared call's admissions that their callers do not read
    /// (`bucket/line.rs`).
    last_undo: std::sync::Mutex<Option<Arc<CallUndo>>>,
    /// This process's acquires at the gate or waiting for it.
    waiting: AtomicUsize,
    degraded: Degraded,
    local: Option<TokenBucket>,
    timer: TokioTimer,
}

/// A cancelled reservation to undo in the next call, and the name of this process's latest
/// call (the only one an undo can still apply to, unless a later one took nothing).
#[derive(Debug, Default)]
struct Pending {
    undo: Option<(u64, String)>,
    latest: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    Forever,
    Before(tokio::time::Instant),
}

impl RateLimiter {
    /// A bucket of `rate` with bursts of `burst`, named `name` in `namespace`.
    ///
    /// # Errors
    /// [`tollgate::Error::InvalidConfig`] for a zero burst, an invalid namespace, or values
    /// too large for exact arithmetic in Redis.
    pub fn new(
        store: RedisStore,
        namespace: &str,
        name: &str,
        rate: Rate,
        burst: u64,
    ) -> Result<Self, Error> {
        keys::check_namespace(namespace)?;
        let invalid = |field, reason| {
            Error::from(tollgate::Error::InvalidConfig(tollgate::InvalidConfig { field, reason }))
        };
        if burst == 0 {
            return Err(invalid("burst", "must be greater than zero"));
        }
        let (p, d) = encode::token_cost(rate, UNIT_NS)?;
        if u128::from(burst) * u128::from(p) >= u128::from(encode::EXACT / 4) {
            return Err(invalid("burst", "too large for the Redis backend (exact below 2^52)"));
        }
        let fp = encode::fingerprint("bucket", &[p, d, burst]);
        let tag = keys::tag(namespace, Kind::Bucket, name);
        Ok(Self {
            inner: Arc::new(BucketInner {
                store,
                keys: vec![format!("{tag}:b")],
                config_args: vec![text(&fp), int(p), int(d), int(burst)],
                rate,
                burst,
                gate: tokio::sync::Mutex::new(()),
                pending: std::sync::Mutex::new(Pending::default()),
                line: Line::default(),
                last_undo: std::sync::Mutex::new(None),
                waiting: AtomicUsize::new(0),
                degraded: Degraded::FailClosed,
                local: None,
                timer: TokioTimer::new(),
            }),
        })
    }

    /// `n` per second with bursts of `max(1, n)`, as the in-process limiters' `per_second`.
    ///
    /// # Errors
    /// As [`new`](Self::new); `n = 0` is invalid.
    pub fn per_second(
        store: RedisStore,
        namespace: &str,
        name: &str,
        n: u32,
    ) -> Result<Self, Error> {
        let rate = Rate::try_per_second(n).map_err(tollgate::Error::from)?;
        Self::new(store, namespace, name, rate, rate.default_burst())
    }

    /// The same limiter with `policy` while Redis is unreachable (default
    /// [`Degraded::FailClosed`]; [`Degraded::Local`] keeps a local bucket of that share).
    #[must_use]
    pub fn on_store_error(self, policy: Degraded) -> Self {
        let i = &self.inner;
        let local = match policy {
            Degraded::Local { share } => Some(TokenBucket::new(
                Rate::new(share.of(i.rate.count()), i.rate.period()),
                share.of(i.burst),
            )),
            _ => None,
        };
        Self {
            inner: Arc::new(BucketInner {
                store: i.store.clone(),
                keys: i.keys.clone(),
                config_args: i.config_args.clone(),
                rate: i.rate,
                burst: i.burst,
                gate: tokio::sync::Mutex::new(()),
                pending: std::sync::Mutex::new(Pending::default()),
                line: Line::default(),
                last_undo: std::sync::Mutex::new(None),
                waiting: AtomicUsize::new(0),
                degraded: policy,
                local,
                timer: i.timer,
            }),
        }
    }

    /// The refill rate.
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// The largest burst.
    pub fn burst(&self) -> u64 {
        self.inner.burst
    }

    /// The clock of `acquire_before` deadlines and refusals' instants (tokio's).
    pub fn timer(&self) -> TokioTimer {
        self.inner.timer
    }

    /// One token now, or a refusal saying when. Never waits (one round trip).
    ///
    /// # Errors
    /// [`tollgate::Error::RateLimited`], [`Error::Store`], [`Error::ConfigMismatch`].
    pub async fn try_acquire(&self) -> Result<(), Error> {
        self.try_acquire_n(1).await
    }

    /// `n` tokens now, or a refusal saying when. Never waits.
    ///
    /// # Errors
    /// `InsufficientCapacity` if `n > burst`; otherwise as [`try_acquire`](Self::try_acquire).
    ///
    /// # Cancel safety
    /// Dropping the future takes nothing: what its call may have reserved is given back,
    /// also when the answer came and was not read yet (in the next call of this process).
    pub async fn try_acquire_n(&self, n: u64) -> Result<(), Error> {
        let i = &self.inner;
        i.capacity(n)?;
        // As in `wait`: a try dropped in flight gives back what its call may have taken.
        let mut reserved =
            Reserved { bucket: i.as_ref(), n, id: i.store.inner.new_id(), armed: true };
        let taken = i.take(n, Some(0), None, &mut reserved).await;
        // (Still armed only if the call was this try's own: see `decide`.)
        reserved.armed &=
            matches!(&taken, Err(e) if e.is_store() && *e != Error::Store(StoreError::Unavailable));
        taken.map(|_| ())
    }

    /// Waits for one token.
    ///
    /// # Errors
    /// [`Error::Store`] when Redis cannot be reached (fail closed; the other policies admit
    /// instead, see [`Degraded`]), [`Error::ConfigMismatch`].
    ///
    /// # Cancel safety
    /// Dropping the future gives its reservation back (exactly, unless another process
    /// reserved after it: then it lapses, which only delays later callers).
    pub async fn acquire(&self) -> Result<(), Error> {
        self.acquire_n(1).await
    }

    /// Waits for `n` tokens.
    ///
    /// # Errors
    /// `InsufficientCapacity` at once if `n > burst`; otherwise as [`acquire`](Self::acquire).
    pub async fn acquire_n(&self, n: u64) -> Result<(), Error> {
        self.inner.wait(n, Bound::Forever).await
    }

    /// Waits for one token at most `max_wait`; refused up front (taking nothing) if it would
    /// take longer.
    ///
    /// `max_wait` bounds the call to Redis too (at least 10 ms). A call it cuts short, sooner
    /// than the response timeout, says nothing about the server: the acquire fails with
    /// [`Error::Store`]`(`[`StoreError::Timeout`]`)` under every [`Degraded`] policy, taking
    /// nothing; the policy answers only once the store is known unreachable (see
    /// [`Degraded`](crate::Degraded#when-the-policy-answers)).
    ///
    /// # Errors
    /// `MaxWaitExceeded` with when it would succeed; [`StoreError::Timeout`] when Redis did
    /// not answer within the bound; as [`acquire`](Self::acquire).
    pub async fn acquire_within(&self, max_wait: Duration) -> Result<(), Error> {
        self.acquire_n_within(1, max_wait).await
    }

    /// Waits for `n` tokens at most `max_wait`.
    ///
    /// # Errors
    /// As [`acquire_within`](Self::acquire_within) and [`acquire_n`](Self::acquire_n).
    pub async fn acquire_n_within(&self, n: u64, max_wait: Duration) -> Result<(), Error> {
        let now = tokio::time::Instant::now();
        let by = now.checked_add(max_wait).unwrap_or(now + Duration::from_secs(86_400 * 365));
        self.inner.wait(n, Bound::Before(by)).await
    }

    /// Waits for one token until `deadline` (an instant of [`timer`](Self::timer)), which
    /// bounds the call to Redis as `max_wait` does in [`acquire_within`](Self::acquire_within).
    ///
    /// # Errors
    /// As [`acquire_within`](Self::acquire_within).
    pub async fn acquire_before(&self, deadline: Instant) -> Result<(), Error> {
        self.acquire_n_before(1, deadline).await
    }

    /// Waits for `n` tokens until `deadline`.
    ///
    /// # Errors
    /// As [`acquire_n_within`](Self::acquire_n_within).
    pub async fn acquire_n_before(&self, n: u64, deadline: Instant) -> Result<(), Error> {
        self.inner.wait(n, Bound::Before(self.inner.timer.to_tokio(deadline))).await
    }
}

/// What a reservation call got.
enum Taken {
    /// Reserved in Redis: go after `wait`.
    Redis { wait: Duration },
    /// Admitted by the degraded policy: go after this long.
    Local(Duration),
}

/// A reservation that is given back if the wait for it is cancelled: `n` tokens of the call
/// `id` (the request's own id until an answer names the call that carried it).
struct Reserved<'a> {
    bucket: &'a BucketInner,
    n: u64,
    id: String,
    armed: bool,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.bucket.give_back(self.n, &self.id);
        }
    }
}

impl BucketInner {
    fn capacity(&self, n: u64) -> Result<(), Error> {
        if n > self.burst {
            let e = tollgate::Error::InsufficientCapacity { requested: n, capacity: self.burst };
            return Err(e.into());
        }
        Ok(())
    }

    /// Gives back `n` tokens reserved by the call `id`, if that call is still the bucket's
    /// latest: in the next call this process makes (undone before its reservations), and
    /// through the janitor in case there is none soon. The second to arrive finds nothing
    /// to undo.
    fn give_back(&self, n: u64, id: &str) {
        let mut args = self.config_args.clone();
        args.extend([int(n), text(id)]);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Only the bucket's latest call can be undone: an older call's give-back (its last
        // answer resolved late) must not push out the latest one's.
        let latest = |i: &str| pending.latest.as_deref() == Some(i);
        let keep = pending.undo.as_ref().is_some_and(|(_, p)| latest(p)) && !latest(id);
        if !keep {
            pending.undo = Some((n, id.to_owned()));
        }
        drop(pending);
        let job = Job { script: &scripts().gcra_cancel, keys: self.keys.clone(), args };
        self.store.inner.later(job);
    }

    /// One reservation: `max_wait` µs (`None`: unbounded; `Some(0)`: a try). Returns the wait
    /// and the reservation, or the refusal; `reserved` learns which call carried it.
    async fn take(
        self: &Arc<Self>,
        n: u64,
        max_wait: Option<u64>,
        budget: Option<Duration>,
        reserved: &mut Reserved<'_>,
    ) -> Result<Taken, Error> {
        self.capacity(n)?;
        let ask = Ask { k: n, max_wait, id: reserved.id.clone() };
        let (decision, via) = self.decide(ask, budget, &mut reserved.armed).await;
        let Answer { code, wait, call } = match decision {
            Ok(d) => d,
            // Gave up waiting in the line: its own bound cut it short, even one at or above
            // the response timeout (it waited behind another call first), or with no bound,
            // the response timeout from when it joined, behind calls that did not hang. Not
            // a fault unless the store is known unreachable (the runner's call, bounded by
            // the response timeout, tells).
            Err(e)
                if via == crate::line::Via::Abandoned
                    && !self.store.inner.known_unreachable(&self.keys) =>
            {
                tracing::warn!(target: "tollgate_redis", key = %self.keys[0], error = %e, policy = ?self.degraded, "the caller's own bound ran out in the line (Redis slow, not known unreachable): refused, whatever the policy");
                return Err(Error::Store(e));
            }
            Err(e) => return self.degrade(n, max_wait, e).map(Taken::Local),
        };
        // From here the caller holds what the call gave it, by the call's name.
        reserved.armed = true;
        if *call != *reserved.id {
            reserved.id = call.to_string();
        }
        let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
        match code {
            1 => Ok(Taken::Redis { wait }),
            0 => {
                let ready_at = self.timer.now().saturating_add(wait);
                Err(if max_wait == Some(0) {
                    tollgate::Error::RateLimited(Refusal::at(ready_at))
                } else {
                    tollgate::Error::MaxWaitExceeded { ready_at }
                }
                .into())
            }
            -1 => self.capacity(u64::MAX).map(|()| Taken::Local(Duration::ZERO)),
            -2 => Err(Error::ConfigMismatch { key: self.keys[0].clone() }),
            _ => Err(StoreError::Protocol(format!("gcra_reserve: code {code}")).into()),
        }
    }

    /// One `gcra_reserve` call, named `call`, deciding `asks` in order (undoing this
    /// process's latest cancelled reservation first): one decision per ask, or the store's
    /// error for each.
    async fn reserve(
        &self,
        asks: &[Ask],
        call: &Arc<str>,
        budget: Option<Duration>,
    ) -> Vec<Decision> {
        // A shared call with answers still on their way to their callers is the bucket's
        // latest: what they have not read is given back in this call (`bucket/line.rs`).
        let unread = self.last_undo.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(u) = unread {
            u.settle_into(self);
        }
        let (undo_n, undo_id) = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.latest = Some(call.clone());
            pending.undo.take().unwrap_or_default()
        };
        let mut args = self.config_args.clone();
        args.reserve(4 + 2 * asks.len());
        args.extend([int(undo_n), text(&undo_id), text(call), int(asks.len())]);
        for a in asks {
            args.push(int(a.k));
            args.push(a.max_wait.map_or_else(|| int(-1i64), int));
        }
        let reply = match self
            .store
            .inner
            .eval_admission(&scripts().gcra_reserve, &self.keys, &args, budget)
            .await
        {
            Ok(r) => r,
            Err(e) => return vec![Err(e); asks.len()],
        };
        let answer = |code, wait| Ok(Answer { code, wait, call: call.clone() });
        if reply.first() == Some(&-2) {
            return vec![answer(-2, 0); asks.len()];
        }
        if reply.len() != 3 * asks.len() {
            let e = StoreError::Protocol(format!("gcra_reserve: {reply:?}"));
            return vec![Err(e); asks.len()];
        }
        reply.chunks_exact(3).map(|c| answer(c[0], c[2])).collect()
    }

    async fn wait(self: &Arc<Self>, n: u64, bound: Bound) -> Result<(), Error> {
        self.capacity(n)?;
        let deadline = match bound {
            Bound::Forever => None,
            Bound::Before(d) => Some(d),
        };
        // Nobody of this process waiting: try first, sharing a call with the other callers
        // (`line.rs`). Admitted now holds no reservation, so nothing is left to give back
        // exactly; refused, it lines up below like everyone who must wait.
        if self.waiting.load(Ordering::Acquire) == 0 {
            let budget = deadline.map(|d| {
                d.saturating_duration_since(tokio::time::Instant::now())
                    .max(crate::model::MIN_BUDGET)
            });
            let mut reserved =
                Reserved { bucket: self.as_ref(), n, id: self.store.inner.new_id(), armed: true };
            match self.take(n, Some(0), budget, &mut reserved).await {
                Ok(_) => {
                    reserved.armed = false;
                    return Ok(());
                }
                Err(Error::Limit(tollgate::Error::RateLimited(_))) => reserved.armed = false,
                Err(e) => {
                    reserved.armed &= e.is_store() && e != Error::Store(StoreError::Unavailable);
                    return Err(e);
                }
            }
        }
        // Queue first: only the head of this process's line holds a reservation. While
        // anyone is here, acquires come here directly (FIFO: a try could take a token from
        // under the head).
        let _waiting = Waiting::enter(&self.waiting);
        let _gate = match deadline {
            None => self.gate.lock().await,
            Some(d) => match tokio::time::timeout_at(d, self.gate.lock()).await {
                Ok(g) => g,
                Err(_) => {
                    let ready_at = self.timer.from_tokio(d).saturating_add(Duration::from_nanos(1));
                    return Err(tollgate::Error::MaxWaitExceeded { ready_at }.into());
                }
            },
        };
        let remaining = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        let max_wait = remaining.map(|r| u64::try_from(r.as_micros()).unwrap_or(u64::MAX));
        let budget = remaining.map(|r| r.max(crate::model::MIN_BUDGET));
        // Armed before the call: dropped while the call is in flight, or with its reply lost,
        // the reservation it may have made is undone all the same.
        let id = self.store.inner.new_id();
        let mut reserved = Reserved { bucket: self.as_ref(), n, id, armed: true };
        let wait = match self.take(n, max_wait, budget, &mut reserved).await {
            Ok(Taken::Redis { wait }) | Ok(Taken::Local(wait)) => wait,
            Err(e) => {
                // A refusal took nothing, nor a call the breaker turned away; another store
                // error may have, and stays armed.
                reserved.armed &= e.is_store() && e != Error::Store(StoreError::Unavailable);
                // A bound with no time left asks as a try does (`max_wait` 0); refused, it is
                // still a bounded acquire's refusal, as in the in-process bucket.
                return Err(match e {
                    Error::Limit(tollgate::Error::RateLimited(refusal)) => {
                        tollgate::Error::MaxWaitExceeded { ready_at: refusal.ready_at() }.into()
                    }
                    e => e,
                });
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        reserved.armed = false;
        Ok(())
    }

    /// The degraded policy's answer when Redis failed: how long to wait before going (no
    /// reservation in Redis to give back), or the error. A call only cut short by its
    /// caller's own bound says nothing about the server: its error, whatever the policy
    /// (`StoreInner::cut_short`).
    fn degrade(&self, n: u64, max_wait: Option<u64>, error: StoreError) -> Result<Duration, Error> {
        if self.store.inner.cut_short(&self.keys, &error) {
            tracing::warn!(target: "tollgate_redis", key = %self.keys[0], %error, policy = ?self.degraded, "the caller's own bound cut the call short (Redis slow, not known unreachable): refused, whatever the policy");
            return Err(Error::Store(error));
        }
        match self.degraded {
            Degraded::FailClosed => {
                tracing::warn!(target: "tollgate_redis", key = %self.keys[0], %error, "store unreachable: refused (fail closed)");
                Err(Error::Store(error))
            }
            Degraded::FailOpen => {
                tracing::warn!(target: "tollgate_redis", key = %self.keys[0], %error, "store unreachable: admitted without a limit (fail open)");
                Ok(Duration::ZERO)
            }
            Degraded::Local { share } => {
                tracing::warn!(target: "tollgate_redis", key = %self.keys[0], %error, ?share, "store unreachable: admitting on the local share");
                let Some(local) = &self.local else { return Err(Error::Store(error)) };
                let now = self.timer.now();
                if max_wait == Some(0) {
                    local.try_acquire_at(n, now)?;
                    return Ok(Duration::ZERO);
                }
                let max_wait = max_wait.map_or(Duration::MAX, Duration::from_micros);
                let reservation = local.reserve_within_at(n, now, max_wait)?;
                Ok(reservation.ready_at().saturating_duration_since(now))
            }
        }
    }
}
