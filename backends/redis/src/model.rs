//! [`ModelRateLimiter`]: tollgate's model limiter (RPM, TPM, parallel requests and any further
//! [`Limit`]) with its state in Redis, shared by every process that uses the same namespace.
//!
//! The waiting, per acquire: while nobody of this process is queued, it first tries in the
//! model's line (`model/line.rs`: one `model_batch` call decides this process's concurrent
//! tries and settles). Refused there, or with others of the process queued, one `model_admit`
//! call decides — admit now, or join the model's FIFO queue, or, at the head of the queue with
//! only rate limits in the way, sleep once until the instant the server computed (its ticket
//! kept until then). A queued waiter sleeps until a message names its ticket (room that frees
//! is granted to queued waiters in the call that frees it; the waiter's next call finds its
//! admission), or until its refresh timer (a third of the ticket TTL) says to renew the
//! ticket, which also covers lost messages. Only the oldest waiters are admitted, so nobody is
//! overtaken, across hosts.
//!
//! Provider feedback (`model/feedback.rs`): a cooldown or an exhausted quota lives in the
//! model's state, so one process's 429 holds them all; every admission reads it in the read
//! it already makes. So does what the provider's headers said (`model/headers.rs`): a limit
//! learned lower and the share the provider counts for other clients.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

use tollgate::model::{Counts, Estimate, Limit, LimitUsage};
use tollgate::{Clock, Instant, ModelStats, RateLimitConfig, Refusal, Usage};
use tollgate_tokio::TokioTimer;

use crate::degraded::Degraded;
use crate::encode::{self, UNIT_NS};
use crate::error::{Error, StoreError};
use crate::keys::{self, Kind};
use crate::line::{Line, Via};
use crate::permit::{ModelPermit, PermitState, RedisHold};
use crate::scripts::scripts;
use crate::store::{Job, RedisStore, int, text};
use crate::waiting::Waiting;

mod line;
pub(crate) use line::Ask;
mod feedback;
mod headers;

/// Builds a [`ModelRateLimiter`]: the models, the default config, lease and ticket TTLs, and
/// the policy while Redis is unreachable.
///
/// ```no_run
/// # async fn demo() -> Result<(), tollgate_redis::Error> {
/// use core::time::Duration;
/// use tollgate::RateLimitConfig;
/// use tollgate_redis::{Degraded, ModelRateLimiter, RedisStore, Share};
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let limiter = ModelRateLimiter::builder(store, "myapp")
///     .model("gpt-4", RateLimitConfig { rpm: 500, tpm: 40_000, max_parallel_requests: 10, ..Default::default() })
///     .default_config(RateLimitConfig::default())
///     .lease_ttl(Duration::from_secs(30))
///     .on_store_error(Degraded::Local { share: Share::new(1, 4) })
///     .build()?;
/// # let _ = limiter; Ok(()) }
/// ```
#[derive(Debug)]
pub struct ModelRateLimiterBuilder {
    store: RedisStore,
    namespace: String,
    models: Vec<(String, RateLimitConfig)>,
    default_config: Option<RateLimitConfig>,
    lease_ttl: Duration,
    ticket_ttl: Duration,
    degraded: Degraded,
}

impl ModelRateLimiterBuilder {
    /// Adds (or replaces) a model's config.
    #[must_use]
    pub fn model(mut self, name: impl Into<String>, config: RateLimitConfig) -> Self {
        let name = name.into();
        self.models.retain(|(n, _)| *n != name);
        self.models.push((name, config));
        self
    }

    /// The config of models not configured by name (without one, the limiter is strict: an
    /// unknown model is [`tollgate::Error::UnknownModel`]).
    #[must_use]
    pub fn default_config(mut self, config: RateLimitConfig) -> Self {
        self.default_config = Some(config);
        self
    }

