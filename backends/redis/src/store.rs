//! [`RedisStore`]: the connection the limiters share — one auto-reconnecting multiplexed
//! connection for the scripts, one subscriber connection routing wake-up messages to local
//! waiters, and a janitor task doing the I/O that `Drop` cannot (releases, cancellations).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::{Notify, mpsc};

use crate::error::{Error, StoreError};
use crate::scripts::{Library, Op, scripts};

/// How the store talks to Redis. Every field has a default; set the ones you need.
///
/// ```
/// use core::time::Duration;
/// use tollgate_redis::StoreOptions;
///
/// let options = StoreOptions { response_timeout: Duration::from_millis(250), ..Default::default() };
/// assert_eq!(options.connect_timeout, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long [`RedisStore::connect`] may take, and each reconnection attempt.
    pub connect_timeout: Duration,
    /// How long one script call may take before it is a [`StoreError::Timeout`] (a caller's
    /// own deadline, when earlier, bounds it further: then the timeout is the caller's, not a
    /// fault, and the degraded policy does not answer for it, see
    /// [`Degraded`](crate::Degraded#when-the-policy-answers)). Nothing waits on Redis longer.
    pub response_timeout: Duration,
    /// After a connection failure or a whole response timeout (of a call, or of the probe a
    /// call cut short by its caller's bound starts), how long acquires skip Redis and answer
    /// at once by the degraded policy ([`StoreError::Unavailable`] when failing closed)
    /// instead of each waiting out a timeout; the first call after it tries again, and until
    /// the server answers, a call cut short still counts as the server unreachable.
    /// Heartbeats and the janitor's releases always try. `Duration::ZERO` turns this off
    /// (and with it the probes); the callers with no bound of their own waiting in this
    /// process's line behind a call that fails so are still turned away, once, at its end
    /// (see [`Degraded`](crate::Degraded#callers-with-no-bound-of-their-own)).
    ///
    /// On one server the breaker is the store's; on a cluster each model's and bucket's (its
    /// hash tag), so a dead node stops only what lives on it, each of its models after one
    /// timeout of its own.
    pub breaker_cooldown: Duration,
}

impl Default for StoreOptions {
    /// 2 s to connect, 1 s per call, a 500 ms breaker cooldown.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
            breaker_cooldown: Duration::from_millis(500),
        }
    }
}

/// A connection to the Redis (or Valkey) server holding the limiters' state. Cheap to clone:
/// clones share the connection and its background tasks.
///
/// ```no_run
/// # async fn demo() -> Result<(), tollgate_redis::Error> {
/// let store = tollgate_redis::RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    conn: Conn,
    /// `PUBLISH`, or `SPUBLISH` on a cluster (the channel carries the model's hash tag).
    pub(crate) publish: &'static str,
    pub(crate) options: StoreOptions,
    /// Ticket id → its waiter, for wake-up messages.
    wakes: Mutex<HashMap<String, Arc<Notify>>>,
    subscribe: mpsc::UnboundedSender<String>,
    janitor: mpsc::UnboundedSender<Job>,
    /// What the store knows of the server's health, by scope (`breaker_scope`).
    breaker: Arc<Breaker>,
    /// Request ids: unique to this process (`pid-start-counter`).
    id_prefix: String,
    ids: AtomicU64,
    /// Whether operations run as functions (`FCALL`) or, on a server without them, scripts.
    functions: Arc<AtomicBool>,
}

/// The script connection: one node (or a primary behind Sentinel-free failover) through the
/// reconnecting manager, or a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    /// Whether calls are routed over a cluster's nodes.
    fn is_cluster(&self) -> bool {
        match self {
            Conn::Single(_) => false,
            #[cfg(feature = "cluster")]
            Conn::Cluster(_) => true,
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }

    /// `FUNCTION LOAD REPLACE` (on a cluster, on every primary).
    async fn load_library(&self, library: &Library) -> redis::RedisResult<redis::Value> {
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(library.text.as_str());
        self.query(&cmd).await
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => inv.invoke_async(&mut c.clone()).await,
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
        }
    }

    async fn load(&self, script: &redis::Script) -> redis::RedisResult<String> {
        match self {
            Conn::Single(c) => script.load_async(&mut c.clone()).await,
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => script.load_async(&mut c.clone()).await,
        }
    }

    async fn ping(&self) -> redis::RedisResult<String> {
        self.query(&redis::cmd("PING")).await
    }
}

