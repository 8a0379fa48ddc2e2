//! One bucket's reservations in this process, coalesced into few calls: while a call is out,
//! a reservation that arrives waits in a line, and the next call carries everything in the
//! line at once (up to [`MAX_BATCH`]).
//!
//! Why: Redis runs scripts on one thread, and a bucket call spends about 7 µs of it, almost
//! all on the call itself (its `redis.call`s and argument handling) rather than on the GCRA
//! arithmetic. Under concurrency that thread, not the network, capped a shared bucket at
//! about 120 000 decisions per second for every process together. A call deciding many
//! reservations on one read and one write costs little more than a call deciding one, so the
//! cap moves to the client. A lone caller is never delayed: with nothing in flight it calls at
//! once, exactly as before. The server decides the reservations of a call in the line's order,
//! and calls go one after another, so this process's requests are never reordered.
//!
//! One call at a time, not several: with 8, 64 and 4 × 16 tasks, before the linger below,
//! four calls in flight lost up to 48 % of the throughput and two up to 30 % in one run, and
//! were within noise of one call in another; never clearly better. Each call's fixed cost
//! (client and server) is what the machine runs out of. With the linger, two calls in flight
//! were again no better: 8 tasks 0.80× the no-op script (one call: 0.76×), 64 tasks 1.00×
//! (0.96×), 4 processes 0.90× (1.34×), p50 no lower.

use core::time::Duration;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::BucketInner;
use crate::error::StoreError;

/// Reservations in one call at most: bounds a call's arguments and its time on the server's
/// thread (well under a microsecond per reservation), so other clients' calls are never held
/// up long.
const MAX_BATCH: usize = 256;

/// Yields a runner makes at most, after a call, for the callers it answered to ask again
/// before it sends the next call. Without it, the first caller back found the line free and
/// went alone, the rest went in the next call, and the two groups alternated: half the
/// throughput at 8 tasks (52 000 against 85 000 decisions per second here), depending on
/// which worker thread each caller woke on. A yield costs about a microsecond, and a runner
/// lingers only after a call it shared.
const LINGER: u32 = 16;

/// One reservation to decide: `k` tokens, waiting at most `max_wait` µs (`None`: unbounded;
/// `Some(0)`: a try), under request id `id` (the call's name when it goes alone).
#[derive(Debug, Clone)]
pub(super) struct Ask {
    pub(super) k: u64,
    pub(super) max_wait: Option<u64>,
    pub(super) id: String,
}

/// The server's decision on one reservation: `code` and `wait` as `gcra_reserve.lua`
/// answers them, and the name of the call that made it (what a cancellation gives back).
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub(super) code: i64,
    pub(super) wait: i64,
    pub(super) call: Arc<str>,
}

/// An answer, or why there is none.
pub(super) type Decision = Result<Answer, StoreError>;

/// The line, and whether a call is out.
#[derive(Debug, Default)]
pub(super) struct Line {
    state: Mutex<LineState>,
}

#[derive(Debug, Default)]
struct LineState {
    busy: bool,
    waiting: VecDeque<(Ask, oneshot::Sender<Decision>)>,
}

impl Line {
    fn lock(&self) -> std::sync::MutexGuard<'_, LineState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BucketInner {
    /// Decides `ask`: in a call of its own when none is out, else in the next call with
    /// everything else waiting. `budget` bounds the wait for the answer (`None`: the store's
    /// response timeout, which bounds every call); past it the answer is
    /// [`StoreError::Timeout`], and the reservation may still be made (the caller's guard
    /// gives it back).
    ///
    /// `armed` is the caller's guard: a caller that goes in the line disarms it before it
    /// waits, because its own give-back could only name its request (a call of its own), and
    /// the runner gives back what the server gave to a caller gone meanwhile. (Left armed,
    /// those useless give-backs took the place of the runner's in the next call: a crowd of
    /// cancelled tries lost 8–10 % of the rate.)
    pub(super) async fn decide(
        self: &Arc<Self>,
        ask: Ask,
        budget: Option<Duration>,
        armed: &mut bool,
    ) -> Decision {
        let queued = {
            let mut line = self.line.lock();
            if line.busy {
                let (tx, rx) = oneshot::channel();
                line.waiting.push_back((ask.clone(), tx));
                Some(rx)
            } else {
                line.busy = true;
                None
            }
        };
        let Some(rx) = queued else {
            // Alone: the caller's guard undoes this call if the caller is dropped in flight.
            // On its own: this task makes the call, and its end (or its cancellation) hands
            // the line to a runner.
            let _busy = Busy(self);
            let call: Arc<str> = Arc::from(ask.id.as_str());
            let mut answers = self.call(core::slice::from_ref(&ask), &call, budget).await;
            return answers.pop().unwrap_or(Err(StoreError::Protocol("no answer".into())));
        };
        *armed = false;
        let answer = match budget {
            // The runner's call is bounded by the response timeout and always answers (or is
            // dropped with the runtime): no timer of our own needed.
            None => rx.await,
            Some(b) => match tokio::time::timeout(b, rx).await {
                Ok(a) => a,
                Err(_) => return Err(StoreError::Timeout { after: b }),
            },
        };
        // A dropped sender: the runtime is shutting down, nothing was decided.
        answer.unwrap_or(Err(StoreError::Unavailable))
    }

