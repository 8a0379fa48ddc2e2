//! A 3-node Redis Cluster: every script of every model and bucket runs (each touches one slot:
//! no CROSSSLOT), models land on several nodes, and a freed slot's wake-up arrives by sharded
//! pub/sub.

mod support;

use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use tollgate::{Rate, RateLimitConfig};
use tollgate_redis::{ModelRateLimiter, RateLimiter, RedisStore, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_script_runs_on_a_cluster() {
    let Some(cluster) = support::RedisCluster::start(3) else { return };
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let store = RedisStore::connect_cluster(&urls, StoreOptions::default()).await.expect("connect");
    let config =
        RateLimitConfig { rpm: 100, tpm: 10_000, max_parallel_requests: 1, ..Default::default() };
    let limiter = Arc::new(
        ModelRateLimiter::builder(store.clone(), "cl")
            .default_config(config)
            .ticket_ttl(Duration::from_secs(30)) // refresh every 10 s: wakes must be messages
            .build()
            .unwrap(),
    );
    // Enough names to spread over every node.
    for i in 0..12 {
        let name = format!("model-{i}");
        let p = limiter.try_acquire(&name, 10).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        p.settle(5).await.unwrap();
    }
    let stats = limiter.stats().await.unwrap();
    assert_eq!(stats.len(), 12);
    assert!(stats.values().all(|s| s.tokens.used == 5 && s.requests.used == 1));
    let mut nodes_used = std::collections::HashSet::new();
    for i in 0..12 {
        let key = format!("{{tg:cl:m=model-{i}}}:s");
        for (n, node) in cluster.nodes.iter().enumerate() {
            if node.command(&["EXISTS", &key]).starts_with(":1") {
                nodes_used.insert(n);
            }
        }
    }
    assert!(nodes_used.len() >= 2, "models should spread over the nodes: {nodes_used:?}");

    // A waiter for the only parallel slot is woken by SPUBLISH.
    let held = limiter.try_acquire("model-0", 1).await.unwrap();
    let waiter = {
        let l = limiter.clone();
        tokio::spawn(async move { l.acquire("model-0", 1).await.map(|p| (Instant::now(), p)) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let freed = Instant::now();
    held.settle(1).await.unwrap();
    let (at, p) =
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
    assert!(at - freed < Duration::from_millis(1_000), "woken after {:?}", at - freed);
    drop(p);

    let bucket = RateLimiter::new(store, "cl", "bucket", Rate::per_second(10), 2).unwrap();
    bucket.try_acquire_n(2).await.unwrap();
    assert!(bucket.try_acquire().await.is_err());
    bucket.acquire().await.unwrap();
}
