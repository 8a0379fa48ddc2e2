//! A TCP fault proxy between a Redis client and its server, switchable at run time.
//!
//! The proxy runs on its own thread with its own runtime, so it keeps forwarding while the test
//! blocks (waiting on child processes, sleeping on a std clock) and whatever runtime the test
//! uses. Modes model what a network does to an idle-looking client:
//!
//! - [`Mode::Forward`]: bytes pass both ways.
//! - [`Mode::Delay`]: every chunk is held for a fixed time before it is passed on (a latency, not
//!   a throughput cap: chunks keep their order and overlap their delays).
//! - [`Mode::Blackhole`]: new connections are accepted and read, nothing is ever answered; bytes
//!   of open connections are read and dropped. Leaving this mode cuts every connection that lived
//!   through it, as a TCP stack whose retransmissions timed out would: a byte stream with a hole
//!   in the middle must never be handed on (the client would pair replies with the wrong calls).
//! - [`Mode::Refuse`]: the listening socket is closed (connects get `ECONNREFUSED`) and every
//!   open connection is cut; leaving the mode listens again on the same port.
#![allow(dead_code)] // each test binary uses its own part of the support code

use core::net::SocketAddr;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the proxy does to traffic; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Pass bytes both ways.
    Forward,
    /// Pass bytes both ways, each chunk this much later.
    Delay(Duration),
    /// Accept and read, never answer.
    Blackhole,
    /// Refuse new connections and cut open ones.
    Refuse,
}

#[derive(Clone, Copy, Debug)]
struct State {
    mode: Mode,
    /// Connections opened under an older epoch close themselves.
    epoch: u64,
    shutdown: bool,
}

/// A running proxy; dropping it closes every connection and stops its thread.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accepted: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy in front of the server on loopback port `port`.
    pub fn in_front_of(port: u16) -> FaultProxy {
        FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Starts a proxy on a free loopback port, forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("proxy: bind a loopback port");
        std_listener.set_nonblocking(true).expect("proxy: non-blocking listener");
        let addr = std_listener.local_addr().expect("proxy: local address");
        let (state, rx) = watch::channel(State { mode: Mode::Forward, epoch: 0, shutdown: false });
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy: runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("proxy: listener");
                    serve(listener, addr, upstream, rx, counter).await;
                });
            })
            .expect("proxy: spawn thread");
        FaultProxy { addr, state, accepted, thread: Some(thread) }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `redis://` URL through the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.state.borrow().mode
    }

    /// Switches the mode (see the module docs for what each switch does to open connections).
    pub fn set_mode(&self, mode: Mode) {
        self.state.send_modify(|s| {
            let cut = matches!(mode, Mode::Refuse)
                || (s.mode == Mode::Blackhole && mode != Mode::Blackhole);
            if cut {
                s.epoch += 1;
            }
            s.mode = mode;
        });
    }

    /// Cuts every open connection now, whatever the mode.
    pub fn cut(&self) {
        self.state.send_modify(|s| s.epoch += 1);
    }

    /// How many client connections the proxy has accepted so far (reconnects show here).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.send_modify(|s| {
            s.shutdown = true;
            s.epoch += 1;
        });
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until shutdown; closes the listener while refusing.
async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut state: watch::Receiver<State>,
    accepted: Arc<AtomicU64>,
) {
    let mut listener = Some(listener);
    loop {
        let now = *state.borrow_and_update();
        if now.shutdown {
            return;
        }
        match (&listener, now.mode) {
            (Some(_), Mode::Refuse) => listener = None,
            (None, mode) if mode != Mode::Refuse => listener = Some(rebind(addr).await),
            _ => {}
        }
        let Some(l) = &listener else {
            if state.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            changed = state.changed() => if changed.is_err() { return },
            conn = l.accept() => {
                let Ok((client, _)) = conn else { continue };
                accepted.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                tokio::spawn(connection(client, upstream, state.clone(), now));
            }
        }
    }
}

/// Listens on `addr` again after a refusal (the same port, so the client's URL stays valid).
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..200 {
        let bound = TcpSocket::new_v4().and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(128)
        });
        if let Ok(listener) = bound {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("proxy: could not listen on {addr} again after refusing");
}

/// One client connection: an upstream connection unless it was accepted into a blackhole.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    state: watch::Receiver<State>,
    at_accept: State,
) {
    let epoch = at_accept.epoch;
    if at_accept.mode == Mode::Blackhole {
        let (mut rd, _wr) = client.into_split();
        let mut buf = vec![0_u8; 16 * 1024];
        tokio::select! {
            () = async { while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {} } => {}
            () = cut_signal(state, epoch) => {}
        }
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = server.set_nodelay(true);
    let (crd, cwr) = client.into_split();
    let (srd, swr) = server.into_split();
    tokio::select! {
        () = direction(crd, swr, state.clone()) => {}
        () = direction(srd, cwr, state.clone()) => {}
        () = cut_signal(state, epoch) => {}
    }
}

/// Resolves when the connection opened under `epoch` must close.
async fn cut_signal(mut state: watch::Receiver<State>, epoch: u64) {
    loop {
        if state.borrow_and_update().epoch != epoch {
            return;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

/// Copies one direction: the reader stamps each chunk with its delivery time, the writer holds
/// it until then, so a delay is a latency (chunks overlap their waits) and keeps the order.
async fn direction(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    state: watch::Receiver<State>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0_u8; 64 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = match state.borrow().mode {
                Mode::Forward => Instant::now(),
                Mode::Delay(d) => Instant::now() + d,
                Mode::Blackhole => continue,
                Mode::Refuse => return,
            };
            if tx.send((at, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::join!(reader, writer);
}