/// The server answered that it has no such function: it lost the library (a restart without
/// persistence, a failover to a node that never had it, `FUNCTION FLUSH`).
fn function_missing(e: &redis::RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// The server does not know `FCALL` or `FUNCTION` (older than 7.0), or does not let us use it.
fn functions_unsupported(e: &redis::RedisError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("unknown command") || text.contains("noperm")
}

/// Runs `op` on `keys` and `args` (the test-clock slot appended): `FCALL` while the server
/// has functions, loading the library again once if it lost it; `EVALSHA` (loading the
/// script on `NOSCRIPT`) on a server without functions.
async fn call<T: redis::FromRedisValue>(
    conn: &Conn,
    functions: &AtomicBool,
    op: &Op,
    keys: &[String],
    args: &[Vec<u8>],
) -> redis::RedisResult<T> {
    if functions.load(Ordering::Relaxed) {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(op.function.as_str()).arg(keys.len());
        for k in keys {
            cmd.arg(k.as_str());
        }
        for a in args {
            cmd.arg(a.as_slice());
        }
        cmd.arg(0);
        match conn.query::<T>(&cmd).await {
            Err(e) if function_missing(&e) => match conn.load_library(&scripts().library).await {
                Ok(_) => {
                    let library = &scripts().library.name;
                    tracing::info!(target: "tollgate_redis", %library, "the server had lost tollgate's functions: loaded again");
                    return conn.query(&cmd).await;
                }
                Err(e) if functions_unsupported(&e) => functions.store(false, Ordering::Relaxed),
                Err(e) => return Err(e),
            },
            Err(e) if functions_unsupported(&e) => functions.store(false, Ordering::Relaxed),
            other => return other,
        }
    }
    let mut inv = op.script.prepare_invoke();
    for k in keys {
        inv.key(k.as_str());
    }
    for a in args {
        inv.arg(a.as_slice());
    }
    inv.arg(0);
    conn.invoke(&inv).await
}

/// One call the janitor makes (a release, a cancellation), retried a few times; if it never
/// gets through, the TTLs clean up.
pub(crate) struct Job {
    pub(crate) script: &'static Op,
    pub(crate) keys: Vec<String>,
    pub(crate) args: Vec<Vec<u8>>,
}

/// The breaker: by scope (`breaker_scope`: one for a single server, one per hash tag on a
/// cluster), whether the server failed since it last answered, and until when acquires skip
/// it. No entry: closed. An entry: tripped, and open (calls skip the server) until its
/// instant, then half-open: calls try again, and a call cut short by its caller's bound still
/// counts as the server unreachable (nothing has answered since it failed). An answer removes
/// the entry.
#[derive(Debug)]
struct Breaker {
    cooldown: Duration,
    down_until: Mutex<HashMap<String, tokio::time::Instant>>,
    /// Scopes with a probe out (`StoreInner::probe`).
    probing: Mutex<HashSet<String>>,
}

impl Breaker {
    fn new(cooldown: Duration) -> Self {
        Self {
            cooldown,
            down_until: Mutex::new(HashMap::new()),
            probing: Mutex::new(HashSet::new()),
        }
    }

    fn down(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::time::Instant>> {
        self.down_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether calls on `scope` skip the server now.
    fn open(&self, scope: &str) -> bool {
        let down = self.down();
        down.get(scope).is_some_and(|until| tokio::time::Instant::now() < *until)
    }

    /// Whether `scope` failed and has not answered since (open or half-open).
    fn tripped(&self, scope: &str) -> bool {
        let down = self.down();
        !down.is_empty() && down.contains_key(scope)
    }

    /// A connection failure or a whole response timeout: open for the cooldown (`ZERO`: the
    /// breaker is off).
    fn failed(&self, scope: &str) {
        if !self.cooldown.is_zero() {
            let until = tokio::time::Instant::now() + self.cooldown;
            self.down().insert(scope.to_owned(), until);
        }
    }

    /// The server answered: closed.
    fn answered(&self, scope: &str) {
        let mut down = self.down();
        if !down.is_empty() {
            down.remove(scope);
        }
    }
}

/// A scope's probe out; its end (or its task dropped with the runtime) lets the next cut
/// call start another.
struct Probing {
    breaker: Arc<Breaker>,
    scope: String,
}

impl Probing {
    /// The flag of `scope`, unless a probe of it is out already.
    fn start(breaker: &Arc<Breaker>, scope: &str) -> Option<Self> {
        let mut probing = breaker.probing.lock().unwrap_or_else(|e| e.into_inner());
        if probing.contains(scope) {
            return None;
        }
        probing.insert(scope.to_owned());
        Some(Self { breaker: breaker.clone(), scope: scope.to_owned() })
    }
}

impl Drop for Probing {
    fn drop(&mut self) {
        self.breaker.probing.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.scope);
    }
}

impl RedisStore {
    /// Connects with the default [`StoreOptions`].
    ///
    /// # Errors
    /// [`Error::Store`]: [`StoreError::InvalidUrl`] for a URL that does not parse,
    /// [`StoreError::Timeout`] or [`StoreError::Redis`] when the server cannot be reached
    /// within [`StoreOptions::connect_timeout`].
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// Connects with `options`. Must be called inside a tokio runtime (it spawns the
    /// subscriber and janitor tasks there).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let bound = options.connect_timeout;
        let conn = tokio::time::timeout(bound, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| StoreError::Timeout { after: bound })?
            .map_err(|e| StoreError::within(e, bound))?;
        let (subscribe, sub_rx) = mpsc::unbounded_channel();
        let inner = Self::start(Conn::Single(conn), options, "PUBLISH", subscribe).await?;
        tokio::spawn(subscriber(client, Arc::downgrade(&inner), sub_rx));
        Ok(Self { inner })
    }

    /// Connects to a Redis Cluster through any of its `nodes` (URLs). Every script touches
    /// one slot (a model's keys share a hash tag); wake-ups go by sharded pub/sub
    /// (`SPUBLISH`/`SSUBSCRIBE`, Redis 7.0+, over RESP3).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub async fn connect_cluster(nodes: &[&str], options: StoreOptions) -> Result<Self, Error> {
        let build = |push: Option<mpsc::UnboundedSender<redis::PushInfo>>| {
            let mut b = redis::cluster::ClusterClientBuilder::new(nodes.iter().copied())
                .connection_timeout(options.connect_timeout)
                .response_timeout(options.response_timeout)
                .retries(2);
            if let Some(tx) = push {
                b = b.use_protocol(redis::ProtocolVersion::RESP3).push_sender(tx);
            }
            b.build().map_err(|e| StoreError::InvalidUrl(e.to_string()))
        };
        let bound = options.connect_timeout;
        let connect = |client: redis::cluster::ClusterClient| async move {
            tokio::time::timeout(bound, client.get_async_connection())
                .await
                .map_err(|_| StoreError::Timeout { after: bound })?
                .map_err(|e| StoreError::within(e, bound))
        };
        let conn = connect(build(None)?).await?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let sub_conn = connect(build(Some(push_tx))?).await?;
        let (subscribe, sub_rx) = mpsc::unbounded_channel();
        let inner = Self::start(Conn::Cluster(conn), options, "SPUBLISH", subscribe).await?;
        tokio::spawn(cluster_subscriber(sub_conn, Arc::downgrade(&inner), sub_rx, push_rx));
        Ok(Self { inner })
    }

    async fn start(
        conn: Conn,
        options: StoreOptions,
        publish: &'static str,
        subscribe: mpsc::UnboundedSender<String>,
    ) -> Result<Arc<StoreInner>, Error> {
        let (janitor, jan_rx) = mpsc::unbounded_channel();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let bound = options.connect_timeout;
        // Ping once, so an unreachable server is an error here, not at the first acquire.
        tokio::time::timeout(bound, conn.ping())
            .await
            .map_err(|_| StoreError::Timeout { after: bound })?
            .map_err(|e| StoreError::within(e, bound))?;
        // Load the library now (on a cluster, on every primary), or on a server without
        // functions every script: a first call then costs one round trip, not three. A failure
        // here is not fatal: a call loads what the server says it lacks.
        let lib =
            tokio::time::timeout(options.response_timeout, conn.load_library(&scripts().library))
                .await;
        let unsupported = matches!(&lib, Ok(Err(e)) if functions_unsupported(e));
        if unsupported {
            for op in scripts().all() {
                let _ = tokio::time::timeout(options.response_timeout, conn.load(&op.script)).await;
            }
        }
        let functions = Arc::new(AtomicBool::new(!unsupported));
        tokio::spawn(janitor_task(conn.clone(), functions.clone(), options, jan_rx));
        Ok(Arc::new(StoreInner {
            conn,
            publish,
            options,
            wakes: Mutex::new(HashMap::new()),
            breaker: Arc::new(Breaker::new(options.breaker_cooldown)),
            subscribe,
            janitor,
            id_prefix: format!("{:x}-{:x}", std::process::id(), now),
            ids: AtomicU64::new(0),
            functions,
        }))
    }

    /// Sends `PING`; for health checks.
    ///
    /// # Errors
    /// [`Error::Store`] if no `PONG` came within the response timeout.
    pub async fn ping(&self) -> Result<(), Error> {
        let bound = self.inner.options.response_timeout;
        tokio::time::timeout(bound, self.inner.conn.ping())
            .await
            .map_err(|_| StoreError::Timeout { after: bound })?
            .map_err(|e| StoreError::within(e, bound))?;
        Ok(())
    }

    /// The options it was connected with.
    pub fn options(&self) -> StoreOptions {
        self.inner.options
    }
}