    /// How long a parallel slot stays held without a heartbeat (default 30 s): a crashed
    /// process's slots come back within this. Heartbeats go every third of it.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// How long a queued waiter keeps its place without renewing it (default 3 s; renewed every
    /// third of it, which also bounds how long a lost wake-up message can delay it).
    #[must_use]
    pub fn ticket_ttl(mut self, ttl: Duration) -> Self {
        self.ticket_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// What to do while Redis is unreachable (default [`Degraded::FailClosed`]).
    #[must_use]
    pub fn on_store_error(mut self, policy: Degraded) -> Self {
        self.degraded = policy;
        self
    }

    /// Checks every config and builds the limiter. Must be called inside a tokio runtime (it
    /// spawns the heartbeat task).
    ///
    /// # Errors
    /// [`Error::Limit`] with [`tollgate::Error::InvalidConfig`] for an invalid namespace or
    /// config (zeros, or values too large for exact arithmetic in Redis).
    pub fn build(self) -> Result<ModelRateLimiter, Error> {
        keys::check_namespace(&self.namespace)?;
        let mut configured = BTreeMap::new();
        for (name, config) in &self.models {
            config.validate().map_err(|mut e| {
                e.model = Some(name.clone());
                e
            })?;
            encode::limits(&config.rate_limits(), UNIT_NS)?;
            configured.insert(name.clone(), config.clone());
        }
        if let Some(d) = &self.default_config {
            d.validate()?;
            encode::limits(&d.rate_limits(), UNIT_NS)?;
        }
        let local = match self.degraded {
            Degraded::Local { share } => {
                let models: Vec<(String, RateLimitConfig)> =
                    self.models.iter().map(|(n, c)| (n.clone(), share.config(c))).collect();
                let limiter = match &self.default_config {
                    Some(d) => tollgate::ModelRateLimiter::with_timer(
                        models,
                        share.config(d),
                        TokioTimer::new(),
                    )?,
                    None => {
                        tollgate::ModelRateLimiter::strict_with_timer(models, TokioTimer::new())?
                    }
                };
                Some(Arc::new(limiter))
            }
            _ => None,
        };
        let inner = Arc::new(LimiterInner {
            store: self.store,
            namespace: self.namespace,
            configured,
            default_config: self.default_config,
            models: Mutex::new(BTreeMap::new()),
            lease_ttl: self.lease_ttl,
            ticket_ttl: self.ticket_ttl,
            degraded: self.degraded,
            local,
            timer: TokioTimer::new(),
            state_resets: AtomicU64::new(0),
        });
        let names: Vec<String> = inner.configured.keys().cloned().collect();
        for name in names {
            inner.entry(&name)?;
        }
        tokio::spawn(heartbeat(Arc::downgrade(&inner)));
        Ok(ModelRateLimiter { inner })
    }
}

/// Rate limits for LLM APIs, per model, shared through Redis by every process and host using
/// the same namespace: the same rule and method names as [`tollgate::ModelRateLimiter`].
///
/// [`acquire`](Self::acquire) waits (FIFO across hosts) for a parallel slot and room in every
/// rate limit, then reserves the request's estimated tokens; the permit's
/// [`settle`](ModelPermit::settle) replaces them with the actual count. A parallel slot is a
/// lease renewed by a heartbeat task: a crashed process's slots come back within one
/// [`lease_ttl`](ModelRateLimiterBuilder::lease_ttl).
///
/// Cloning is cheap (clones share everything), and permits own what they need (`'static`), so
/// spawned tasks need no `_owned` variants. Every call is async: even a try is a round trip.
///
/// The provider's 429s hold every process: [`cool_down`](Self::cool_down),
/// [`quota_exhausted`](Self::quota_exhausted), [`observe_429`](Self::observe_429) and the
/// permit's [`rate_limited`](ModelPermit::rate_limited) / [`throttled`](ModelPermit::throttled)
/// write the pause into the model's shared state (feedback only tightens), and
/// [`resume`](Self::resume) ends it. So does what the provider's headers say
/// ([`observe`](Self::observe), [`observe_at`](Self::observe_at)): a limit learned lower and
/// the share the provider counts for other clients on the key hold every process, and
/// [`stats`](Self::stats) reports the learned maxima.
///
/// ```no_run
/// # async fn demo() -> Result<(), tollgate_redis::Error> {
/// use tollgate::RateLimitConfig;
/// use tollgate_redis::{ModelRateLimiter, RedisStore};
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let limiter = ModelRateLimiter::new(
///     store,
///     "myapp",
///     [("gpt-4", RateLimitConfig { rpm: 500, tpm: 40_000, max_parallel_requests: 10, ..Default::default() })],
///     RateLimitConfig::default(),
/// )?;
/// let permit = limiter.acquire("gpt-4", 8_000).await?;
/// // ... call the model ...
/// permit.settle(7_500).await?;
/// let stats = limiter.stats().await?;
/// println!("{}", stats["gpt-4"].tokens); // "7500/40000"
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ModelRateLimiter {
    inner: Arc<LimiterInner>,
}

#[derive(Debug)]
pub(crate) struct LimiterInner {
    pub(crate) store: RedisStore,
    namespace: String,
    configured: BTreeMap<String, RateLimitConfig>,
    default_config: Option<RateLimitConfig>,
    models: Mutex<BTreeMap<String, Arc<ModelEntry>>>,
    pub(crate) lease_ttl: Duration,
    ticket_ttl: Duration,
    degraded: Degraded,
    local: Option<Arc<tollgate::ModelRateLimiter<TokioTimer>>>,
    pub(crate) timer: TokioTimer,
    state_resets: AtomicU64,
}

/// One model's keys, script arguments and the leases this process holds.
#[derive(Debug)]
pub(crate) struct ModelEntry {
    /// The model's name, as the caller gave it (for events; the keys may hash it).
    pub(crate) name: String,
    config: RateLimitConfig,
    limits: Vec<Limit>,
    /// The largest total and the largest input an estimate can ever have and fit (over the
    /// total- and the input-token limits; `None`: no such limit). Output is never reserved.
    capacity: (Option<u64>, Option<u64>),
    /// State, leases, queue, tickets, admissions.
    pub(crate) keys: Vec<String>,
    pub(crate) channel: String,
    /// `PUBLISH` or `SPUBLISH`, as the store says.
    publish: &'static str,
    /// Fingerprint, number of limits, the limits' integers.
    pub(crate) config_args: Vec<Vec<u8>>,
    pub(crate) state_ttl_ms: u64,
    pub(crate) leases: Mutex<HashMap<String, Arc<Lease>>>,
    /// When an admit last wrote the state (refreshing its expiry): finding it gone sooner than
    /// it can expire means it was lost.
    touched: Mutex<Option<tokio::time::Instant>>,
    store: RedisStore,
    lease_ttl_us: u64,
    /// This process's tries and settles waiting for a shared call (`crate::line`).
    line: Line<ModelEntry>,
    /// This process's acquires past their first try (queued, or on their way there): while
    /// there are any, acquires go straight to the queue, so a try never overtakes them.
    waiting: AtomicUsize,
}

/// What the heartbeat learns about one held slot.
#[derive(Debug, Default)]
pub(crate) struct Lease {
    pub(crate) lost: AtomicBool,
}

/// How long an acquire may wait.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Forever,
    Within(Duration),
    Before(Instant),
}

/// The least time a bounded call gets for its round trip.
pub(crate) const MIN_BUDGET: Duration = Duration::from_millis(10);

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl ModelEntry {
    fn new(
        store: &RedisStore,
        ns: &str,
        name: &str,
        config: RateLimitConfig,
        lease_ttl: Duration,
    ) -> Result<Self, Error> {
        let publish = store.inner.publish;
        let limits = config.rate_limits();
        let (words, state_ttl_ms) = encode::limits(&limits, UNIT_NS)?;
        let mut fp_words = words.clone();
        fp_words.push(config.max_parallel_requests.into());
        let fp = encode::fingerprint("model", &fp_words);
        let mut config_args = vec![text(&fp), int(limits.len())];
        config_args.extend(words.iter().map(|&w| int(w)));
        let tag = keys::tag(ns, Kind::Model, name);
        let keys = ["s", "l", "q", "x", "a"].iter().map(|k| format!("{tag}:{k}")).collect();
        let cap = |c| limits.iter().filter(|l| l.counts == c).map(|l| l.max).min();
        let capacity = (cap(Counts::Tokens), cap(Counts::InputTokens));
        Ok(Self {
            name: name.to_owned(),
            config,
            limits,
            capacity,
            keys,
            channel: format!("{tag}:wake"),
            publish,
            config_args,
            state_ttl_ms,
            leases: Mutex::new(HashMap::new()),
            touched: Mutex::new(None),
            store: store.clone(),
            lease_ttl_us: micros(lease_ttl),
            line: Line::default(),
            waiting: AtomicUsize::new(0),
        })
    }

    fn args(&self, op: impl IntoIterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
        let mut a = self.config_args.clone();
        a.extend(op);
        a
    }
}

impl LimiterInner {
    fn entry(&self, model: &str) -> Result<Arc<ModelEntry>, Error> {
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = models.get(model) {
            return Ok(e.clone());
        }
        let config = match self.configured.get(model).or(self.default_config.as_ref()) {
            Some(c) => c.clone(),
            None => return Err(tollgate::Error::UnknownModel.into()),
        };
        let entry =
            Arc::new(ModelEntry::new(&self.store, &self.namespace, model, config, self.lease_ttl)?);
        self.store.inner.subscribe(entry.channel.clone());
        models.insert(model.to_owned(), entry.clone());
        Ok(entry)
    }

