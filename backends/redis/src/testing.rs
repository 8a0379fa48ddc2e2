//! For this crate's tests (hidden from the docs, not a stable API): the admission rule's
//! scripts on a test clock, as a [`StateStore`] (one operation per call) and as lists of
//! operations decided in one call ([`ParityStore::batch`]), so the parity tests can compare
//! their decisions with [`MemoryStore`](tollgate::model::MemoryStore)'s; and the bucket's
//! scripts on a test clock ([`ParityBucket`]), to compare with
//! [`TokenBucket`](tollgate::TokenBucket)'s.
//!
//! Time here is in nanoseconds (the core's unit), passed to the scripts as an argument instead
//! of the server's `TIME`; the scripts' arithmetic is exact below 2^52, so keep the clock below
//! that (about 52 days of nanoseconds).

use std::sync::Mutex;

use tollgate::Instant;
use tollgate::model::{Charge, Estimate, Limit, MemoryStore, StateStore, Wait};

use crate::encode;
use crate::error::{Error, StoreError};
use crate::scripts::{test_bucket_ops, test_ops};

/// The rule's scripts on one key, on a test clock in nanoseconds, over a blocking connection.
pub struct ParityStore {
    conn: Mutex<redis::Connection>,
    key: String,
    config: Vec<String>,
    /// The library function to `FCALL` instead of the script (see [`ParityStore::in_library`]).
    function: Option<String>,
}

impl core::fmt::Debug for ParityStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParityStore").field("key", &self.key).finish_non_exhaustive()
    }
}

impl ParityStore {
    /// The state of `limits` at `key` on the server at `url`.
    ///
    /// # Errors
    /// [`Error::Store`] if the server cannot be reached; `InvalidConfig` for limits the
    /// scripts cannot hold exactly.
    pub fn new(url: &str, key: &str, limits: &[Limit]) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        let conn = client.get_connection().map_err(StoreError::from)?;
        let (words, _) = encode::limits(limits, 1)?;
        let mut config = vec![encode::fingerprint("test", &words), limits.len().to_string()];
        config.extend(words.iter().map(u64::to_string));
        Ok(Self { conn: Mutex::new(conn), key: key.to_owned(), config, function: None })
    }

    /// As [`new`](Self::new), the operations run as a function of a library (`FUNCTION LOAD`,
    /// then `FCALL`), as production runs them: what the helpers keep between calls (parsed
    /// configs, parsed header feedback) is then kept, and must never change a decision.
    ///
    /// # Errors
    /// As [`new`](Self::new); [`Error::Store`] if the server has no functions (Redis < 7).
    pub fn in_library(url: &str, key: &str, limits: &[Limit]) -> Result<Self, Error> {
        let mut store = Self::new(url, key, limits)?;
        let (name, text) = crate::scripts::test_ops_library();
        {
            let mut conn = store.conn.lock().unwrap_or_else(|e| e.into_inner());
            redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(text.as_str())
                .exec(&mut *conn)
                .map_err(StoreError::from)?;
        }
        store.function = Some(name.clone());
        Ok(store)
    }

    /// Runs the test operations with `args` (after the config; the clock last).
    fn call<T: redis::FromRedisValue>(&self, args: &[String]) -> T {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        // A test helper: a failing server fails the test.
        let r = match &self.function {
            Some(f) => redis::cmd("FCALL")
                .arg(f.as_str())
                .arg(1)
                .arg(self.key.as_str())
                .arg(&self.config)
                .arg(args)
                .query::<T>(&mut *conn),
            None => {
                let mut inv = test_ops().prepare_invoke();
                inv.key(self.key.as_str());
                for a in self.config.iter().chain(args) {
                    inv.arg(a.as_str());
                }
                inv.invoke::<T>(&mut *conn)
            }
        };
        r.unwrap_or_else(|e| panic!("test_ops: {e}"))
    }

    fn run(&self, op: &RuleOp, now: Instant) -> Vec<i64> {
        let mut args: Vec<String> = op.words().iter().map(u64::to_string).collect();
        args.push(now.as_nanos().to_string());
        self.call(&args)
    }

    /// Runs `ops` in order in ONE script call at `now` (every one at the call's instant, as
    /// a production call deciding several admissions and settles does) and returns their
    /// answers in order. The same operations one call each, or on a
    /// [`MemoryStore`](tollgate::model::MemoryStore) one by one at `now`
    /// ([`RuleOp::apply`]), must answer the same.
    ///
    /// ```no_run
    /// use tollgate::Instant;
    /// use tollgate::model::Limit;
    /// use tollgate_redis::testing::{ParityStore, RuleAnswer, RuleOp};
    ///
    /// let limits = [Limit::requests("rpm", 1, core::time::Duration::from_secs(60))];
    /// let store = ParityStore::new("redis://127.0.0.1/", "{t}:s", &limits).unwrap();
    /// let answers = store.batch(&[RuleOp::Admit(0), RuleOp::Usage], Instant::ZERO);
    /// assert!(matches!(answers[0], RuleAnswer::Admit(Ok(_))));
    /// assert_eq!(answers[1], RuleAnswer::Usage(vec![1]));
    /// ```
    pub fn batch(&self, ops: &[RuleOp], now: Instant) -> Vec<RuleAnswer> {
        let mut args = vec!["4".to_owned(), ops.len().to_string()];
        for op in ops {
            args.extend(op.words().iter().map(u64::to_string));
        }
        args.push(now.as_nanos().to_string());
        let replies: Vec<Vec<i64>> = self.call(&args);
        assert_eq!(replies.len(), ops.len(), "test_ops: one answer per operation: {replies:?}");
        ops.iter().zip(&replies).map(|(op, r)| op.answer(r)).collect()
    }

    /// Runs one operation (any, the feedback ones included) in a call of its own at `now`.
    pub fn one(&self, op: &RuleOp, now: Instant) -> RuleAnswer {
        op.answer(&self.run(op, now))
    }

    /// Deletes the state, as an expiry or a server that restarts empty would lose it.
    pub fn lose_state(&self) {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        redis::cmd("DEL")
            .arg(self.key.as_str())
            .exec(&mut *conn)
            .unwrap_or_else(|e| panic!("DEL {}: {e}", self.key));
    }
}

