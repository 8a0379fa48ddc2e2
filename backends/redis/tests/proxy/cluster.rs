//! A three-node Redis Cluster on loopback ports (no replicas), for the cluster fault test.
//!
//! Each node is `redis-server --cluster-enabled yes` with its own config file in a scratch
//! directory; `redis-cli --cluster create` assigns the 16384 slots, and the starter waits until
//! every node reports `cluster_state:ok` before handing the cluster out.
#![allow(dead_code)] // each test binary uses its own part of the support code

use core::time::Duration;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// Runs one command on the node at `port` over a fresh connection; its reply as text.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let value: redis::Value = cmd.query(&mut conn).ok()?;
    match value {
        redis::Value::SimpleString(s) => Some(s),
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::VerbatimString { text, .. } => Some(text),
        redis::Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A running cluster; every node is killed and the scratch directory removed on drop.
#[derive(Debug)]
pub struct Cluster {
    ports: Vec<u16>,
    nodes: Vec<Child>,
    dir: PathBuf,
}

/// A free port whose cluster-bus port (port + 10000) is free too.
fn free_cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..1000 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local address").port();
        if port > 55_000 || taken.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

impl Cluster {
    /// Starts three primaries, creates the cluster and waits until it serves every slot.
    pub fn start() -> Cluster {
        let mut ports = Vec::new();
        for _ in 0..3 {
            let p = free_cluster_port(&ports);
            ports.push(p);
        }
        // The pid and first port name the directory: unique among live test processes.
        let dir = std::env::temp_dir().join(format!(
            "tollgate-redis-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).expect("cluster scratch directory");
        let mut cluster = Cluster { ports: Vec::new(), nodes: Vec::new(), dir };
        for &port in &ports {
            let conf = cluster.dir.join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(&conf)
                .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn a cluster node");
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in &cluster.ports {
            while cli(port, &["PING"]).as_deref() != Some("PONG") {
                assert!(Instant::now() < deadline, "cluster node {port} did not answer PING");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let nodes: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for &port in &cluster.ports {
            loop {
                let info = cli(port, &["CLUSTER", "INFO"]).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster node {port} never reached state ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// The nodes' ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// A `redis://` URL for every node (cluster clients take them all as seeds).
    pub fn urls(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}/")).collect()
    }

    /// The port of the node that serves `key`'s slot (asked with `CLUSTER KEYSLOT`/`SLOTS`).
    pub fn node_for(&self, key: &str) -> u16 {
        let slot: u16 = cli(self.ports[0], &["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.parse().ok())
            .expect("CLUSTER KEYSLOT");
        for &port in &self.ports {
            // Each node's own line in `CLUSTER NODES` lists the slot ranges it serves.
            let myself = cli(port, &["CLUSTER", "MYID"]).unwrap_or_default();
            let nodes = cli(port, &["CLUSTER", "NODES"]).unwrap_or_default();
            let Some(line) = nodes.lines().find(|l| l.starts_with(&myself)) else { continue };
            for range in line.split_whitespace().skip(8) {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
                    && (lo..=hi).contains(&slot)
                {
                    return port;
                }
            }
        }
        panic!("no node serves slot {slot}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
