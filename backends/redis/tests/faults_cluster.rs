//! A fault on a 3-node Redis Cluster: the node serving one model's slot is killed with SIGKILL.
//! That model fails closed by its deadline while models on the other nodes keep being admitted
//! (the cluster is told not to stop for one uncovered slot range), and once the node is back on
//! its port with its node file, the model is admitted again through the same store.
#![cfg(feature = "cluster")]

mod support;

use core::time::Duration;
use std::time::Instant;

use support::RedisCluster;
use tollgate::RateLimitConfig;
use tollgate_redis::{ModelRateLimiter, RedisStore, StoreOptions};

const NS: &str = "clfault";

fn config() -> RateLimitConfig {
    RateLimitConfig {
        rpm: 100_000,
        tpm: 10_000_000,
        max_parallel_requests: 8,
        limits: Vec::new(),
        ..Default::default()
    }
}

/// The index of the node holding `model`'s state (its keys all share one hash tag).
fn node_of(cluster: &RedisCluster, model: &str) -> Option<usize> {
    let key = format!("{{tg:{NS}:m={model}}}:s");
    cluster.nodes.iter().position(|n| n.command(&["EXISTS", &key]).starts_with(":1"))
}

/// One acquire with a deadline, settled at once: whether it was admitted, and how long it took.
async fn attempt(l: &ModelRateLimiter, model: &str, deadline: Duration) -> (bool, Duration) {
    let t = Instant::now();
    let r = tokio::time::timeout(deadline * 4, l.acquire_within(model, 1, deadline))
        .await
        .unwrap_or_else(|_| panic!("{model}: an acquire with a {deadline:?} deadline hung"));
    let took = t.elapsed();
    match r {
        Ok(p) => {
            let _ = p.settle(1).await;
            (true, took)
        }
        Err(e) => {
            assert!(e.is_store(), "{model}: {e}");
            (false, took)
        }
    }
}

#[test]
fn a_killed_node_fails_its_models_closed_and_only_them() {
    let Some(mut cluster) = RedisCluster::start(3) else { return };
    for node in &cluster.nodes {
        // One node down must not stop the others serving their slots.
        node.command(&["CONFIG", "SET", "cluster-require-full-coverage", "no"]);
    }
    support::block_on_bounded(Duration::from_secs(120), async {
        let urls = cluster.urls();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let options = StoreOptions {
            response_timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let urls = &urls;
        let make = |options| async move {
            let store = RedisStore::connect_cluster(urls, options).await.expect("connect");
            ModelRateLimiter::builder(store, NS)
                .default_config(config())
                .lease_ttl(Duration::from_secs(3))
                .build()
                .expect("limiter")
        };
        let limiter = make(options).await;
        // A second process's view, with the breaker off: routing alone must keep the nodes
        // apart. With it on (the default), the breaker is per hash tag on a cluster, so the
        // dead node's failures must not stop the other nodes' models either.
        let unbroken = make(StoreOptions { breaker_cooldown: Duration::ZERO, ..options }).await;
        let models: Vec<String> = (0..12).map(|i| format!("model-{i}")).collect();
        for m in &models {
            assert!(attempt(&limiter, m, Duration::from_secs(1)).await.0, "{m} before the fault");
        }
        let homes: Vec<usize> =
            models.iter().map(|m| node_of(&cluster, m).expect("model state on a node")).collect();
        let victim = homes[0];
        let on_victim: Vec<&String> =
            models.iter().zip(&homes).filter(|(_, h)| **h == victim).map(|(m, _)| m).collect();
        let elsewhere: Vec<&String> =
            models.iter().zip(&homes).filter(|(_, h)| **h != victim).map(|(m, _)| m).collect();
        assert!(!elsewhere.is_empty(), "every model on one node: {homes:?}");
        cluster.nodes[victim].kill();
        let deadline = Duration::from_millis(400);
        let (mut refused, mut slowest) = (0, Duration::ZERO);
        for m in &on_victim {
            let (ok, took) = attempt(&limiter, m, deadline).await;
            assert!(!ok, "{m} admitted while its node was down");
            refused += 1;
            slowest = slowest.max(took);
        }
        let (mut served, mut served_with_breaker) = (0, 0);
        for m in &elsewhere {
            // The node's models keep failing meanwhile (they would, under real traffic).
            let _ = attempt(&limiter, on_victim[0], deadline).await;
            if attempt(&limiter, m, Duration::from_secs(1)).await.0 {
                served_with_breaker += 1;
            }
            let _ = attempt(&unbroken, on_victim[0], deadline).await;
            if attempt(&unbroken, m, Duration::from_secs(1)).await.0 {
                served += 1;
            }
        }
        cluster.nodes[victim].restart();
        let back = Instant::now();
        let model = on_victim[0];
        let again = loop {
            if attempt(&limiter, model, deadline).await.0 {
                break back.elapsed();
            }
            assert!(
                back.elapsed() < Duration::from_secs(20),
                "{model}: not admitted 20 s after restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        println!(
            "cluster, node {victim} of 3 killed: its {refused} models failed closed (slowest \
             answer {slowest:?} with a {deadline:?} deadline); of the {} models on the other \
             nodes, {served} were admitted meanwhile without the breaker and \
             {served_with_breaker} with it (default 500 ms cooldown); after the node restarted, \
             {model} was admitted again in {again:?}",
            elsewhere.len()
        );
        assert_eq!(served, elsewhere.len(), "models on live nodes were refused");
        assert_eq!(
            served_with_breaker,
            elsewhere.len(),
            "the dead node's breaker stopped models on live nodes"
        );
        assert!(slowest <= deadline + Duration::from_millis(200), "slowest answer {slowest:?}");
    });
}
