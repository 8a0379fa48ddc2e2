//! An axum server with two limits: every client address gets a refusing per-IP bucket (429
//! with `Retry-After` and the `RateLimit` fields beyond it), and `/api` requests also draw on
//! a per-API-key bucket that waits up to a bound before refusing.
//!
//! Run it with `cargo run -p tollgate-tokio --example axum_server --features axum`, then
//! `curl -i http://127.0.0.1:3000/` and `curl -i -H 'x-api-key: alice' http://127.0.0.1:3000/api/hello`.
//! `tests/http_server.rs` drives the same router with real clients.

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::get;
use tollgate_tokio::http::{HeaderKey, HttpRateLimitLayer, PeerIp};
use tollgate_tokio::{KeyedRateLimiter, Rate};

/// The two limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per client address, refusing.
    pub per_ip: (Rate, u64),
    /// Per API key, waiting up to `max_wait`.
    pub per_key: (Rate, u64),
    /// The longest a keyed request waits for its token.
    pub max_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_ip: (Rate::per_second(20), 10),
            per_key: (Rate::per_second(5), 2),
            max_wait: Duration::from_millis(250),
        }
    }
}

/// What the handlers saw: requests served per client address and per API key, with when.
#[derive(Debug, Default)]
pub struct Served {
    /// Handler calls per peer address (every route).
    pub by_ip: HashMap<IpAddr, Vec<tokio::time::Instant>>,
    /// Handler calls per API key (`/api` only).
    pub by_key: HashMap<String, Vec<tokio::time::Instant>>,
}

/// The router, and its limiters (to watch their live keys).
#[derive(Debug)]
pub struct App {
    /// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
    pub router: Router,
    /// The per-IP limiter.
    pub per_ip: Arc<KeyedRateLimiter<IpAddr>>,
    /// The per-key limiter.
    pub per_key: Arc<KeyedRateLimiter<HeaderValue>>,
    /// The handlers' log.
    pub served: Arc<Mutex<Served>>,
}

/// Builds the router with `limits`.
pub fn app(limits: Limits) -> App {
    let per_ip = HttpRateLimitLayer::new(PeerIp, limits.per_ip.0, limits.per_ip.1)
        .policy_name("per-ip")
        .expect("a valid policy name");
    let per_key =
        HttpRateLimitLayer::new(HeaderKey::new("x-api-key"), limits.per_key.0, limits.per_key.1)
            .max_wait(limits.max_wait) // no key: 400 Bad Request (the default)
            .policy_name("per-key")
            .expect("a valid policy name")
            .report_on_success(true);
    let served = Arc::new(Mutex::new(Served::default()));
    let (ip_limiter, key_limiter) = (Arc::clone(per_ip.limiter()), Arc::clone(per_key.limiter()));

    let api = Router::new().route("/api/hello", get(api_hello)).layer(per_key);
    let router = Router::new()
        .route("/", get(root))
        .merge(api)
        .layer(per_ip) // outermost: a refused address never reaches the per-key line
        .with_state(Arc::clone(&served));
    App { router, per_ip: ip_limiter, per_key: key_limiter, served }
}

async fn root(
    State(served): State<Arc<Mutex<Served>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> &'static str {
    let now = tokio::time::Instant::now();
    served.lock().expect("not poisoned").by_ip.entry(peer.ip()).or_default().push(now);
    "hello\n"
}

async fn api_hello(
    State(served): State<Arc<Mutex<Served>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> String {
    let now = tokio::time::Instant::now();
    // The per-key layer let it through, so the header is there and single.
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut served = served.lock().expect("not poisoned");
    served.by_ip.entry(peer.ip()).or_default().push(now);
    served.by_key.entry(key.clone()).or_default().push(now);
    format!("hello, {key}\n")
}

#[allow(dead_code)] // `tests/http_server.rs` includes this file for `app` alone
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000)));
    let App { router, .. } = app(Limits::default());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await
}