    /// The job that releases `id` (settled or not) in `entry`: `mode` 0 settle to `actual`
    /// (its total, and the input of it), 1 release keeping the estimate, 2 undo (its tokens and
    /// its request given back).
    pub(crate) fn settle_job(entry: &ModelEntry, id: &str, actual: Estimate, mode: u8) -> Job {
        Job {
            script: &scripts().model_batch,
            keys: entry.keys.clone(),
            args: entry.batch_args(
                [(id, actual.total(), actual.input, mode)].into_iter(),
                core::iter::empty(),
            ),
        }
    }

    fn dequeue_job(entry: &ModelEntry, id: &str) -> Job {
        Job {
            script: &scripts().model_dequeue,
            keys: entry.keys.clone(),
            args: entry.args([
                text(id),
                int(entry.state_ttl_ms),
                text(entry.publish),
                text(&entry.channel),
                int(entry.config.max_parallel_requests),
                int(entry.lease_ttl_us),
            ]),
        }
    }

    fn ready_instant(&self, ready: i64, server_now: i64) -> Instant {
        if ready < 0 {
            return Instant::MAX;
        }
        let wait = Duration::from_micros(u64::try_from(ready - server_now).unwrap_or(0));
        self.timer.now().saturating_add(wait)
    }

    /// An exhausted quota's reset as the scripts give it (-1: unknown), on this clock.
    pub(crate) fn reset_instant(&self, reset: i64, server_now: i64) -> Option<Instant> {
        (reset >= 0).then(|| self.ready_instant(reset, server_now))
    }

