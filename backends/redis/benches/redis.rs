//! Benchmark: what a shared limit costs — admissions per second and latency of tollgate-redis
//! beside `PING` and a bare `EVALSHA` of a no-op script on the same server in the same run, and
//! beside the in-process limiters.
//!
//! ```sh
//! cargo bench -p tollgate-redis --bench redis            # about 2 minutes
//! cargo bench -p tollgate-redis --bench redis -- --quick # one round of 0.5 s per figure
//! ```
//!
//! Each figure is `tasks` tokio tasks (a 2-worker runtime, one multiplexed connection) calling
//! the operation back to back for a fixed time; the rounds rotate the operations so that every
//! one sees the machine in every state, and the table gives the median over rounds. The
//! four-process figures start the bench binary itself four times (`TOLLGATE_REDIS_BENCH_CHILD`),
//! all children on one start instant, and merge their latencies.

use core::time::Duration;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[path = "../tests/support/mod.rs"]
mod support;

/// Environment variable that makes the binary a child: `op,tasks,run_ms,start_at_unix_us,url`.
const CHILD: &str = "TOLLGATE_REDIS_BENCH_CHILD";

/// The operations measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `PING`: one round trip, nothing run.
    Ping,
    /// `EVALSHA` of `return 1`: one round trip through the script engine.
    Noop,
    /// `EVALSHA` of the least any shared limit's script does: the server's `TIME`, a `GET`
    /// of the state and a `SET … PX` of it (a constant: no decision). The floor under every
    /// Redis limiter's latency.
    Floor,
    /// `tollgate_redis::RateLimiter::try_acquire` on a bucket that never refuses.
    Bucket,
    /// `tollgate_redis::RateLimiter::acquire` on the same bucket (never waits).
    BucketAcquire,
    /// `tollgate_redis::ModelRateLimiter` acquire then settle (two scripts per request).
    Model,
    /// `tollgate_redis::ModelRateLimiter` acquire; its settle spawned (off the caller's path).
    ModelAcquire,
    /// `tollgate_redis::ModelRateLimiter` acquire, then its settle awaited: the latency is the
    /// acquire's alone (so at one task, an acquire with no call of its process in flight), the
    /// throughput that of the pairs.
    ModelAcquireSettled,
    /// `tollgate_tokio::AsyncRateLimiter::try_acquire`, in process.
    LocalBucket,
    /// `tollgate_tokio::ModelRateLimiter` acquire then settle, in process.
    LocalModel,
}

