//! The per-request cost of a per-IP HTTP rate-limit layer on the allowed path: one axum router
//! (`GET /` answering "ok"), called in-process with `tower::ServiceExt::oneshot` and axum's
//! `ConnectInfo<SocketAddr>` set, bare, under `tollgate_tokio::http::HttpRateLimitLayer`
//! (`PeerIp`), and under `tower_governor`'s `GovernorLayer` (`PeerIpKeyExtractor`).
//!
//! Both limits are 1000 per second per address with a burst of 10^9: no request of a run is
//! refused, and every address stays a live key (it is asked more often than 1000 times a
//! second, so its bucket never refills), which is the state of a client a server is actually
//! limiting. (With a faster rate, tollgate forgets a refilled key and takes it in again on the
//! next request, which governor never does: a different path.) Requests come from one address
//! (a hot key) or cycle over 1024 addresses. The layer's overhead is its figure minus the bare
//! router's.
//!
//! Run: `cargo bench -p tollgate-tokio --features axum --bench http_layer -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use core::hint::black_box;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;
use std::time::Instant as StdInstant;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, StatusCode};
use tokio::runtime::Runtime;
use tollgate_tokio::Rate;
use tollgate_tokio::http::{HttpRateLimitLayer, PeerIp};
use tower::ServiceExt;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

/// Room for every request a run makes.
const BURST: u32 = 1_000_000_000;

fn bare() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn tollgate() -> Router {
    bare().layer(HttpRateLimitLayer::new(PeerIp, Rate::per_second(1_000), BURST.into()))
}

fn governor() -> Router {
    let config = GovernorConfigBuilder::default()
        .per_millisecond(1)
        .burst_size(BURST)
        .finish()
        .expect("a valid governor config");
    bare().layer(GovernorLayer::new(config))
}

/// `iters` requests through `router`, from `peers` addresses in turn, on one runtime entry.
fn run(rt: &Runtime, router: &Router, peers: &[SocketAddr], iters: u64) -> Duration {
    rt.block_on(async {
        let start = StdInstant::now();
        for i in 0..iters {
            let peer = peers[(i as usize) % peers.len()];
            let mut request = Request::builder().uri("/").body(Body::empty()).unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = router.clone().oneshot(request).await.unwrap();
            debug_assert_eq!(response.status(), StatusCode::OK);
            black_box(response);
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let one = [SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 4000)];
    let many: Vec<SocketAddr> = (0..1024u32)
        .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 4000))
        .collect();
    // Each layer must admit everything, or the figures compare refusals.
    for router in [tollgate(), governor()] {
        rt.block_on(async {
            let mut request = Request::builder().uri("/").body(Body::empty()).unwrap();
            request.extensions_mut().insert(ConnectInfo(one[0]));
            assert_eq!(router.oneshot(request).await.unwrap().status(), StatusCode::OK);
        });
    }
    for (name, peers) in [("one peer", &one[..]), ("1024 peers", &many[..])] {
        let mut group = c.benchmark_group(format!("http_layer/{name}"));
        for (layer, router) in
            [("bare", bare()), ("tollgate", tollgate()), ("tower_governor", governor())]
        {
            group.bench_function(layer, |b| b.iter_custom(|iters| run(&rt, &router, peers, iters)));
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