    async fn admit(
        self: &Arc<Self>,
        model: &str,
        estimate: Estimate,
        bound: Bound,
        try_only: bool,
        id: Option<String>,
    ) -> Result<ModelPermit, Error> {
        let entry = self.entry(model)?;
        let (total, input) = (estimate.total(), estimate.input);
        // Values beyond exact integer arithmetic count as its largest (they never fit).
        let (total, input) = (total.min(encode::EXACT / 4), input.min(encode::EXACT / 4));
        let too_big = match entry.capacity {
            (Some(cap), _) if total > cap => Some((total, cap)),
            (_, Some(cap)) if input > cap => Some((input, cap)),
            _ => None,
        };
        if let Some((requested, capacity)) = too_big {
            return Err(tollgate::Error::InsufficientCapacity { requested, capacity }.into());
        }
        let start = tokio::time::Instant::now();
        let deadline = match bound {
            Bound::Forever => None,
            Bound::Within(d) => Some(start.checked_add(d).unwrap_or_else(far_future)),
            Bound::Before(t) => {
                if t < self.timer.now() {
                    let e = tollgate::Error::MaxWaitExceeded { ready_at: self.timer.now() };
                    return Err(e.into());
                }
                Some(self.timer.to_tokio(t))
            }
        };
        let store = &self.store.inner;
        // Only under a new id may the first try go through the model's line (below).
        let fresh_id = id.is_none();
        let id = id.unwrap_or_else(|| store.new_id());
        let wake = store.register(&id);
        // Armed from the start: a future dropped while a call is in flight may have been
        // queued, or even admitted, by it; the dequeue script undoes either.
        let mut queued = Queued { limiter: self.clone(), entry: entry.clone(), id, armed: true };
        let refresh = self.ticket_ttl / 3;
        let mut last_ready = None;
        let mut retried = false;
        let mut retry_left = Duration::ZERO;
        let response_timeout = store.options.response_timeout;
        let left_of_one_timeout =
            |since: tokio::time::Instant| response_timeout.saturating_sub(since.elapsed());
        // Whether a call of this acquire may have reached the server (one the breaker turned
        // away did not): only then is there a queue place or admission to give back.
        let mut sent = false;
        // A try, or an acquire while nobody of this process is queued, first tries in the
        // model's line, sharing a call with the others (`crate::line`); refused, an acquire
        // goes on to the queue like everyone who must wait. Only under a new id: the line's
        // script looks for no earlier admission under it (`model_admit` does).
        let mut try_first = fresh_id && (try_only || entry.waiting.load(Ordering::Acquire) == 0);
        let mut waiting = None;
        loop {
            let now = tokio::time::Instant::now();
            let remaining = deadline.map(|d| d.saturating_duration_since(now));
            // A try has no deadline but the response timeout; a bounded wait gets at least a
            // round trip's worth, even when its time is all but up.
            let mut budget = if try_only { None } else { remaining.map(|r| r.max(MIN_BUDGET)) };
            if retried && budget.is_none() {
                // The retry of a caller with no bound of its own gets what is left of one
                // response timeout since it asked: that is all it waits for the store.
                budget = Some(retry_left.max(MIN_BUDGET));
            }
            let tried_first = try_first;
            let call = if try_first {
                try_first = false;
                let ask = Ask::Try { id: queued.id.clone(), tokens: total, input };
                let (decision, via) =
                    crate::line::decide(&entry, ask, budget, &mut queued.armed).await;
                if via == Via::Abandoned {
                    // The shared call may still admit it: the line's runner gives that back,
                    // and nothing may go under this id meanwhile (the two could cross). As
                    // for a call of its own that outlives the bound: a store error (the store
                    // did not answer in time); the degraded policy answers only if the store
                    // is known unreachable (the runner's call waits the whole response
                    // timeout, so it tells).
                    queued.armed = false;
                    let e = decision.err().unwrap_or(StoreError::Unavailable);
                    // Its own bound ran out in the line, even one at or above the response
                    // timeout (it waited behind another call first): `degrade`'s test of the
                    // error's `after` cannot tell, the breaker can.
                    if !self.store.inner.known_unreachable(&entry.keys) {
                        drop(queued);
                        tracing::warn!(target: "tollgate_redis", model, error = %e, policy = ?self.degraded, "the caller's own bound ran out in the line (Redis slow, not known unreachable): refused, whatever the policy");
                        return Err(Error::Store(e));
                    }
                    return self
                        .degrade(model, &entry, estimate, e, deadline, queued, try_only)
                        .await;
                }
                // From here this caller owns what the call did.
                queued.armed = true;
                decision.map(|a| a.admit_reply())
            } else {
                if !try_only && waiting.is_none() {
                    waiting = Some(Waiting::enter(&entry.waiting));
                }
                let max_wait =
                    remaining.map_or(-1, |r| i64::try_from(r.as_micros()).unwrap_or(i64::MAX));
                let args = entry.args([
                    int(total),
                    int(input),
                    text(&queued.id),
                    int(entry.config.max_parallel_requests),
                    int(micros(self.lease_ttl)),
                    int(micros(self.ticket_ttl)),
                    int(entry.state_ttl_ms),
                    int(max_wait),
                    int(u64::from(try_only)),
                    text(entry.publish),
                    text(&entry.channel),
                ]);
                let script = &scripts().model_admit;
                // The retry under the same id goes whatever the breaker says: the breaker may
                // have opened on this very request's timeout, whose reply alone was lost.
                if retried {
                    store.eval(script, &entry.keys, &args, budget).await
                } else {
                    store.eval_admission(script, &entry.keys, &args, budget).await
                }
            };
            sent |= !matches!(call, Err(StoreError::Unavailable));
            let reply = match call {
                Ok(r) => r,
                // One retry under the same id after a connection error (admission is
                // idempotent: a reply lost with the connection is not counted twice). Not
                // after a timeout: the server was silent for the whole call, and a second
                // call into the silence would wait as long again (603 ms against the 300 ms
                // `Degraded` promises, before this test); what the first call may have
                // admitted is given back (`queued` stays armed).
                Err(e)
                    if !matches!(e, StoreError::Unavailable | StoreError::Timeout { .. })
                        && !retried
                        && deadline.is_none_or(|d| tokio::time::Instant::now() < d)
                        && (deadline.is_some() || left_of_one_timeout(start) >= MIN_BUDGET) =>
                {
                    retried = true;
                    retry_left = left_of_one_timeout(start);
                    continue;
                }
                Err(e) => {
                    queued.armed = sent;
                    return self
                        .degrade(model, &entry, estimate, e, deadline, queued, try_only)
                        .await;
                }
            };
            self.note_state(model, &entry, &reply);
            match reply.first().copied() {
                // Refused on its first try: now it waits its turn in the queue.
                Some(0) if tried_first && !try_only => {}
                Some(1) if reply.len() >= 4 => {
                    queued.armed = false;
                    let lease = Arc::new(Lease::default());
                    entry
                        .leases
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(queued.id.clone(), lease.clone());
                    let hold = RedisHold {
                        limiter: self.clone(),
                        entry: entry.clone(),
                        id: core::mem::take(&mut queued.id),
                        lease,
                        admitted_at_us: reply[2],
                        done: false,
                        settling: None,
                    };
                    tracing::debug!(target: "tollgate_redis", model, estimated = total, "admitted");
                    return Ok(ModelPermit::new(estimate, PermitState::Redis(hold), None));
                }
                Some(0) if reply.len() >= 5 => {
                    queued.armed = false;
                    let ready_at = self.ready_instant(reply[2], reply[1]);
                    let e = if try_only {
                        tollgate::Error::RateLimited(Refusal::at(ready_at))
                    } else {
                        tollgate::Error::MaxWaitExceeded { ready_at }
                    };
                    return Err(e.into());
                }
                Some(2 | 3) => {
                    queued.armed = true;
                    let until = now + refresh;
                    if wait_for(&wake, until, deadline).await {
                        return Err(self.timed_out(last_ready, deadline));
                    }
                }
                Some(4) if reply.len() >= 4 => {
                    queued.armed = true;
                    let wait =
                        Duration::from_micros(u64::try_from(reply[2] - reply[1]).unwrap_or(0));
                    last_ready = Some(self.timer.now().saturating_add(wait));
                    // The script kept the ticket until then and one TTL more: one sleep,
                    // counted from the reply (the server's instant lies before it, so this
                    // never wakes early).
                    let until = tokio::time::Instant::now() + wait;
                    if wait_for(&wake, until, deadline).await {
                        return Err(self.timed_out(last_ready, deadline));
                    }
                }
                // The provider's quota is exhausted (this process or another was told so):
                // every admission fails, waiters included (the script took it off the queue).
                Some(5) if reply.len() >= 3 => {
                    queued.armed = false;
                    let reset_at = self.reset_instant(reply[2], reply[1]);
                    tracing::debug!(target: "tollgate_redis", model, "refused: quota exhausted");
                    return Err(tollgate::Error::QuotaExhausted { reset_at }.into());
                }
                Some(-2) => {
                    queued.armed = false;
                    return Err(Error::ConfigMismatch { key: entry.keys[0].clone() });
                }
                _ => {
                    return Err(StoreError::Protocol(format!("model_admit: {reply:?}")).into());
                }
            }
        }
    }

