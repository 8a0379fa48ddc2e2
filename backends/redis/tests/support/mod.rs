//! Test harness: a real `redis-server` per test, on a free loopback port, with no persistence,
//! killed when the handle drops. Shared by every test file of the crate (`mod support;`).
//!
//! Without the binary a test is skipped with a message, except under `CI=true`, where a missing
//! binary fails the test: CI must never pass by running nothing.

#![allow(dead_code)] // each test file uses its own part of the harness

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The server binary: `$REDIS_SERVER` if set, else `redis-server` on the `PATH`.
pub fn server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file())
}

/// Whether this run is CI (`CI=true`), where skipping is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A free TCP port on 127.0.0.1 (bound then released; the server binds it right after).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A fresh, empty directory for one server's files (its `nodes.conf` above all), removed when
/// the server's handle drops. A cluster node started where an earlier node on the same port
/// left its `nodes.conf` would remember that node's cluster and refuse to join a new one
/// ("Node … is not empty"), so no two servers ever share a directory.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tollgate-redis-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    dir
}

/// One running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    binary: PathBuf,
    extra: Vec<String>,
    /// Its own directory, kept across [`restart`](Self::restart) (a restarted cluster node
    /// rejoins from its `nodes.conf`), removed on drop.
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server on a free port, or returns `None` (after saying so) when no binary is
    /// installed and this is not CI. Panics under `CI=true` without a binary.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// As [`start`](Self::start), with extra `redis-server` arguments (e.g.
    /// `["--cluster-enabled", "yes"]`).
    pub fn start_with(extra: &[&str]) -> Option<Self> {
        let Some(binary) = server_binary() else {
            assert!(
                !in_ci(),
                "redis-server is not installed, and CI=true: install it (apt-get install -y redis-server)"
            );
            eprintln!("SKIPPED: redis-server not found (set REDIS_SERVER or install it)");
            return None;
        };
        let mut server = Self {
            child: None,
            port: 0,
            binary,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir: fresh_dir(),
        };
        // A cluster node also listens on its port + 10 000 (the cluster bus).
        let cluster = extra.contains(&"--cluster-enabled");
        // A port taken between the probe and the bind makes the start fail: try a few.
        for _ in 0..5 {
            server.port = free_port();
            while cluster && server.port > u16::MAX - 10_000 {
                server.port = free_port();
            }
            if server.spawn().is_ok() {
                return Some(server);
            }
        }
        panic!("could not start redis-server on a free port");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local", "--loglevel", "warning"])
            .args(["--dir", &self.dir.to_string_lossy()])
            .args(["--dbfilename", "dump.rdb", "--cluster-config-file", "nodes.conf"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("spawn redis-server: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited at start: {status}"));
            }
            if ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("redis-server did not answer PING within 10 s".into())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the server (state is lost: nothing is persisted).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (after [`kill`](Self::kill)), empty.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// How many times the server has run `command` (lowercase, e.g. `"fcall"`), from
    /// `INFO commandstats`: what tests of shared calls count.
    pub fn calls_of(&self, command: &str) -> u64 {
        let info = self.command(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Sends one command (arguments as given) and returns the raw RESP reply as text, e.g.
    /// `server.command(&["SCRIPT", "FLUSH"])` → `"+OK\r\n"`.
    pub fn command(&self, args: &[&str]) -> String {
        command(self.port, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(port: u16) -> bool {
    command(port, &["PING"]).is_ok_and(|r| r.starts_with("+PONG"))
}

/// One command over a fresh TCP connection, the reply read until it looks complete (simple
/// replies only: status, error, integer, bulk; enough for test control commands).
pub fn command(port: u16, args: &[&str]) -> Result<String, String> {
    let addr = ("127.0.0.1", port);
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
    }
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if complete(&out) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    match reply.first() {
        Some(b'+' | b'-' | b':') => text.ends_with("\r\n"),
        Some(b'$') => {
            let Some((head, rest)) = text.split_once("\r\n") else { return false };
            let len: i64 = head[1..].parse().unwrap_or(0);
            len < 0 || rest.len() >= len as usize + 2
        }
        // Arrays and the rest: good enough once a line has ended and nothing else is pending.
        Some(_) => text.ends_with("\r\n"),
        None => false,
    }
}

/// A Redis Cluster of `n` primaries (no replicas), each a [`RedisServer`] started with
/// `--cluster-enabled yes`, joined by `redis-cli --cluster create`. `None` (after saying so)
/// when a binary is missing and this is not CI.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes, in creation order.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes and creates the cluster; waits until it reports `cluster_state:ok`.
    pub fn start(n: usize) -> Option<Self> {
        let cli = server_binary()?.with_file_name("redis-cli");
        if !cli.is_file() {
            assert!(!in_ci(), "redis-cli is not installed, and CI=true");
            eprintln!("SKIPPED: redis-cli not found next to redis-server");
            return None;
        }
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(RedisServer::start_with(&["--cluster-enabled", "yes"])?);
        }
        let addrs: Vec<String> = nodes.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
        let out = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = nodes.iter().all(|s| {
                command(s.port(), &["CLUSTER", "INFO"])
                    .is_ok_and(|r| r.contains("cluster_state:ok"))
            });
            if ok {
                return Some(Self { nodes });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster did not reach cluster_state:ok within 20 s");
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// Runs `body` on a fresh 2-worker multi-thread runtime (real clock), failing the test if it
/// takes longer than `bound`: a fault test must end, whatever the fault does.
pub fn block_on_bounded<F: core::future::Future<Output = ()>>(bound: Duration, body: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(bound, body).await.expect("the test hung");
    });
}

/// A store at `url` whose connects and calls each time out after `response`. The first
/// connect is tried three times: on a loaded machine a handshake through a proxy can take
/// longer than a short `response` (seen once: a 300 ms connect timed out beside two test
/// suites), and these tests are about the calls after it.
pub async fn store_timing_out_after(response: Duration, url: &str) -> tollgate_redis::RedisStore {
    let options = tollgate_redis::StoreOptions {
        response_timeout: response,
        connect_timeout: response,
        ..Default::default()
    };
    let mut tries = 0;
    loop {
        tries += 1;
        match tollgate_redis::RedisStore::connect_with(url, options).await {
            Ok(store) => return store,
            Err(e) if tries < 3 => eprintln!("connect to {url} (try {tries} of 3): {e}"),
            Err(e) => panic!("connect to {url}, 3 tries: {e:?}"),
        }
    }
}

/// A model config whose only binding limit is one request a minute (100 parallel slots, RPM
/// and TPM far away): one admission uses the window up, and nothing is admitted after it for
/// as long as any test runs.
pub fn one_request_a_minute() -> tollgate::RateLimitConfig {
    tollgate::RateLimitConfig {
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: 100,
        limits: vec![
            tollgate::model::Limit::requests("requests", 1, Duration::from_secs(60)).with_slots(20),
        ],
        ..Default::default()
    }
}

/// A model limiter of its own connection to `server` (one "process"), with `cfg` for model
/// "m" and every other model, and tickets renewed only every 10 s: a wake-up within a test
/// must come by message.
pub async fn model_process(
    server: &RedisServer,
    ns: &str,
    cfg: tollgate::RateLimitConfig,
) -> tollgate_redis::ModelRateLimiter {
    let store = tollgate_redis::RedisStore::connect(&server.url()).await.expect("connect");
    tollgate_redis::ModelRateLimiter::builder(store, ns)
        .model("m", cfg.clone())
        .default_config(cfg)
        .ticket_ttl(Duration::from_secs(30))
        .build()
        .expect("limiter")
}