const ALL: [Op; 10] = [
    Op::Ping,
    Op::Noop,
    Op::Floor,
    Op::Bucket,
    Op::BucketAcquire,
    Op::ModelAcquire,
    Op::ModelAcquireSettled,
    Op::Model,
    Op::LocalBucket,
    Op::LocalModel,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Ping => "PING",
            Op::Noop => "EVALSHA no-op",
            Op::Floor => "EVALSHA floor (TIME + GET + SET PX)",
            Op::Bucket => "redis bucket try_acquire",
            Op::BucketAcquire => "redis bucket acquire",
            Op::Model => "redis model acquire+settle",
            Op::ModelAcquire => "redis model acquire",
            Op::ModelAcquireSettled => "redis model acquire (settle awaited, not timed)",
            Op::LocalBucket => "in-process bucket try_acquire",
            Op::LocalModel => "in-process model acquire+settle",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        ALL.into_iter().find(|op| format!("{op:?}") == s)
    }

    fn is_redis(self) -> bool {
        !matches!(self, Op::LocalBucket | Op::LocalModel)
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
struct Run {
    ops: u64,
    secs: f64,
    lat_ns: Vec<u64>,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    fn quantile(&mut self, q: f64) -> f64 {
        if self.lat_ns.is_empty() {
            return f64::NAN;
        }
        self.lat_ns.sort_unstable();
        let i = ((self.lat_ns.len() - 1) as f64 * q).round() as usize;
        self.lat_ns[i] as f64 / 1000.0
    }
}

/// Everything the operations run against.
struct Target {
    conn: redis::aio::ConnectionManager,
    noop: redis::Script,
    floor: redis::Script,
    bench: limiters::Redis,
    local: limiters::Local,
}

/// The limiters under test, each set so that it never refuses or waits: the figures are the
/// cost of a decision, not of a limit.
mod limiters {
    use core::time::Duration;
    use std::time::Instant;

    use tollgate_tokio::{AsyncRateLimiter, ModelRateLimiter, Rate, RateLimitConfig};

    /// A configuration no benchmark load reaches.
    pub fn unlimited() -> RateLimitConfig {
        RateLimitConfig {
            rpm: u32::MAX / 2,
            tpm: u64::from(u32::MAX),
            max_parallel_requests: 100_000,
            limits: Vec::new(),
            ..Default::default()
        }
    }

    /// tollgate's in-process limiters.
    pub struct Local {
        bucket: AsyncRateLimiter,
        model: ModelRateLimiter,
    }

    impl Local {
        pub fn new() -> Local {
            Local {
                bucket: AsyncRateLimiter::new(Rate::per_second(u32::MAX), 1 << 40),
                model: ModelRateLimiter::new([("bench", unlimited())], unlimited())
                    .expect("bench: model config"),
            }
        }

        pub fn bucket(&self) {
            self.bucket.try_acquire().expect("bench: the bucket never refuses");
        }

        pub async fn model(&self) {
            let permit = self.model.acquire("bench", 100).await.expect("bench: model admit");
            permit.settle(80);
        }
    }

    /// tollgate-redis's limiters on the bench server.
    pub struct Redis {
        bucket: tollgate_redis::RateLimiter,
        model: tollgate_redis::ModelRateLimiter,
    }

    impl Redis {
        pub async fn new(url: &str) -> Redis {
            let store = tollgate_redis::RedisStore::connect(url).await.expect("bench: connect");
            let rate = Rate::per_second(1_000_000);
            Redis {
                bucket: tollgate_redis::RateLimiter::new(
                    store.clone(),
                    "bench",
                    "b",
                    rate,
                    1 << 30,
                )
                .expect("bench: bucket config"),
                model: tollgate_redis::ModelRateLimiter::new(
                    store,
                    "bench",
                    [("bench", unlimited())],
                    unlimited(),
                )
                .expect("bench: model config"),
            }
        }

        pub async fn bucket(&self) {
            self.bucket.try_acquire().await.expect("bench: the bucket never refuses");
        }

        pub async fn bucket_acquire(&self) {
            self.bucket.acquire().await.expect("bench: the bucket never fails");
        }

        pub async fn model(&self) {
            let permit = self.model.acquire("bench", 100).await.expect("bench: model admit");
            permit.settle(80).await.expect("bench: settle");
        }

        /// How long the acquire took; the settle is awaited after.
        pub async fn model_acquire_settled(&self) -> Duration {
            let t = Instant::now();
            let permit = self.model.acquire("bench", 100).await.expect("bench: model admit");
            let took = t.elapsed();
            permit.settle(80).await.expect("bench: settle");
            took
        }

        pub async fn model_acquire(&self) {
            let permit = self.model.acquire("bench", 100).await.expect("bench: model admit");
            tokio::spawn(async move { permit.settle(80).await.expect("bench: settle") });
        }
    }
}

impl Target {
    async fn connect(url: &str) -> Target {
        let client = redis::Client::open(url).expect("bench: redis URL");
        let conn = client.get_connection_manager().await.expect("bench: connect");
        Target {
            conn,
            noop: redis::Script::new("return 1"),
            floor: redis::Script::new(
                "local t = redis.call('TIME')\n\
                 local v = redis.call('GET', KEYS[1])\n\
                 redis.call('SET', KEYS[1], t[1] .. ' ' .. t[2], 'PX', 60000)\n\
                 return 1",
            ),
            bench: limiters::Redis::new(url).await,
            local: limiters::Local::new(),
        }
    }

    /// One operation; `Some` when only part of it is timed (the part's time).
    async fn once(&self, op: Op) -> Option<Duration> {
        match op {
            Op::Ping => {
                let mut c = self.conn.clone();
                let pong: String = redis::cmd("PING").query_async(&mut c).await.expect("PING");
                debug_assert_eq!(pong, "PONG");
            }
            Op::Noop => {
                let mut c = self.conn.clone();
                let one: i64 = self.noop.invoke_async(&mut c).await.expect("EVALSHA");
                debug_assert_eq!(one, 1);
            }
            Op::Floor => {
                let mut c = self.conn.clone();
                let inv = self.floor.key("{bench}:floor");
                let one: i64 = inv.invoke_async(&mut c).await.expect("EVALSHA floor");
                debug_assert_eq!(one, 1);
            }
            Op::Bucket => self.bench.bucket().await,
            Op::BucketAcquire => self.bench.bucket_acquire().await,
            Op::Model => self.bench.model().await,
            Op::ModelAcquire => self.bench.model_acquire().await,
            Op::ModelAcquireSettled => return Some(self.bench.model_acquire_settled().await),
            Op::LocalBucket => self.local.bucket(),
            Op::LocalModel => self.local.model().await,
        }
        None
    }
}

/// `tasks` tasks calling `op` back to back from `start` for `run`.
async fn measure(target: &Arc<Target>, op: Op, tasks: usize, run: Duration) -> Run {
    target.once(op).await; // loads the script, warms the connection
    let start = Instant::now();
    let end = start + run;
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let target = Arc::clone(target);
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let took = target.once(op).await.unwrap_or_else(|| t.elapsed());
                lat.push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
            }
            lat
        }));
    }
    let mut out = Run::default();
    for h in handles {
        let lat = h.await.expect("bench task");
        out.ops += lat.len() as u64;
        out.lat_ns.extend(lat);
    }
    out.secs = start.elapsed().as_secs_f64();
    out
}

