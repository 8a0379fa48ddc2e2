//! Several worker processes share one model's budget through Redis, against a simulated
//! provider that answers 429 to any request over the limits.
//!
//! ```sh
//! cargo run -p tollgate-redis --example workers                       # starts its own redis-server
//! cargo run -p tollgate-redis --example workers -- redis://127.0.0.1:6379/ --workers 6 --seconds 20
//! ```
//!
//! The example runs itself again as each worker (`TOLLGATE_EXAMPLE_WORKER` set). Every worker
//! has its own `ModelRateLimiter` on the same namespace and model, so all of them draw on one
//! budget: 50 requests and 5 000 tokens per 2 s window, 6 requests in flight. Each of a worker's
//! tasks acquires a permit, calls the provider, and settles with the tokens the provider says it
//! used. The provider (in this process, on a loopback port) checks every request against the
//! same limits — counted at the instant the limiter admitted it, from the permit, in the Redis
//! server's clock — and answers 429 on any violation. The example prints progress, a table per
//! worker, and exits non-zero if the provider ever answered 429.
//!
//! `--unshared` gives each worker its own namespace, so each keeps its own books, as
//! independent in-process limiters would: the provider then answers 429 and the example fails.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::{TcpListener, TcpStream};
use tollgate::RateLimitConfig;
use tollgate::model::Limit;
use tollgate_redis::{ModelRateLimiter, RedisStore};

const MODEL: &str = "gpt-sim";
const NAMESPACE: &str = "example-workers";
const WINDOW: Duration = Duration::from_secs(2);
const REQUESTS: u64 = 50;
const TOKENS: u64 = 5_000;
const PARALLEL: u32 = 6;
const TASKS_PER_WORKER: u32 = 4;

/// The model's limits: short windows so that a run of a few seconds crosses several of them.
fn config() -> RateLimitConfig {
    RateLimitConfig {
        // The per-minute limits stay out of the way; the 2 s windows bind.
        rpm: 1_000_000,
        tpm: 1_000_000_000,
        max_parallel_requests: PARALLEL,
        limits: vec![
            Limit::requests("requests per 2 s", REQUESTS, WINDOW).with_slots(20),
            Limit::tokens("tokens per 2 s", TOKENS, WINDOW).with_slots(20),
        ],
        ..Default::default()
    }
}

