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
//! On a shared machine the criterion groups drift against each other, so the bench ends with
//! a paired run: rounds of 20 000 requests through each router in rotating order, and the
//! medians over rounds of each figure, of each layer's overhead over the bare router in the
//! same round, and of tollgate's time over governor's. The paired run also measures each
//! router as `axum::serve` runs it (after `with_state`, see [`paired`]); the criterion groups
//! and the first two paired lines call the routers as built, as this bench always did.
//!
//! Run: `cargo bench -p tollgate-tokio --features axum --bench http_layer -- --warm-up-time 1 --measurement-time 3`;
//! only the paired run: `... --bench http_layer -- zzz_none` (a filter no group matches).
//!
//! Profile mode: with `HTTP_LAYER_PROFILE` set (see [`profile`]) the binary runs one router in
//! a loop and nothing else, for `perf record` or `valgrind --tool=callgrind` on the binary
//! `cargo bench --no-run` prints. Callgrind's instruction counts are what the machine's noise
//! and the binary's code layout do not move: run it at two request counts and take the
//! difference over the difference, e.g.
//! `HTTP_LAYER_PROFILE=tollgate HTTP_LAYER_PROFILE_N=100000 valgrind --tool=callgrind <binary>`
//! and again with `200000`.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use core::hint::black_box;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;
use std::time::Instant as StdInstant;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use criterion::{Criterion, criterion_group};
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

/// `tollgate()` with the `RateLimit` fields on every admitted response (only in the profile
/// mode: tower_governor writes no fields on admitted responses unless `use_headers`).
fn tollgate_reporting() -> Router {
    let layer = HttpRateLimitLayer::new(PeerIp, Rate::per_second(1_000), BURST.into());
    bare().layer(layer.report_on_success(true))
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

/// The paired run: medians over rounds, each round timing every router back to back.
fn paired() {
    const ROUNDS: usize = 41;
    const PER_ROUND: u64 = 20_000;
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let one = [SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 4000)];
    let many: Vec<SocketAddr> = (0..1024u32)
        .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 4000))
        .collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // "as built": the routers as written, which axum turns into each route's service on every
    // request (`Layer::layer` included); "as served": after `with_state(())`, which
    // `axum::serve` (through `into_make_service`) does once, so a request only clones the
    // route's service. A server runs the second.
    let cases = [
        ("one peer", &one[..], false),
        ("1024 peers", &many[..], false),
        ("one peer, as served", &one[..], true),
        ("1024 peers, as served", &many[..], true),
    ];
    for (name, peers, served) in cases {
        let form = |router: Router| if served { router.with_state(()) } else { router };
        let routers = [form(bare()), form(tollgate()), form(governor())];
        let mut ns = [Vec::new(), Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            for k in 0..3 {
                let i = (round + k) % 3;
                let took = run(&rt, &routers[i], peers, PER_ROUND);
                ns[i].push(took.as_nanos() as f64 / PER_ROUND as f64);
            }
        }
        let over = |i: usize| median(ns[i].iter().zip(&ns[0]).map(|(l, b)| l - b).collect());
        let (over_t, over_g) = (over(1), over(2));
        let ratio = median(ns[1].iter().zip(&ns[2]).map(|(t, g)| t / g).collect());
        let [b, t, g] = ns.map(median);
        println!(
            "paired {name}: bare {b:.0} ns, tollgate {t:.0} ns (+{:.0}), tower_governor {g:.0} ns \
             (+{:.0}); tollgate/governor {ratio:.3}x per request, {:.2}x overhead",
            over_t,
            over_g,
            over_t / over_g,
        );
    }
}

criterion_group!(benches, bench);

/// `HTTP_LAYER_PROFILE=<bare|tollgate|tollgate_reporting|tower_governor>`: only that router,
/// from one peer, for `HTTP_LAYER_PROFILE_N` requests (5 000 000 unless set), and nothing
/// else: a steady loop to run under `perf record`, or under `valgrind --tool=callgrind` to
/// count instructions per request (which the machine's noise does not move). With
/// `HTTP_LAYER_SERVED` set, the router as served (`with_state`, see [`paired`]).
fn profile(which: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let one = [SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 4000)];
    let router = match which {
        "bare" => bare(),
        "tollgate" => tollgate(),
        "tollgate_reporting" => tollgate_reporting(),
        "tower_governor" => governor(),
        other => panic!("HTTP_LAYER_PROFILE: no router {other:?}"),
    };
    let router = if std::env::var_os("HTTP_LAYER_SERVED").is_some() {
        router.with_state(())
    } else {
        router
    };
    let n = std::env::var("HTTP_LAYER_PROFILE_N").ok().and_then(|n| n.parse().ok());
    let n: u64 = n.unwrap_or(5_000_000).max(1);
    let took = run(&rt, &router, &one, n);
    println!("{which}: {:.0} ns per request", took.as_nanos() as f64 / n as f64);
}

fn main() {
    if let Ok(which) = std::env::var("HTTP_LAYER_PROFILE") {
        return profile(&which);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    paired();
}