/// One operation of the rule, for [`ParityStore::batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOp {
    /// [`StateStore::admit_at`] of this many tokens.
    Admit(u64),
    /// [`StateStore::admit_io_at`] of this estimate.
    AdmitIo(Estimate),
    /// [`StateStore::earliest_at`] of this many tokens.
    Earliest(u64),
    /// [`StateStore::settle_at`]: the charge's estimate becomes this many tokens.
    Settle(Charge, u64),
    /// [`StateStore::settle_io_at`]: the charge's estimate becomes this one.
    SettleIo(Charge, Estimate),
    /// [`StateStore::usage_at`].
    Usage,
    /// [`RateState::set_max`](tollgate::model::RateState::set_max) of a limit (its index) to a maximum (header feedback: a learned
    /// limit); answers the maximum before.
    SetMax(usize, u64),
    /// [`RateState::drain_seen_at`](tollgate::model::RateState::drain_seen_at) (header feedback: the provider's remaining); answers what
    /// the limit holds for the others.
    Drain(Drain),
}

/// The arguments of [`RateState::drain_seen_at`](tollgate::model::RateState::drain_seen_at), for [`RuleOp::Drain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// The limit's index in the list.
    pub limit: usize,
    /// The least the provider has left.
    pub remaining: u64,
    /// How much more it may have.
    pub tolerance: u64,
    /// When the provider's count resets.
    pub expires: Instant,
    /// When the provider reported it.
    pub seen: Instant,
}

/// What a [`RuleOp`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAnswer {
    /// An admission's charge, or when it would fit.
    Admit(Result<Charge, Wait>),
    /// `None` if it would be admitted, else when.
    Earliest(Option<Wait>),
    /// A settle (which answers nothing).
    Settled,
    /// The usage of each limit, in list order.
    Usage(Vec<u64>),
    /// A limit's maximum before a [`RuleOp::SetMax`] (0: no such limit).
    MaxWas(u64),
    /// What a [`RuleOp::Drain`] left the limit holding for the others.
    Drained(u64),
    /// A feedback operation asked of a store that has none (see [`RuleOp::apply_memory`]).
    Unsupported,
}

impl RuleOp {
    /// The same operation on any store at `now`, on its own.
    ///
    /// ```
    /// use tollgate::Instant;
    /// use tollgate::model::{Limit, MemoryStore};
    /// use tollgate_redis::testing::{RuleAnswer, RuleOp};
    ///
    /// let store = MemoryStore::new(&[Limit::requests("rpm", 1, core::time::Duration::from_secs(60))]);
    /// assert!(matches!(RuleOp::Admit(0).apply(&store, Instant::ZERO), RuleAnswer::Admit(Ok(_))));
    /// assert_eq!(RuleOp::Usage.apply(&store, Instant::ZERO), RuleAnswer::Usage(vec![1]));
    /// ```
    pub fn apply(&self, store: &dyn StateStore, now: Instant) -> RuleAnswer {
        match *self {
            Self::Admit(tokens) => RuleAnswer::Admit(store.admit_at(tokens, now)),
            Self::AdmitIo(e) => RuleAnswer::Admit(store.admit_io_at(e, now)),
            Self::Earliest(tokens) => RuleAnswer::Earliest(store.earliest_at(tokens, now)),
            Self::Settle(charge, actual) => {
                store.settle_at(charge, actual, now);
                RuleAnswer::Settled
            }
            Self::SettleIo(charge, actual) => {
                store.settle_io_at(charge, actual, now);
                RuleAnswer::Settled
            }
            Self::Usage => {
                let mut used = Vec::new();
                store.usage_at(now, &mut used);
                RuleAnswer::Usage(used)
            }
            Self::SetMax(..) | Self::Drain(_) => RuleAnswer::Unsupported,
        }
    }