    /// Tells a lost state (server restart without persistence, `FLUSHALL`, eviction) from one
    /// that expired after idling, and reports it: counts restart from zero, so up to one
    /// window of each limit may be admitted again.
    fn note_state(&self, model: &str, entry: &ModelEntry, reply: &[i64]) {
        let mut touched = entry.touched.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        let fresh = reply.get(5) == Some(&1);
        // The state lives `state_ttl_ms` after each admit's write; half a second of margin
        // for the round trip.
        let alive = Duration::from_millis(entry.state_ttl_ms.saturating_sub(500));
        if fresh && touched.is_some_and(|t| now.duration_since(t) < alive) {
            self.state_resets.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "tollgate_redis", model, key = %entry.keys[0], "the model's state was lost on the server (restart without persistence, FLUSHALL or eviction): counts start again from zero, so up to one window of each limit may be admitted twice");
            *touched = None;
        }
        if matches!(reply.first(), Some(0 | 1 | 4)) {
            *touched = Some(now);
        }
    }

    fn timed_out(
        &self,
        last_ready: Option<Instant>,
        deadline: Option<tokio::time::Instant>,
    ) -> Error {
        let by = deadline.map_or(Instant::MAX, |d| self.timer.from_tokio(d));
        let ready_at = last_ready.unwrap_or(by).max(by.saturating_add(Duration::from_nanos(1)));
        tollgate::Error::MaxWaitExceeded { ready_at }.into()
    }