fn unix_us() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_micros())
        .expect("µs fit")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("bench runtime")
}

/// A child process: waits for the common start instant, measures, prints `COUNT`/`SECS`/`LAT`.
fn child(spec: &str) {
    let mut it = spec.split(',');
    let op = it.next().and_then(Op::parse).expect("child: op");
    let tasks: usize = it.next().and_then(|s| s.parse().ok()).expect("child: tasks");
    let run_ms: u64 = it.next().and_then(|s| s.parse().ok()).expect("child: run_ms");
    let start_at: u64 = it.next().and_then(|s| s.parse().ok()).expect("child: start");
    let url = it.next().expect("child: url").to_owned();
    runtime().block_on(async move {
        let target = Arc::new(Target::connect(&url).await);
        target.once(op).await;
        let now = unix_us();
        if start_at > now {
            tokio::time::sleep(Duration::from_micros(start_at - now)).await;
        }
        let run = measure(&target, op, tasks, Duration::from_millis(run_ms)).await;
        let lat: Vec<String> = run.lat_ns.iter().map(u64::to_string).collect();
        println!("COUNT {}\nSECS {}\nLAT {}", run.ops, run.secs, lat.join(" "));
    });
}

/// `procs` children with `tasks` tasks each, started together; their merged figures.
fn processes(url: &str, op: Op, procs: usize, tasks: usize, run: Duration) -> Run {
    let exe = std::env::current_exe().expect("bench binary");
    let start_at = unix_us() + 1_500_000; // time for every child to start and connect
    let spec = format!("{op:?},{tasks},{},{start_at},{url}", run.as_millis());
    let children: Vec<_> = (0..procs)
        .map(|_| {
            Command::new(&exe)
                .env(CHILD, &spec)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a bench child")
        })
        .collect();
    let mut out = Run::default();
    for c in children {
        let output = c.wait_with_output().expect("bench child");
        assert!(output.status.success(), "bench child failed");
        let text = String::from_utf8_lossy(&output.stdout);
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("COUNT ") {
                out.ops += n.parse::<u64>().expect("COUNT");
            } else if let Some(s) = line.strip_prefix("SECS ") {
                out.secs = out.secs.max(s.parse::<f64>().expect("SECS"));
            } else if let Some(l) = line.strip_prefix("LAT ") {
                out.lat_ns.extend(l.split_whitespace().map(|x| x.parse::<u64>().expect("LAT")));
            }
        }
    }
    out
}