    /// The calls for the line, one after another until it is empty; in a task of its own, so
    /// no caller's cancellation can strand the others' answers.
    async fn run_line(self: Arc<Self>) {
        let _busy = Busy(&self);
        // How many the last call answered: the callers it answered usually ask again at
        // once, and the next call waits (a few yields, see `LINGER`) for them to be back.
        let (mut answered, mut lingered, mut idle, mut seen) = (0_usize, 0_u32, 0_u32, 0_usize);
        loop {
            let waiting = self.line.lock().waiting.len();
            if waiting > seen {
                (seen, idle) = (waiting, 0);
            }
            // Not all back yet, still arriving, and not for long.
            if waiting < answered && lingered < LINGER && idle < 2 {
                lingered += 1;
                idle += 1;
                tokio::task::yield_now().await;
                continue;
            }
            let batch: Vec<(Ask, oneshot::Sender<Decision>)> = {
                let mut line = self.line.lock();
                let mut batch = Vec::with_capacity(line.waiting.len().min(MAX_BATCH));
                while batch.len() < MAX_BATCH {
                    let Some((ask, tx)) = line.waiting.pop_front() else { break };
                    // A caller that gave up before its call went out takes nothing.
                    if !tx.is_closed() {
                        batch.push((ask, tx));
                    }
                }
                batch
            };
            if batch.is_empty() {
                return; // `Busy` sees the line empty and frees it
            }
            (answered, lingered, idle, seen) = (batch.len(), 0, 0, 0);
            let asks: Vec<Ask> = batch.iter().map(|(a, _)| a.clone()).collect();
            let call: Arc<str> = Arc::from(self.store.inner.new_id());
            let answers = self.call(&asks, &call, None).await;
            // Tokens the server gave to callers gone meanwhile: given back below. (Their own
            // guards cannot: they never learnt which call carried them.)
            let (mut unclaimed, mut exact) = (0_u64, true);
            for ((ask, tx), answer) in batch.into_iter().zip(answers) {
                let reserved = matches!(&answer, Ok(a) if a.code == 1);
                let sleeps = matches!(&answer, Ok(a) if a.code == 1 && a.wait > 0);
                if tx.send(answer).is_err() && reserved {
                    unclaimed += ask.k;
                } else if sleeps && unclaimed > 0 {
                    // A waiter's place counts the unclaimed tokens before it: taking them off
                    // would let a later caller in beside it.
                    exact = false;
                }
            }
            if unclaimed > 0 && exact {
                self.give_back(unclaimed, &call);
            }
        }
    }
}

/// The call out; when it ends, the line goes to a runner, or is free if empty.
struct Busy<'a>(&'a Arc<BucketInner>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut line = self.0.line.lock();
        if line.waiting.is_empty() {
            line.busy = false;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                // Stays busy: the runner owns the line now.
                drop(runtime.spawn(self.0.clone().run_line()));
            }
            Err(_) => {
                // Only from a drop outside any runtime: nobody can make the call.
                for (_, tx) in line.waiting.drain(..) {
                    let _ = tx.send(Err(StoreError::Unavailable));
                }
                line.busy = false;
            }
        }
    }
}