impl StoreInner {
    /// A request id unique across processes (this process's prefix and a counter).
    pub(crate) fn new_id(&self) -> String {
        format!("{}-{:x}", self.id_prefix, self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs an admission (`model_admit`, `gcra_reserve`) unless the breaker is open: then it
    /// answers [`StoreError::Unavailable`] at once (after yielding, so a caller that retries in
    /// a loop cannot starve the connection's own reconnecting task).
    pub(crate) async fn eval_admission(
        &self,
        script: &Op,
        keys: &[String],
        args: &[Vec<u8>],
        budget: Option<Duration>,
    ) -> Result<Vec<i64>, StoreError> {
        if self.breaker.open(self.breaker_scope(keys)) {
            tokio::task::yield_now().await;
            return Err(StoreError::Unavailable);
        }
        self.eval(script, keys, args, budget).await
    }

    /// Runs `script` on `keys` and `args` (the test-clock slot is appended) within
    /// `budget` (capped by the response timeout), expecting an array of integers. A
    /// connection failure, or no answer within the whole response timeout, opens the breaker;
    /// an answer closes it. A caller's own shorter deadline passing says nothing about the
    /// server: it starts a probe instead (see [`probe`](Self::probe)), which asks with the
    /// whole response timeout.
    pub(crate) async fn eval(
        &self,
        script: &Op,
        keys: &[String],
        args: &[Vec<u8>],
        budget: Option<Duration>,
    ) -> Result<Vec<i64>, StoreError> {
        let result = self.eval_raw(script, keys, args, budget).await;
        let scope = self.breaker_scope(keys);
        match &result {
            Err(StoreError::Timeout { after }) if *after < self.options.response_timeout => {
                self.probe(keys);
            }
            Err(StoreError::Timeout { .. } | StoreError::Redis(_)) => self.breaker.failed(scope),
            Ok(_) | Err(StoreError::Script(_)) => self.breaker.answered(scope),
            Err(_) => {}
        }
        result
    }

    /// Whether `error`, from a call on `keys`, is only its caller's own bound cutting the call
    /// short (sooner than the response timeout) while the breaker is closed: nothing says the
    /// server is unreachable, so the degraded policy must not answer for it. Once the breaker
    /// has opened (a connection error, a whole response timeout, a failed probe), and until
    /// an answer closes it again, a cut call is the server being unreachable.
    pub(crate) fn cut_short(&self, keys: &[String], error: &StoreError) -> bool {
        matches!(error, StoreError::Timeout { after } if *after < self.options.response_timeout)
            && !self.breaker.tripped(self.breaker_scope(keys))
    }

    /// Whether the store is known unreachable for `keys` (the breaker open or half-open):
    /// what a caller that gave up waiting in the line for a shared call
    /// (`line::Via::Abandoned`) asks. Its own bound cut it short, whatever that bound was
    /// (also one at or above the response timeout: it waited behind another call first), so
    /// only a known fault lets the degraded policy answer it.
    pub(crate) fn known_unreachable(&self, keys: &[String]) -> bool {
        self.breaker.tripped(self.breaker_scope(keys))
    }

    /// After a call on `keys` was cut short by its caller's bound: asks the same server (on a
    /// cluster, the node of the keys' hash tag, routed by the first key) one cheap question
    /// (`PTTL` of that key) with the whole response timeout, in the background, with the
    /// breaker's accounting: no answer opens the breaker, so later acquires degrade at once
    /// (a blackhole, where no call sees a connection error and every caller's bound is
    /// shorter than the timeout); an answer leaves it closed. At most one probe per scope is
    /// out; a cut call while one is out starts nothing (no task per cut call).
    fn probe(&self, keys: &[String]) {
        let scope = self.breaker_scope(keys);
        let Some(key) = keys.first() else { return };
        if self.options.breaker_cooldown.is_zero() || self.breaker.open(scope) {
            return; // no breaker to open, or open already
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let Some(flag) = Probing::start(&self.breaker, scope) else { return };
        let conn = self.conn.clone();
        let timeout = self.options.response_timeout;
        let mut cmd = redis::cmd("PTTL");
        cmd.arg(key.as_str());
        drop(runtime.spawn(async move {
            let asked = tokio::time::timeout(timeout, conn.query::<redis::Value>(&cmd)).await;
            let failed = match &asked {
                Err(_) => true,
                Ok(Err(e)) => {
                    e.is_timeout()
                        || e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_connection_refusal()
                }
                Ok(Ok(_)) => false,
            };
            if failed {
                tracing::warn!(target: "tollgate_redis", scope = %flag.scope, ?timeout, "a probe after a call cut short by its caller's bound got no answer: the breaker opens, acquires take the degraded policy");
                flag.breaker.failed(&flag.scope);
            } else {
                flag.breaker.answered(&flag.scope);
            }
        }));
    }

    /// What a failure of a call on `keys` says is down: the server, or on a cluster the node
    /// of their hash tag (all of an operation's keys share it), named by the tag.
    fn breaker_scope<'k>(&self, keys: &'k [String]) -> &'k str {
        if !self.conn.is_cluster() {
            return "";
        }
        let key = keys.first().map_or("", String::as_str);
        key.find('}').map_or(key, |end| &key[..=end])
    }

    async fn eval_raw(
        &self,
        script: &Op,
        keys: &[String],
        args: &[Vec<u8>],
        budget: Option<Duration>,
    ) -> Result<Vec<i64>, StoreError> {
        let bound =
            budget.map_or(self.options.response_timeout, |b| b.min(self.options.response_timeout));
        let run = call::<Vec<i64>>(&self.conn, &self.functions, script, keys, args);
        match tokio::time::timeout(bound, run).await {
            Err(_) => Err(StoreError::Timeout { after: bound }),
            Ok(Err(e)) if e.is_timeout() => Err(StoreError::Timeout { after: bound }),
            Ok(Err(e))
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() =>
            {
                Err(StoreError::Redis(e.to_string()))
            }
            // The server answered (a script error, say): the connection is fine.
            Ok(Err(e)) => Err(StoreError::Script(e.to_string())),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Queues a call for the janitor (from `Drop`, which cannot do I/O).
    pub(crate) fn later(&self, job: Job) {
        // The janitor only ends with the store; then the TTLs clean up.
        let _ = self.janitor.send(job);
    }

    /// Subscribes to a model's wake-up channel (once; idempotent on the subscriber's side).
    pub(crate) fn subscribe(&self, channel: String) {
        let _ = self.subscribe.send(channel);
    }

    /// Registers a waiter for wake-ups naming `id`; the guard unregisters it.
    pub(crate) fn register(self: &Arc<Self>, id: &str) -> WakeGuard {
        let notify = Arc::new(Notify::new());
        self.wakes.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned(), notify.clone());
        WakeGuard { store: self.clone(), id: id.to_owned(), notify }
    }

    fn route(&self, id: &str) {
        let wakes = self.wakes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = wakes.get(id) {
            n.notify_one();
        }
    }
}

/// A local waiter's registration for wake-up messages.
pub(crate) struct WakeGuard {
    store: Arc<StoreInner>,
    id: String,
    pub(crate) notify: Arc<Notify>,
}

impl Drop for WakeGuard {
    fn drop(&mut self) {
        self.store.wakes.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// The subscriber: one pub/sub connection, resubscribed after every reconnect, routing each
/// message (a ticket id) to the local waiter holding that ticket. Messages are at-most-once;
/// waiters refresh on their own timer, which covers any that are lost (or sent while this
/// connection was down).
async fn subscriber(
    client: redis::Client,
    store: std::sync::Weak<StoreInner>,
    mut rx: mpsc::UnboundedReceiver<String>,
) {
    let mut channels: HashSet<String> = HashSet::new();
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected =
            tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await;
        let Ok(Ok(pubsub)) = connected else {
            // Down: keep collecting channels, try again later.
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    ch = rx.recv() => match ch {
                        Some(ch) => { channels.insert(ch); }
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        backoff = Duration::from_millis(50);
        let (mut sink, mut stream) = pubsub.split();
        let mut ok = true;
        for ch in &channels {
            if sink.subscribe(ch.as_str()).await.is_err() {
                ok = false;
                break;
            }
        }
        while ok {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        let Some(store) = store.upgrade() else { return };
                        if let Ok(id) = msg.get_payload::<String>() {
                            store.route(&id);
                        }
                    }
                    None => ok = false,
                },
                ch = rx.recv() => match ch {
                    Some(ch) => {
                        if channels.insert(ch.clone()) && sink.subscribe(ch.as_str()).await.is_err() {
                            ok = false;
                        }
                    }
                    None => return,
                },
            }
        }
        if store.strong_count() == 0 {
            return;
        }
    }
}

/// The cluster's subscriber: sharded subscriptions on a RESP3 cluster connection (redis-rs
/// resubscribes after reconnects and slot moves), messages arriving as pushes.
#[cfg(feature = "cluster")]
async fn cluster_subscriber(
    mut conn: redis::cluster_async::ClusterConnection,
    store: std::sync::Weak<StoreInner>,
    mut rx: mpsc::UnboundedReceiver<String>,
    mut pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
) {
    let mut channels: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            ch = rx.recv() => match ch {
                Some(ch) => {
                    if channels.insert(ch.clone()) && conn.ssubscribe(ch.as_str()).await.is_err() {
                        // Tried again on the next request for it; waiters refresh meanwhile.
                        channels.remove(&ch);
                    }
                }
                None => return,
            },
            push = pushes.recv() => match push {
                Some(push) if push.kind == redis::PushKind::SMessage => {
                    let Some(store) = store.upgrade() else { return };
                    if let Some(redis::Value::BulkString(id)) = push.data.get(1) {
                        store.route(&String::from_utf8_lossy(id));
                    }
                }
                Some(_) => {}
                None => return,
            },
        }
    }
}