/// The median of the rounds' figures for one cell of the table.
#[derive(Clone, Copy, Debug)]
struct Cell {
    per_sec: f64,
    p50: f64,
    p99: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cell(runs: &mut [Run]) -> Cell {
    Cell {
        per_sec: median(runs.iter().map(Run::per_sec).collect()),
        p50: median(runs.iter_mut().map(|r| r.quantile(0.50)).collect()),
        p99: median(runs.iter_mut().map(|r| r.quantile(0.99)).collect()),
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it as a test: keep that short.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (rounds, run) = if quick || smoke {
        (1, Duration::from_millis(if smoke { 100 } else { 500 }))
    } else {
        (5, Duration::from_secs(1))
    };
    let Some(server) = support::RedisServer::start() else { return };
    let url = server.url();
    let rt = runtime();
    let target = Arc::new(rt.block_on(Target::connect(&url)));
    // `TOLLGATE_REDIS_BENCH_OPS=Ping,Model` measures only those (names as in `Op`).
    let chosen: Vec<Op> = match std::env::var("TOLLGATE_REDIS_BENCH_OPS") {
        Ok(list) => list.split(',').filter_map(Op::parse).collect(),
        Err(_) => ALL.to_vec(),
    };
    // `TOLLGATE_REDIS_BENCH_TASKS=64` measures only that load in one process (and skips the
    // four processes), e.g. to profile it.
    let concurrency: Vec<usize> = match std::env::var("TOLLGATE_REDIS_BENCH_TASKS") {
        Ok(list) => list.split(',').filter_map(|t| t.trim().parse().ok()).collect(),
        Err(_) => vec![1, 8, 64],
    };
    let four_processes = std::env::var("TOLLGATE_REDIS_BENCH_TASKS").is_err();
    let mut rows: Vec<(String, Op, Cell)> = Vec::new();
    for &tasks in &concurrency {
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); chosen.len()];
        for round in 0..rounds {
            for k in 0..chosen.len() {
                let i = (k + round) % chosen.len(); // rotate the order each round
                let r = rt.block_on(measure(&target, chosen[i], tasks, run));
                runs[i].push(r);
            }
        }
        for (i, &op) in chosen.iter().enumerate() {
            rows.push((format!("1 process × {tasks} tasks"), op, cell(&mut runs[i])));
        }
    }
    let (procs, tasks) = (4, 16);
    let redis_ops: Vec<Op> = chosen.iter().copied().filter(|op| op.is_redis()).collect();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); redis_ops.len()];
    for round in 0..if four_processes { rounds.min(3) } else { 0 } {
        for k in 0..redis_ops.len() {
            let i = (k + round) % redis_ops.len();
            runs[i].push(processes(&url, redis_ops[i], procs, tasks, run));
        }
    }
    for (i, &op) in redis_ops.iter().enumerate().filter(|_| four_processes) {
        rows.push((format!("{procs} processes × {tasks} tasks"), op, cell(&mut runs[i])));
    }
    print_table(&rows);
    // Where the server's time went: microseconds per call of each command, as Redis counts.
    let stats = support::command(server.port(), &["INFO", "commandstats"]).unwrap_or_default();
    for line in stats.lines().filter(|l| l.starts_with("cmdstat_")) {
        println!("{line}");
    }
    drop(server);
}

fn print_table(rows: &[(String, Op, Cell)]) {
    println!(
        "| load | operation | admissions/s | p50 µs | p99 µs | vs no-op (throughput) | vs PING (p50) |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (load, op, c) in rows {
        let same = |want: Op| rows.iter().find(|(l, o, _)| l == load && *o == want).map(|r| r.2);
        // The in-process limiters make no round trip: a ratio to one would say nothing.
        let (noop, ping) =
            if op.is_redis() { (same(Op::Noop), same(Op::Ping)) } else { (None, None) };
        let ratio_tp = noop.map_or(String::new(), |n| format!("{:.2}×", c.per_sec / n.per_sec));
        let ratio_p50 = ping.map_or(String::new(), |p| format!("{:.2}×", c.p50 / p.p50));
        println!(
            "| {load} | {} | {:.0} | {:.1} | {:.1} | {ratio_tp} | {ratio_p50} |",
            op.name(),
            c.per_sec,
            c.p50,
            c.p99
        );
    }
}