    /// As [`apply`](Self::apply), the feedback operations included, on a [`MemoryStore`]'s
    /// [`RateState`].
    ///
    /// ```
    /// use tollgate::Instant;
    /// use tollgate::model::{Limit, MemoryStore};
    /// use tollgate_redis::testing::{RuleAnswer, RuleOp};
    ///
    /// let store = MemoryStore::new(&[Limit::requests("rpm", 5, core::time::Duration::from_secs(60))]);
    /// assert_eq!(RuleOp::SetMax(0, 3).apply_memory(&store, Instant::ZERO), RuleAnswer::MaxWas(5));
    /// ```
    pub fn apply_memory(&self, store: &MemoryStore, now: Instant) -> RuleAnswer {
        match *self {
            Self::SetMax(limit, max) => RuleAnswer::MaxWas(store.with(|s| {
                let from = s.max_of(limit).unwrap_or(0);
                s.set_max(limit, max);
                from
            })),
            Self::Drain(d) => RuleAnswer::Drained(store.with(|s| {
                s.drain_seen_at(d.limit, d.remaining, d.tolerance, d.expires, d.seen, now)
            })),
            _ => self.apply(store, now),
        }
    }

    /// The script's eight words: op code, tokens, input, then a settle's at, estimate,
    /// estimated input, actual, actual input. A plain count is all input, and a plain settle
    /// splits input first, as the core does.
    fn words(&self) -> [u64; 8] {
        let settle = |code, c: Charge, actual: Estimate| {
            [code, 0, 0, c.at.as_nanos(), c.tokens, c.input, actual.total(), actual.input]
        };
        match *self {
            Self::Admit(tokens) => [0, tokens, tokens, 0, 0, 0, 0, 0],
            Self::AdmitIo(e) => [0, e.total(), e.input, 0, 0, 0, 0, 0],
            Self::Earliest(tokens) => [1, tokens, tokens, 0, 0, 0, 0, 0],
            Self::Settle(c, actual) => settle(2, c, c.split(actual)),
            Self::SettleIo(c, actual) => settle(2, c, actual),
            Self::Usage => [3, 0, 0, 0, 0, 0, 0, 0],
            Self::SetMax(limit, max) => [5, limit as u64, max, 0, 0, 0, 0, 0],
            Self::Drain(d) => [
                6,
                d.limit as u64,
                d.remaining,
                d.tolerance,
                d.expires.as_nanos(),
                d.seen.as_nanos(),
                0,
                0,
            ],
        }
    }

    /// The script's reply to this operation, typed.
    fn answer(&self, r: &[i64]) -> RuleAnswer {
        match self {
            Self::Admit(tokens) => RuleAnswer::Admit(admitted(r, (*tokens).into())),
            Self::AdmitIo(e) => RuleAnswer::Admit(admitted(r, *e)),
            Self::Earliest(_) => RuleAnswer::Earliest(if r[0] == 1 { None } else { Some(wait(r)) }),
            Self::Settle(..) | Self::SettleIo(..) => RuleAnswer::Settled,
            Self::Usage => RuleAnswer::Usage(usage(r)),
            Self::SetMax(..) => RuleAnswer::MaxWas(usage(r)[0]),
            Self::Drain(_) => RuleAnswer::Drained(usage(r)[0]),
        }
    }
}

fn admitted(r: &[i64], estimate: Estimate) -> Result<Charge, Wait> {
    if r[0] == 1 {
        Ok(Charge::new(Instant::from_nanos(u64::try_from(r[1]).unwrap_or(0)), estimate))
    } else {
        Err(wait(r))
    }
}

fn usage(r: &[i64]) -> Vec<u64> {
    r.iter().map(|&v| u64::try_from(v).unwrap_or(0)).collect()
}

fn wait(reply: &[i64]) -> Wait {
    let ready_at = u64::try_from(reply[1]).map_or(Instant::MAX, Instant::from_nanos);
    Wait { ready_at, limit: usize::try_from(reply[2]).unwrap_or(usize::MAX) }
}