/// The janitor: runs each queued release or cancellation in its own task (so one that waits
/// out an outage delays no other), a few tries each; then the TTLs do it.
async fn janitor_task(
    conn: Conn,
    functions: Arc<AtomicBool>,
    options: StoreOptions,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    while let Some(job) = rx.recv().await {
        tokio::spawn(run_job(conn.clone(), functions.clone(), options, job));
    }
}

async fn run_job(conn: Conn, functions: Arc<AtomicBool>, options: StoreOptions, job: Job) {
    let mut delay = Duration::from_millis(50);
    for attempt in 0..5 {
        let run = call::<redis::Value>(&conn, &functions, job.script, &job.keys, &job.args);
        let r = tokio::time::timeout(options.response_timeout, run).await;
        if matches!(r, Ok(Ok(_))) {
            return;
        }
        if attempt == 4 {
            tracing::warn!(
                target: "tollgate_redis",
                keys = ?job.keys,
                "a release could not reach Redis; its lease expires on its own"
            );
            return;
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

impl core::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisStore").field("options", &self.inner.options).finish_non_exhaustive()
    }
}

/// An integer argument.
pub(crate) fn int(v: impl itoa_like::Int) -> Vec<u8> {
    v.text().into_bytes()
}

/// A text argument.
pub(crate) fn text(v: &str) -> Vec<u8> {
    v.as_bytes().to_vec()
}

pub(crate) mod itoa_like {
    //! Integers as decimal text, the form script arguments take.
    /// An integer type.
    pub(crate) trait Int {
        fn text(self) -> String;
    }
    macro_rules! int {
        ($($t:ty),*) => {$(impl Int for $t { fn text(self) -> String { self.to_string() } })*};
    }
    int!(u32, u64, i64, usize);
}
