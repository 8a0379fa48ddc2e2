//! The per-request cost of a per-IP HTTP rate-limit layer on the allowed path: one axum router
//! (`GET /` answering "ok"), called in-process with `tower::ServiceExt::oneshot` and axum's
//! `ConnectInfo<SocketAddr>` set, bare, under `tollgate_tokio::http::HttpRateLimitLayer`
//! (`PeerIp`) on tokio's clock and on the time-stamp counter (`TokioTimer::tsc`, the clock
//! tower_governor reads), and under `tower_governor`'s `GovernorLayer` (`PeerIpKeyExtractor`).
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
//! Run: `cargo bench -p tollgate-tokio --features axum,quanta --bench http_layer -- --warm-up-time 1 --measurement-time 3`;
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

/// `tollgate()` on the time-stamp counter (`TokioTimer::tsc`), the clock tower_governor reads
/// (governor's default, quanta's TSC clock).
fn tollgate_tsc() -> Router {
    let timer = tollgate_tokio::TokioTimer::tsc();
    let layer =
        HttpRateLimitLayer::try_with_timer(PeerIp, Rate::per_second(1_000), BURST.into(), timer);
    bare().layer(layer.expect("a valid layer"))
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
    for router in [tollgate(), tollgate_tsc(), governor()] {
        rt.block_on(async {
            let mut request = Request::builder().uri("/").body(Body::empty()).unwrap();
            request.extensions_mut().insert(ConnectInfo(one[0]));
            assert_eq!(router.oneshot(request).await.unwrap().status(), StatusCode::OK);
        });
    }
    for (name, peers) in [("one peer", &one[..]), ("1024 peers", &many[..])] {
        let mut group = c.benchmark_group(format!("http_layer/{name}"));
        for (layer, router) in [
            ("bare", bare()),
            ("tollgate", tollgate()),
            ("tollgate_tsc", tollgate_tsc()),
            ("tower_governor", governor()),
        ] {
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
        // Bare first, tower_governor last: each round times them all, in rotating order.
        let routers = [
            ("tollgate", form(tollgate())),
            ("tollgate on the TSC", form(tollgate_tsc())),
            ("tower_governor", form(governor())),
            ("bare", form(bare())),
        ];
        let n = routers.len();
        let (bare_at, governor_at) = (n - 1, n - 2);
        let mut ns = vec![Vec::new(); n];
        for round in 0..ROUNDS {
            for k in 0..n {
                let i = (round + k) % n;
                let took = run(&rt, &routers[i].1, peers, PER_ROUND);
                ns[i].push(took.as_nanos() as f64 / PER_ROUND as f64);
            }
        }
        let over = |i: usize| median(ns[i].iter().zip(&ns[bare_at]).map(|(l, b)| l - b).collect());
        let over_g = over(governor_at);
        let mut line = format!(
            "paired {name}: bare {:.0} ns, tower_governor {:.0} ns (+{over_g:.0})",
            median(ns[bare_at].clone()),
            median(ns[governor_at].clone()),
        );
        for (i, (layer, _)) in routers.iter().enumerate().take(governor_at) {
            let ratio = median(ns[i].iter().zip(&ns[governor_at]).map(|(t, g)| t / g).collect());
            line += &format!(
                "; {layer} {:.0} ns (+{:.0}): {ratio:.3}x governor per request, {:.2}x overhead",
                median(ns[i].clone()),
                over(i),
                over(i) / over_g,
            );
        }
        println!("{line}");
    }
}

criterion_group!(benches, bench);

/// `HTTP_LAYER_PROFILE=<bare|tollgate|tollgate_tsc|tollgate_reporting|tower_governor>`: only that router,
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
        "tollgate_tsc" => tollgate_tsc(),
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