    /// The answer to an acquire whose call failed with `error`: the degraded policy's if the
    /// store is unreachable; the error itself, under every policy, if only the caller's own
    /// bound cut the call short (`StoreInner::cut_short`).
    #[allow(clippy::too_many_arguments)] // one call site per way the call can fail
    async fn degrade(
        self: &Arc<Self>,
        model: &str,
        entry: &Arc<ModelEntry>,
        estimate: Estimate,
        error: StoreError,
        deadline: Option<tokio::time::Instant>,
        queued: Queued,
        try_only: bool,
    ) -> Result<ModelPermit, Error> {
        drop(queued);
        if self.store.inner.cut_short(&entry.keys, &error) {
            tracing::warn!(target: "tollgate_redis", model, %error, policy = ?self.degraded, "the caller's own bound cut the call short (Redis slow, not known unreachable): refused, whatever the policy");
            return Err(Error::Store(error));
        }
        match self.degraded {
            Degraded::FailClosed => {
                tracing::warn!(target: "tollgate_redis", model, %error, "store unreachable: refused (fail closed)");
                Err(Error::Store(error))
            }
            Degraded::FailOpen => {
                tracing::warn!(target: "tollgate_redis", model, %error, "store unreachable: admitted without a limit (fail open)");
                let shared = Some((self.clone(), entry.clone()));
                Ok(ModelPermit::new(estimate, PermitState::Open, shared))
            }
            Degraded::Local { share } => {
                tracing::warn!(target: "tollgate_redis", model, %error, ?share, "store unreachable: admitting on the local share");
                let local = self.local.clone().ok_or(Error::Store(error))?;
                let permit = match deadline {
                    _ if try_only => local.try_acquire_with_owned(model, estimate),
                    None => local.acquire_with_owned(model, estimate).await,
                    Some(d) => {
                        let left = d.saturating_duration_since(tokio::time::Instant::now());
                        local.acquire_within_with_owned(model, estimate, left).await
                    }
                }?;
                let shared = Some((self.clone(), entry.clone()));
                Ok(ModelPermit::new(estimate, PermitState::Local(permit), shared))
            }
        }
    }
}