impl StateStore for ParityStore {
    fn admit_at(&self, tokens: u64, now: Instant) -> Result<Charge, Wait> {
        admitted(&self.run(&RuleOp::Admit(tokens), now), tokens.into())
    }

    fn earliest_at(&self, tokens: u64, now: Instant) -> Option<Wait> {
        let r = self.run(&RuleOp::Earliest(tokens), now);
        if r[0] == 1 { None } else { Some(wait(&r)) }
    }

    fn settle_at(&self, charge: Charge, actual: u64, now: Instant) {
        self.run(&RuleOp::Settle(charge, actual), now);
    }

    fn usage_at(&self, now: Instant, used: &mut Vec<u64>) {
        let r = self.run(&RuleOp::Usage, now);
        used.clear();
        used.extend(usage(&r));
    }

    fn admit_io_at(&self, estimate: Estimate, now: Instant) -> Result<Charge, Wait> {
        admitted(&self.run(&RuleOp::AdmitIo(estimate), now), estimate)
    }

    fn settle_io_at(&self, charge: Charge, actual: Estimate, now: Instant) {
        self.run(&RuleOp::SettleIo(charge, actual), now);
    }
}

/// The bucket's scripts (`gcra_reserve`, `gcra_cancel`) on one key and a test clock in
/// nanoseconds (one time unit = 1 ns, where production uses 1 µs), over a blocking connection.
pub struct ParityBucket {
    conn: Mutex<redis::Connection>,
    key: String,
    config: Vec<String>,
}

impl core::fmt::Debug for ParityBucket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParityBucket").field("key", &self.key).finish_non_exhaustive()
    }
}

/// One reservation's decision: reserved with a wait (ns), or refused with the wait it would
/// have had, or never (more than the burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketDecision {
    /// Reserved: go after this many ns.
    Reserved(u64),
    /// Refused, nothing taken: it would have waited this many ns.
    Refused(u64),
    /// More than the burst.
    Never,
}

impl ParityBucket {
    /// A bucket of `rate` and `burst` at `key` on the server at `url`.
    ///
    /// # Errors
    /// [`Error::Store`] if the server cannot be reached; `InvalidConfig` for a rate the
    /// scripts cannot hold exactly.
    pub fn new(url: &str, key: &str, rate: tollgate::Rate, burst: u64) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        let conn = client.get_connection().map_err(StoreError::from)?;
        let (p, d) = encode::token_cost(rate, 1)?;
        let fp = encode::fingerprint("bucket", &[p, d, burst]);
        let config = vec![fp, p.to_string(), d.to_string(), burst.to_string()];
        Ok(Self { conn: Mutex::new(conn), key: key.to_owned(), config })
    }

    fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        args: &[String],
        now: Instant,
    ) -> T {
        let mut inv = script.prepare_invoke();
        inv.key(self.key.as_str());
        for a in self.config.iter().chain(args) {
            inv.arg(a.as_str());
        }
        inv.arg(now.as_nanos());
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        // A test helper: a failing server fails the test.
        inv.invoke::<T>(&mut *conn).unwrap_or_else(|e| panic!("gcra: {e}"))
    }

    /// One call named `call` deciding `asks` (tokens, max wait in ns or `None`) in order at
    /// `now`, after giving back `undo` (tokens of a call) if that call is still the latest.
    pub fn reserve(
        &self,
        asks: &[(u64, Option<u64>)],
        call: &str,
        undo: Option<(u64, &str)>,
        now: Instant,
    ) -> Vec<BucketDecision> {
        let (undo_n, undo_id) = undo.unwrap_or((0, ""));
        let mut args = vec![undo_n.to_string(), undo_id.to_owned(), call.to_owned()];
        args.push(asks.len().to_string());
        for &(k, max_wait) in asks {
            args.push(k.to_string());
            args.push(max_wait.map_or_else(|| "-1".to_owned(), |w| w.to_string()));
        }
        let reply: Vec<i64> = self.invoke(&test_bucket_ops()[0], &args, now);
        assert_eq!(reply.len(), 3 * asks.len(), "gcra_reserve: {reply:?}");
        reply
            .chunks_exact(3)
            .map(|c| {
                let wait = u64::try_from(c[2]).unwrap_or(0);
                match c[0] {
                    1 => BucketDecision::Reserved(wait),
                    0 => BucketDecision::Refused(wait),
                    _ => BucketDecision::Never,
                }
            })
            .collect()
    }

    /// Gives back `n` tokens of the call `call` if it is still the latest; whether it was.
    pub fn cancel(&self, n: u64, call: &str, now: Instant) -> bool {
        self.invoke::<i64>(&test_bucket_ops()[1], &[n.to_string(), call.to_owned()], now) == 1
    }
}
