//! For this crate's tests (hidden from the docs, not a stable API): the admission rule's
//! scripts on a test clock, as a [`StateStore`], so the parity tests can compare their
//! decisions with [`MemoryStore`](tollgate::model::MemoryStore)'s; and the bucket's scripts on
//! a test clock ([`ParityBucket`]), to compare with [`TokenBucket`](tollgate::TokenBucket)'s.
//!
//! Time here is in nanoseconds (the core's unit), passed to the scripts as an argument instead
//! of the server's `TIME`; the scripts' arithmetic is exact below 2^52, so keep the clock below
//! that (about 52 days of nanoseconds).

use std::sync::Mutex;

use tollgate::Instant;
use tollgate::model::{Charge, Limit, StateStore, Wait};

use crate::encode;
use crate::error::{Error, StoreError};
use crate::scripts::{test_bucket_ops, test_ops};

/// The rule's scripts on one key, on a test clock in nanoseconds, over a blocking connection.
pub struct ParityStore {
    conn: Mutex<redis::Connection>,
    key: String,
    config: Vec<String>,
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
        Ok(Self { conn: Mutex::new(conn), key: key.to_owned(), config })
    }

    fn run(&self, op: u8, tokens: u64, extra: [u64; 3], now: Instant) -> Vec<i64> {
        let script = test_ops();
        let mut inv = script.prepare_invoke();
        inv.key(self.key.as_str());
        for a in &self.config {
            inv.arg(a.as_str());
        }
        inv.arg(op).arg(tokens).arg(extra[0]).arg(extra[1]).arg(extra[2]).arg(now.as_nanos());
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        // A test helper: a failing server fails the test.
        inv.invoke::<Vec<i64>>(&mut *conn).unwrap_or_else(|e| panic!("test_ops: {e}"))
    }
}

fn wait(reply: &[i64]) -> Wait {
    let ready_at = u64::try_from(reply[1]).map_or(Instant::MAX, Instant::from_nanos);
    Wait { ready_at, limit: usize::try_from(reply[2]).unwrap_or(usize::MAX) }
}

impl StateStore for ParityStore {
    fn admit_at(&self, tokens: u64, now: Instant) -> Result<Charge, Wait> {
        let r = self.run(0, tokens, [0; 3], now);
        if r[0] == 1 {
            Ok(Charge::new(Instant::from_nanos(u64::try_from(r[1]).unwrap_or(0)), tokens.into()))
        } else {
            Err(wait(&r))
        }
    }

    fn earliest_at(&self, tokens: u64, now: Instant) -> Option<Wait> {
        let r = self.run(1, tokens, [0; 3], now);
        if r[0] == 1 { None } else { Some(wait(&r)) }
    }

    fn settle_at(&self, charge: Charge, actual: u64, now: Instant) {
        self.run(2, 0, [charge.at.as_nanos(), charge.tokens, actual], now);
    }

    fn usage_at(&self, now: Instant, used: &mut Vec<u64>) {
        let r = self.run(3, 0, [0; 3], now);
        used.clear();
        used.extend(r.iter().map(|&v| u64::try_from(v).unwrap_or(0)));
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