/// Waits for a wake-up, `until`, or the deadline; true if the deadline passed.
async fn wait_for(
    wake: &crate::store::WakeGuard,
    until: tokio::time::Instant,
    deadline: Option<tokio::time::Instant>,
) -> bool {
    let until = deadline.map_or(until, |d| until.min(d));
    tokio::select! {
        () = wake.notify.notified() => {}
        () = tokio::time::sleep_until(until) => {}
    }
    deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// A place in the queue, given back (by the janitor) if the acquire ends without admission.
struct Queued {
    limiter: Arc<LimiterInner>,
    entry: Arc<ModelEntry>,
    id: String,
    armed: bool,
}

impl Drop for Queued {
    fn drop(&mut self) {
        if self.armed {
            self.limiter.store.inner.later(LimiterInner::dequeue_job(&self.entry, &self.id));
        }
    }
}

/// Renews every held lease each third of the lease TTL; a lease found lost is marked so its
/// permit can say so.
async fn heartbeat(limiter: Weak<LimiterInner>) {
    let period = match limiter.upgrade() {
        Some(l) => l.lease_ttl / 3,
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(l) = limiter.upgrade() else { return };
        let entries: Vec<Arc<ModelEntry>> =
            l.models.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for entry in entries {
            let held: Vec<(String, Arc<Lease>)> = entry
                .leases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if held.is_empty() {
                continue;
            }
            let mut op = vec![int(micros(l.lease_ttl)), text(entry.publish), text(&entry.channel)];
            op.extend(held.iter().map(|(id, _)| text(id)));
            let args = entry.args(op);
            match l.store.inner.eval(&scripts().model_heartbeat, &entry.keys, &args, None).await {
                Ok(reply) => {
                    for ((id, lease), alive) in held.iter().zip(reply) {
                        if alive == 0 && !lease.lost.swap(true, Ordering::Relaxed) {
                            tracing::warn!(target: "tollgate_redis", lease = %id, "a parallel-slot lease was lost (expired before its heartbeat): the slot may have gone to another holder");
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(target: "tollgate_redis", %error, "heartbeat failed; leases expire unless a later one gets through");
                }
            }
        }
    }
}

impl ModelRateLimiter {
    /// A limiter with `models` configured by name and `default_config` for any other model,
    /// under `namespace` (processes share limits when they use the same namespace and model
    /// name), with a 30 s lease TTL and [`Degraded::FailClosed`]. See
    /// [`builder`](Self::builder) for the other options.
    ///
    /// # Errors
    /// As [`ModelRateLimiterBuilder::build`].
    pub fn new<I, S>(
        store: RedisStore,
        namespace: &str,
        models: I,
        default_config: RateLimitConfig,
    ) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (S, RateLimitConfig)>,
        S: Into<String>,
    {
        let mut b = Self::builder(store, namespace).default_config(default_config);
        for (name, config) in models {
            b = b.model(name, config);
        }
        b.build()
    }

    /// A builder, with no models, no default config (strict), a 30 s lease TTL, a 3 s ticket
    /// TTL and [`Degraded::FailClosed`].
    pub fn builder(store: RedisStore, namespace: &str) -> ModelRateLimiterBuilder {
        ModelRateLimiterBuilder {
            store,
            namespace: namespace.to_owned(),
            models: Vec::new(),
            default_config: None,
            lease_ttl: Duration::from_secs(30),
            ticket_ttl: Duration::from_secs(3),
            degraded: Degraded::FailClosed,
        }
    }

    /// How many times this limiter found a model's state lost on the server (a restart
    /// without persistence, `FLUSHALL`, eviction) while it was in use; each is also a
    /// `tracing` warning. Counts restart from zero then, so up to one window of each limit may
    /// be admitted again.
    pub fn state_resets(&self) -> u64 {
        self.inner.state_resets.load(Ordering::Relaxed)
    }

    /// The clock `acquire_before` deadlines and refusals' instants are on (tokio's).
    pub fn timer(&self) -> TokioTimer {
        self.inner.timer
    }

    /// The config `model` gets.
    ///
    /// # Errors
    /// [`tollgate::Error::UnknownModel`] on a strict limiter for a model it does not know.
    pub fn config(&self, model: &str) -> Result<RateLimitConfig, Error> {
        match self.inner.configured.get(model).or(self.inner.default_config.as_ref()) {
            Some(c) => Ok(c.clone()),
            None => Err(tollgate::Error::UnknownModel.into()),
        }
    }

    /// Admits one request of `estimated_tokens` on `model` if it can be admitted now (a slot
    /// free, room in every limit, nobody queued ahead, in any process). One round trip; never
    /// waits.
    ///
    /// # Errors
    /// [`tollgate::Error::RateLimited`] (with when the rate limits would have room; a lower
    /// bound when a slot or a queue is the obstacle), `InsufficientCapacity`, `UnknownModel`,
    /// [`Error::Store`], [`Error::ConfigMismatch`]. Nothing is counted when it fails.
    pub async fn try_acquire(
        &self,
        model: &str,
        estimated_tokens: u64,
    ) -> Result<ModelPermit, Error> {
        self.inner
            .admit(model, estimated_tokens.into(), Bound::Within(Duration::ZERO), true, None)
            .await
    }

    /// Waits until `model` can take one more request of `estimated_tokens` (FIFO across every
    /// process), then admits it, reserving the estimate.
    ///
    /// # Errors
    /// `InsufficientCapacity` at once if the estimate exceeds a token limit; `UnknownModel`;
    /// [`Error::Store`] when Redis cannot be reached (fail closed; the other policies admit
    /// instead, see [`Degraded`]); [`Error::ConfigMismatch`].
    ///
    /// # Cancel safety
    /// Dropping the future gives its queue place back (through the store's janitor task);
    /// nothing is counted unless it returned a permit.
    pub async fn acquire(&self, model: &str, estimated_tokens: u64) -> Result<ModelPermit, Error> {
        self.inner.admit(model, estimated_tokens.into(), Bound::Forever, false, None).await
    }

    /// As [`acquire`](Self::acquire), giving up with `MaxWaitExceeded` if admission would take
    /// longer than `max_wait` (checked up front against the rate limits, and while queued).
    ///
    /// `max_wait` bounds the calls to Redis too (each gets at least 10 ms). A call it cuts
    /// short, sooner than the response timeout, says nothing about the server: the acquire
    /// fails with [`Error::Store`]`(`[`StoreError::Timeout`]`)` under every [`Degraded`]
    /// policy, nothing admitted; the policy answers only once the store is known unreachable
    /// (see [`Degraded`](crate::Degraded#when-the-policy-answers)).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), and `MaxWaitExceeded`; [`StoreError::Timeout`] when
    /// Redis did not answer within the bound.
    pub async fn acquire_within(
        &self,
        model: &str,
        estimated_tokens: u64,
        max_wait: Duration,
    ) -> Result<ModelPermit, Error> {
        self.inner.admit(model, estimated_tokens.into(), Bound::Within(max_wait), false, None).await
    }

    /// As [`acquire`](Self::acquire), giving up unless admitted by `deadline` (an instant of
    /// [`timer`](Self::timer)). The deadline bounds the calls to Redis as `max_wait` does in
    /// [`acquire_within`](Self::acquire_within), with the same answer to a call it cuts short.
    ///
    /// # Errors
    /// As [`acquire_within`](Self::acquire_within).
    pub async fn acquire_before(
        &self,
        model: &str,
        estimated_tokens: u64,
        deadline: Instant,
    ) -> Result<ModelPermit, Error> {
        self.inner.admit(model, estimated_tokens.into(), Bound::Before(deadline), false, None).await
    }

    /// As [`try_acquire`](Self::try_acquire) with the estimate's input and output apart:
    /// total-token limits reserve its total, input-token limits its input, and output-token
    /// limits only need room for one more (output is counted when the permit settles, with
    /// [`settle_io`](ModelPermit::settle_io)).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), tollgate_redis::Error> {
    /// use core::time::Duration;
    /// use tollgate::RateLimitConfig;
    /// use tollgate::model::{Counts, Estimate, Limit};
    /// use tollgate_redis::{ModelRateLimiter, RedisStore};
    ///
    /// let minute = Duration::from_secs(60);
    /// let config = RateLimitConfig {
    ///     limits: vec![
    ///         Limit::window("itpm", Counts::InputTokens, 40_000, minute),
    ///         Limit::window("otpm", Counts::OutputTokens, 8_000, minute),
    ///     ],
    ///     ..Default::default()
    /// };
    /// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
    /// let limiter = ModelRateLimiter::new(store, "myapp", [("claude", config.clone())], config)?;
    /// let permit = limiter.try_acquire_with("claude", Estimate { input: 3_000, output: 1_024 }).await?;
    /// // ... call the model ...
    /// permit.settle_io(2_950, 800).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire); `InsufficientCapacity` when the total or the
    /// input exceeds a limit that counts it.
    pub async fn try_acquire_with(
        &self,
        model: &str,
        estimate: Estimate,
    ) -> Result<ModelPermit, Error> {
        self.inner.admit(model, estimate, Bound::Within(Duration::ZERO), true, None).await
    }

    /// As [`acquire`](Self::acquire) with the estimate's input and output apart (see
    /// [`try_acquire_with`](Self::try_acquire_with)).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_with(
        &self,
        model: &str,
        estimate: Estimate,
    ) -> Result<ModelPermit, Error> {
        self.inner.admit(model, estimate, Bound::Forever, false, None).await
    }

    /// As [`acquire_within`](Self::acquire_within) with the estimate's input and output apart
    /// (see [`try_acquire_with`](Self::try_acquire_with)).
    ///
    /// # Errors
    /// As [`acquire_within`](Self::acquire_within).
    pub async fn acquire_within_with(
        &self,
        model: &str,
        estimate: Estimate,
        max_wait: Duration,
    ) -> Result<ModelPermit, Error> {
        self.inner.admit(model, estimate, Bound::Within(max_wait), false, None).await
    }

    /// A try under a given request id (for the crate's tests of idempotent admission: a
    /// retry under the same id returns the same admission). Not a stable API.
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    #[doc(hidden)]
    pub async fn try_acquire_with_id(
        &self,
        model: &str,
        estimated_tokens: u64,
        id: &str,
    ) -> Result<ModelPermit, Error> {
        let bound = Bound::Within(Duration::ZERO);
        self.inner.admit(model, estimated_tokens.into(), bound, true, Some(id.to_owned())).await
    }

    /// Usage of every configured model and every model used so far, as the shared state has
    /// it (all processes' requests): one round trip per model.
    ///
    /// # Errors
    /// [`Error::Store`] if Redis cannot be reached.
    pub async fn stats(&self) -> Result<BTreeMap<String, ModelStats>, Error> {
        let entries: Vec<(String, Arc<ModelEntry>)> = self
            .inner
            .models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = BTreeMap::new();
        for (name, entry) in entries {
            let r = self
                .inner
                .store
                .inner
                .eval(
                    &scripts().model_stats,
                    &entry.keys,
                    &entry.args([int(entry.state_ttl_ms)]),
                    None,
                )
                .await?;
            if r.first() == Some(&-2) {
                return Err(Error::ConfigMismatch { key: entry.keys[0].clone() });
            }
            let n = entry.limits.len();
            if r.len() != 5 + 2 * n {
                return Err(StoreError::Protocol(format!("model_stats: {r:?}")).into());
            }
            let used = |i: usize| u64::try_from(r[5 + i]).unwrap_or(0);
            // The maximum in force: the configured one, or what header feedback learned.
            let in_force = |i: usize| u64::try_from(r[5 + n + i]).unwrap_or(0);
            let limits: Vec<LimitUsage> = entry
                .limits
                .iter()
                .enumerate()
                .map(|(i, l)| LimitUsage {
                    name: l.name.clone(),
                    counts: l.counts,
                    usage: Usage { used: used(i), limit: in_force(i) },
                    configured: l.max,
                    learned: (in_force(i) != l.max).then(|| in_force(i)),
                })
                .collect();
            let stats = ModelStats {
                requests: limits[0].usage,
                tokens: limits[1].usage,
                active: Usage {
                    used: u64::try_from(r[1]).unwrap_or(0),
                    limit: entry.config.max_parallel_requests.into(),
                },
                limits,
                cooldown_until: (r[3] > 0).then(|| self.inner.ready_instant(r[3], r[0])),
                quota_exhausted: (r[4] != 0).then(|| self.inner.reset_instant(r[4], r[0])),
            };
            out.insert(name, stats);
        }
        Ok(out)
    }
}