fn main() -> ExitCode {
    if let Ok(id) = std::env::var("TOLLGATE_EXAMPLE_WORKER") {
        return worker(&id);
    }
    let mut args = std::env::args().skip(1);
    let (mut url, mut workers, mut seconds, mut unshared) = (None, 4_u32, 8_u64, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--workers" => workers = args.next().and_then(|v| v.parse().ok()).unwrap_or(workers),
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(seconds),
            "--unshared" => unshared = true,
            _ if a.starts_with("redis://") || a.starts_with("rediss://") => url = Some(a),
            other => {
                eprintln!(
                    "unknown argument {other:?}; usage: workers [REDIS_URL] [--workers N] [--seconds S] [--unshared]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let own = match url {
        Some(_) => None,
        None => match OwnServer::start() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("no Redis URL given and no redis-server to start: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let url = url.unwrap_or_else(|| own.as_ref().map(OwnServer::url).unwrap_or_default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(parent(url, workers, seconds, unshared));
    drop(own);
    code
}

/// The parent: the provider, the workers, progress and the table.
async fn parent(url: String, workers: u32, seconds: u64, unshared: bool) -> ExitCode {
    let provider = Arc::new(Provider::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("provider port");
    let addr = listener.local_addr().expect("provider address");
    tokio::spawn(serve(listener, provider.clone()));
    println!(
        "Redis {url}; provider on {addr}; model {MODEL}: {REQUESTS} requests and {TOKENS} tokens \
         per {WINDOW:?}, {PARALLEL} in flight; {workers} workers × {TASKS_PER_WORKER} tasks for \
         {seconds} s"
    );
    let end_at = unix_us() + 1_000_000 + seconds * 1_000_000;
    let exe = std::env::current_exe().expect("example binary");
    let children: Vec<Child> = (0..workers)
        .map(|id| {
            Command::new(&exe)
                .env("TOLLGATE_EXAMPLE_WORKER", id.to_string())
                .env("TOLLGATE_EXAMPLE_URL", &url)
                .env("TOLLGATE_EXAMPLE_PROVIDER", addr.to_string())
                .env("TOLLGATE_EXAMPLE_END_AT", end_at.to_string())
                .env("TOLLGATE_EXAMPLE_UNSHARED", if unshared { "1" } else { "0" })
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    let started = Instant::now();
    let progress = {
        let provider = provider.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                println!(
                    "  {:>4.1} s: {} answered, {} in flight, {} answered 429",
                    started.elapsed().as_secs_f64(),
                    provider.ok.load(Ordering::Relaxed),
                    provider.state.lock().expect("provider").in_flight,
                    provider.rejected.load(Ordering::Relaxed),
                );
            }
        })
    };
    let summaries = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|mut c| {
                let out = c.stdout.take().expect("worker stdout");
                let lines: Vec<String> =
                    BufReader::new(out).lines().map_while(Result::ok).collect();
                let ok = c.wait().is_ok_and(|s| s.success());
                (lines, ok)
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("workers");
    progress.abort();
    println!("\n| worker | admitted | tokens | 429s | mean wait | max wait | errors |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut failed = false;
    for (id, (lines, ok)) in summaries.iter().enumerate() {
        let Some(s) = lines.iter().find_map(|l| l.strip_prefix("SUMMARY ")) else {
            println!("| {id} | (no summary: the worker failed) | | | | | |");
            failed = true;
            continue;
        };
        let f: Vec<u64> = s.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        let [admitted, tokens, rejected, wait_sum_ms, wait_max_ms, errors] = f[..] else {
            failed = true;
            continue;
        };
        let mean = wait_sum_ms.checked_div(admitted).unwrap_or(0);
        println!(
            "| {id} | {admitted} | {tokens} | {rejected} | {mean} ms | {wait_max_ms} ms | {errors} |"
        );
        failed |= !ok || errors > 0;
    }
    let (ok, rejected) =
        (provider.ok.load(Ordering::Relaxed), provider.rejected.load(Ordering::Relaxed));
    println!(
        "\nprovider: {ok} answered, {rejected} answered 429 ({} s; at most {REQUESTS} requests \
         and {TOKENS} tokens in any {WINDOW:?})",
        started.elapsed().as_secs()
    );
    for why in provider.state.lock().expect("provider").why.iter().take(5) {
        println!("  429: {why}");
    }
    if rejected > 0 || failed {
        println!("FAILED: the shared budget was overrun (or a worker failed)");
        ExitCode::FAILURE
    } else {
        println!("OK: no request over the limits across {} processes", summaries.len());
        ExitCode::SUCCESS
    }
}

/// The simulated provider: the limits, checked per request at its admission instant.
#[derive(Default)]
struct Provider {
    ok: AtomicU64,
    rejected: AtomicU64,
    state: Mutex<ProviderState>,
}

#[derive(Default)]
struct ProviderState {
    in_flight: u64,
    /// (admitted at, server µs; tokens charged) of every request so far.
    log: Vec<(u64, u64)>,
    why: Vec<String>,
}

impl ProviderState {
    /// The most a window `[t, t + WINDOW)` containing `at` would hold with this request added.
    fn busiest_with(&self, at: u64, tokens: u64) -> (u64, u64) {
        let w = u64::try_from(WINDOW.as_micros()).expect("µs");
        let lo = at.saturating_sub(w - 1);
        let (mut most_requests, mut most_tokens) = (0, 0);
        // A window's count changes only where a request starts: try each start in range.
        let starts = self.log.iter().map(|e| e.0).filter(|s| (lo..=at).contains(s)).chain([at]);
        for t in starts {
            let inside = self.log.iter().filter(|e| (t..t + w).contains(&e.0));
            let (r, k) = inside.fold((1, tokens), |(r, k), e| (r + 1, k + e.1));
            most_requests = most_requests.max(r);
            most_tokens = most_tokens.max(k);
        }
        (most_requests, most_tokens)
    }

    /// One request: `Ok` or the reason for a 429.
    fn begin(&mut self, at: u64, tokens: u64) -> Result<(), String> {
        if self.in_flight + 1 > u64::from(PARALLEL) {
            return Err(format!("{} in flight (limit {PARALLEL})", self.in_flight + 1));
        }
        let (requests, charged) = self.busiest_with(at, tokens);
        if requests > REQUESTS {
            return Err(format!("{requests} requests in one window (limit {REQUESTS})"));
        }
        if charged > TOKENS {
            return Err(format!("{charged} tokens in one window (limit {TOKENS})"));
        }
        self.in_flight += 1;
        self.log.push((at, tokens));
        Ok(())
    }

    /// The end of a request admitted at `at`: its charge becomes what it used.
    fn end(&mut self, at: u64, estimated: u64, used: u64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(e) = self.log.iter_mut().find(|e| e.0 == at && e.1 == estimated) {
            e.1 = used;
        }
    }
}

/// Provider protocol, one line each way: `CALL <admitted_at_us> <estimated>` → `200 <used>` or
/// `429 <why>`; then `DONE <admitted_at_us> <estimated> <used>` → `OK`.
async fn serve(listener: TcpListener, provider: Arc<Provider>) {
    while let Ok((stream, _)) = listener.accept().await {
        let provider = provider.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut lines = TokioBufReader::new(rd).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let f: Vec<&str> = line.split_whitespace().collect();
                let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
                let reply = match f.first().copied() {
                    Some("CALL") => {
                        let (at, est) = (num(1), num(2));
                        let verdict = provider.state.lock().expect("provider").begin(at, est);
                        match verdict {
                            Ok(()) => {
                                provider.ok.fetch_add(1, Ordering::Relaxed);
                                // The model used 60–100 % of the estimate.
                                format!("200 {}\n", est * (60 + at % 41) / 100)
                            }
                            Err(why) => {
                                provider.rejected.fetch_add(1, Ordering::Relaxed);
                                provider.state.lock().expect("provider").why.push(why.clone());
                                format!("429 {why}\n")
                            }
                        }
                    }
                    Some("DONE") => {
                        provider.state.lock().expect("provider").end(num(1), num(2), num(3));
                        "OK\n".to_owned()
                    }
                    _ => "400\n".to_owned(),
                };
                if wr.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A worker process: `TASKS_PER_WORKER` tasks calling the provider until the end instant.
fn worker(id: &str) -> ExitCode {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("worker: {k} not set"));
    let url = var("TOLLGATE_EXAMPLE_URL");
    let provider: SocketAddr = var("TOLLGATE_EXAMPLE_PROVIDER").parse().expect("provider address");
    let end_at: u64 = var("TOLLGATE_EXAMPLE_END_AT").parse().expect("end instant");
    let seed: u64 = id.parse().unwrap_or(0);
    // Unshared: a namespace per worker, so no worker sees another's requests.
    let namespace = match var("TOLLGATE_EXAMPLE_UNSHARED").as_str() {
        "1" => format!("{NAMESPACE}-{id}"),
        _ => NAMESPACE.to_owned(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = match RedisStore::connect(&url).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("worker {id}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let limiter = ModelRateLimiter::builder(store, &namespace)
            .model(MODEL, config())
            .build()
            .expect("the example's config is valid");
        let end =
            tokio::time::Instant::now() + Duration::from_micros(end_at.saturating_sub(unix_us()));
        let mut tasks = Vec::new();
        for t in 0..TASKS_PER_WORKER {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::open(provider).await;
                let mut s = [0_u64; 6]; // admitted, tokens, 429s, wait sum, wait max, errors
                let mut n = seed * 1_000 + u64::from(t);
                loop {
                    n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let est = 50 + (n >> 33) % 151; // 50..=200 tokens
                    let asked = Instant::now();
                    // The end of the run cancels waiting acquires (that costs no capacity).
                    let Ok(acquired) =
                        tokio::time::timeout_at(end, limiter.acquire(MODEL, est)).await
                    else {
                        break;
                    };
                    let permit = match acquired {
                        Ok(p) => p,
                        Err(e) => {
                            eprintln!("worker {t}: {e}");
                            s[5] += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let waited = u64::try_from(asked.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let at = permit.admitted_at_server_micros().map_or(0, |t| t.unsigned_abs());
                    let reply = conn.call(&format!("CALL {at} {est}")).await;
                    // The call itself: 20–80 ms.
                    tokio::time::sleep(Duration::from_millis(20 + (n >> 40) % 61)).await;
                    let used = match reply.strip_prefix("200 ") {
                        Some(u) => u.parse().unwrap_or(est),
                        None => {
                            s[2] += 1;
                            est
                        }
                    };
                    conn.call(&format!("DONE {at} {est} {used}")).await;
                    if permit.settle(used).await.is_err() {
                        s[5] += 1;
                    }
                    s[0] += 1;
                    s[1] += used;
                    s[3] += waited;
                    s[4] = s[4].max(waited);
                }
                s
            }));
        }
        let mut total = [0_u64; 6];
        for t in tasks {
            let s = t.await.expect("worker task");
            for i in 0..6 {
                total[i] = if i == 4 { total[i].max(s[i]) } else { total[i] + s[i] };
            }
        }
        let t = total.map(|x| x.to_string()).join(" ");
        println!("SUMMARY {t}");
        ExitCode::SUCCESS
    })
}

/// One line-protocol connection to the provider.
struct Conn {
    rd: tokio::io::Lines<TokioBufReader<tokio::net::tcp::OwnedReadHalf>>,
    wr: tokio::net::tcp::OwnedWriteHalf,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect to the provider");
        let (rd, wr) = stream.into_split();
        Conn { rd: TokioBufReader::new(rd).lines(), wr }
    }

    async fn call(&mut self, line: &str) -> String {
        self.wr.write_all(format!("{line}\n").as_bytes()).await.expect("provider write");
        self.rd.next_line().await.ok().flatten().unwrap_or_default()
    }
}

fn unix_us() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    u64::try_from(d.as_micros()).expect("µs fit")
}

/// A redis-server this example started (no URL given), on a free port, killed on drop.
struct OwnServer {
    child: Child,
    port: u16,
}

impl OwnServer {
    fn start() -> Result<OwnServer, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e} (install it, or pass a redis:// URL)"))?;
        let server = OwnServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(server.url()).map_err(|e| e.to_string())?;
        while client
            .get_connection()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err()
        {
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("started redis-server on port {port}");
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
