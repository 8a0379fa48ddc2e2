//! What the loom models share: a counting `model` runner and a loom-aware `block_on`.
// Each test file includes this module and uses what it needs.
#![allow(dead_code)]

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_util::task::{ArcWake, noop_waker, waker};
use loom::thread;

/// Loom executions explored, summed over the models (std atomic: outside the model).
static EXECUTIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs one loom model and prints how many executions it explored.
pub fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let before = EXECUTIONS.load(std::sync::atomic::Ordering::Relaxed);
    loom::model(move || {
        EXECUTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let runs = EXECUTIONS.load(std::sync::atomic::Ordering::Relaxed) - before;
    println!("loom model `{name}`: {runs} executions");
}

/// Wakes a loom thread. A wake-up that is lost leaves the thread parked forever, which loom
/// reports as a deadlock.
struct Unpark(thread::Thread);

impl ArcWake for Unpark {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.unpark();
    }
}

/// Drives `fut` on the current loom thread, parking while it is pending.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker: Waker = waker(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// Polls once with a waker that does nothing.
pub fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(&noop_waker()))
}
