//! Concurrent calls of one limit in this process, coalesced into few round trips: while a call
//! is out, a request that arrives waits in a line, and the next call carries everything in the
//! line at once (up to [`MAX_BATCH`]). The bucket's reservations (`bucket/line.rs`) and the
//! model's tries and settles (`model/line.rs`) each have a line per limit.
//!
//! Why: Redis runs scripts on one thread, and a call spends most of its time there on being a
//! call (its `redis.call`s and argument handling), not on the decision. Under concurrency that
//! thread, not the network, capped a shared bucket at about 120 000 decisions per second and a
//! model at about 23 000, for every process together. A call deciding many requests on one
//! read and one write of the state costs little more than a call deciding one, so the cap
//! moves to the client. A lone caller is never delayed: with nothing in flight it calls at
//! once. The server decides a call's requests in the line's order, and calls go one after
//! another, so this process's requests are never reordered.
//!
//! One call at a time, not several: with 8, 64 and 4 × 16 tasks on the bucket, before the
//! linger below, four calls in flight lost up to 48 % of the throughput and two up to 30 % in
//! one run, and were within noise of one call in another; never clearly better. Each call's
//! fixed cost (client and server) is what the machine runs out of. With the linger, two calls
//! in flight were again no better: 8 tasks 0.80× the no-op script (one call: 0.76×), 64 tasks
//! 1.00× (0.96×), 4 processes 0.90× (1.34×), p50 no lower. For the model's line, two in
//! flight (tried so that a try need not wait behind a settle's call) cut a lone task's p50
//! from 1.78× to 1.32× a `PING` and gave 8 tasks 29 % more, but the hostile crowd of
//! `tests/model_line.rs` then got 43–61 % of the possible against 72–89 %, with the server
//! answering `PING` slower: more, smaller calls. Not kept.

use core::future::Future;
use core::time::Duration;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::error::StoreError;

/// Requests in one call at most: bounds a call's arguments and its time on the server's
/// thread, so other clients' calls are never held up long.
pub(crate) const MAX_BATCH: usize = 256;

/// Yields a runner makes at most, after a call, for the callers it answered to ask again
/// before it sends the next call. Without it, the first caller back found the line free and
/// went alone, the rest went in the next call, and the two groups alternated: half the
/// throughput at 8 tasks on the bucket (52 000 against 85 000 decisions per second here),
/// depending on which worker thread each caller woke on. A yield costs about a microsecond,
/// and a runner lingers only after a call it shared.
const LINGER: u32 = 16;

/// An answer, or why there is none.
pub(crate) type Decision<T> = Result<<T as Batched>::Answer, StoreError>;

/// A limit whose requests can share calls: how one call decides a batch, and what to do with
/// the answers whose caller is gone.
pub(crate) trait Batched: Send + Sync + Sized + 'static {
    /// One request (cloned into the line: a caller may have to ask again).
    type Ask: Clone + Send + core::fmt::Debug + 'static;
    /// The server's decision on one request.
    type Answer: Clone + Send + core::fmt::Debug + 'static;

    /// This limit's line.
    fn line(&self) -> &Line<Self>;

    /// One call deciding `asks` in order: one decision per ask, or the store's error for each.
    /// `alone`: the caller's own call (nobody else in it); `budget` bounds the wait for the
    /// reply (`None`: the store's response timeout).
    fn call(
        self: &Arc<Self>,
        asks: &[Self::Ask],
        alone: bool,
        budget: Option<Duration>,
    ) -> impl Future<Output = Vec<Decision<Self>>> + Send;

    /// After a shared call: each ask with its decision, in order, and whether its caller took
    /// it (`false`: the caller was gone, and nobody else will undo what it got).
    fn unclaimed(self: &Arc<Self>, outcomes: Vec<(Self::Ask, Decision<Self>, bool)>);

    /// What undoes one decision of a shared call if it is dropped unread: it travels with the
    /// answer, so an answer sent to a caller that is cancelled before it reads it is undone
    /// too (the channel drops it), and the caller disarms it as it takes the answer over.
    type Guard: Send + core::fmt::Debug + 'static;

    /// The guard of `answer` to `ask`, if it took anything.
    fn guard(self: &Arc<Self>, ask: &Self::Ask, answer: &Decision<Self>) -> Option<Self::Guard>;

    /// The caller took the answer over: the guard must do nothing.
    fn disarm(guard: Self::Guard);

    /// The caller reads its answer: takes it over ([`disarm`](Self::disarm)) and says so, or
    /// finds it already given back (`false`; the bucket's next call gives back what the
    /// latest one's callers have not read yet, since it can undo only the latest call) and
    /// must ask again.
    fn take_over(guard: Self::Guard) -> bool {
        Self::disarm(guard);
        true
    }

    /// Whether answers of the latest call are still on their way to their callers, and the
    /// runner should give those a moment (a few yields, see [`LINGER`]) before its next call
    /// takes them back.
    fn unresolved(&self) -> bool {
        false
    }
}

/// The line, and whether a call is out.
#[derive(Debug)]
pub(crate) struct Line<T: Batched> {
    state: Mutex<LineState<T>>,
}

impl<T: Batched> Default for Line<T> {
    fn default() -> Self {
        Self { state: Mutex::new(LineState { busy: false, waiting: VecDeque::new() }) }
    }
}

/// An answer on its way to its caller, with what undoes it if the caller never reads it.
type Delivery<T> = (Decision<T>, Option<<T as Batched>::Guard>);

/// A caller waiting in the line: its request and where its answer goes.
type Waiter<T> = (<T as Batched>::Ask, oneshot::Sender<Delivery<T>>);

#[derive(Debug)]
struct LineState<T: Batched> {
    busy: bool,
    waiting: VecDeque<Waiter<T>>,
}

impl<T: Batched> Line<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, LineState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a request was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// In a call of the caller's own, made on the caller's task: dropping the caller drops
    /// the call, and the caller's own guard undoes what it may have got.
    Alone,
    /// In a shared call, made by the line's runner, whose answer the caller took.
    Shared,
    /// The caller's `budget` ran out before the shared call answered: the call may still
    /// decide the request, and then its answer's guard ([`Batched::guard`]) or
    /// [`Batched::unclaimed`] undoes it (nobody else may, and nothing may be done again under
    /// its id: the two could cross).
    Abandoned,
}

/// Decides `ask`: in a call of its own when none is out, else in the next call with
/// everything else waiting. `budget` bounds the wait for the answer (`None`: the store's
/// response timeout, which bounds every call); past it the answer is
/// [`StoreError::Timeout`], and the request may still be decided (see [`Via`]).
///
/// `armed` is the caller's guard: a caller that goes in the line disarms it before it waits,
/// because the runner undoes what the server gave to a caller gone by the answer. (Left
/// armed, the bucket's useless give-backs took the place of the runner's in the next call: a
/// crowd of cancelled tries lost 8–10 % of the rate.)
///
/// An answer whose give-back a later call already made (the caller had not read it by then,
/// see [`Batched::take_over`]) is not the caller's: it asks again, within what is left of
/// `budget`.
pub(crate) async fn decide<T: Batched>(
    this: &Arc<T>,
    ask: T::Ask,
    budget: Option<Duration>,
    armed: &mut bool,
) -> (Decision<T>, Via) {
    let until = budget.and_then(|b| tokio::time::Instant::now().checked_add(b));
    loop {
        let (tx, rx) = oneshot::channel();
        let alone = {
            let mut line = this.line().lock();
            if line.busy {
                line.waiting.push_back((ask.clone(), tx));
                false
            } else {
                line.busy = true;
                true
            }
        };
        if alone {
            // On its own: this task makes the call, and its end (or its cancellation) hands
            // the line to a runner.
            *armed = true;
            let _busy = Busy(this);
            let left = until.map(|u| u.saturating_duration_since(tokio::time::Instant::now()));
            let mut answers = this.call(core::slice::from_ref(&ask), true, left.or(budget)).await;
            let answer = answers.pop().unwrap_or(Err(StoreError::Protocol("no answer".into())));
            return (answer, Via::Alone);
        }
        *armed = false;
        let delivery = match (budget, until) {
            // The runner's call is bounded by the response timeout and always answers (or is
            // dropped with the runtime): no timer of our own needed.
            (Some(b), Some(u)) => match tokio::time::timeout_at(u, rx).await {
                Ok(a) => a,
                Err(_) => return (Err(StoreError::Timeout { after: b }), Via::Abandoned),
            },
            _ => rx.await,
        };
        match delivery {
            Ok((answer, guard)) => {
                // From here (no await before the caller re-arms its own guard) the caller
                // owns what the call did, unless it was given back already.
                if let Some(g) = guard
                    && !T::take_over(g)
                {
                    continue;
                }
                return (answer, Via::Shared);
            }
            // A dropped sender: the runtime is shutting down, nothing was decided.
            Err(_) => return (Err(StoreError::Unavailable), Via::Shared),
        }
    }
}

/// The calls for the line, one after another until it is empty; in a task of its own, so no
/// caller's cancellation can strand the others' answers.
async fn run_line<T: Batched>(this: Arc<T>) {
    let _busy = Busy(&this);
    // How many the last call answered: the callers it answered usually ask again at once,
    // and the next call waits (a few yields, see `LINGER`) for them to be back.
    let (mut answered, mut lingered, mut idle, mut seen) = (0_usize, 0_u32, 0_u32, 0_usize);
    loop {
        let waiting = this.line().lock().waiting.len();
        if waiting > seen {
            (seen, idle) = (waiting, 0);
        }
        // Not all back yet, still arriving, and not for long; or answers of the last call not
        // yet read (nor dropped), which the next call would take back.
        let unread = this.unresolved();
        if lingered < LINGER && (unread || (waiting < answered && idle < 2)) {
            lingered += 1;
            idle += 1;
            tokio::task::yield_now().await;
            continue;
        }
        let (asks, txs) = {
            let mut line = this.line().lock();
            let n = line.waiting.len().min(MAX_BATCH);
            let (mut asks, mut txs) = (Vec::with_capacity(n), Vec::with_capacity(n));
            while asks.len() < MAX_BATCH {
                let Some((ask, tx)) = line.waiting.pop_front() else { break };
                // A caller that gave up before its call went out takes nothing.
                if !tx.is_closed() {
                    asks.push(ask);
                    txs.push(tx);
                }
            }
            (asks, txs)
        };
        if asks.is_empty() {
            return; // `Busy` sees the line empty and frees it
        }
        (answered, lingered, idle, seen) = (asks.len(), 0, 0, 0);
        let answers = this.call(&asks, false, None).await;
        let outcomes = asks
            .into_iter()
            .zip(txs)
            .zip(answers)
            .map(|((ask, tx), answer)| {
                // Not taken (the caller is gone), the delivery comes back and is dropped here,
                // guard and all; taken, it is the caller's.
                let guard = this.guard(&ask, &answer);
                let claimed = tx.send((answer.clone(), guard)).is_ok();
                (ask, answer, claimed)
            })
            .collect();
        this.unclaimed(outcomes);
    }
}

/// The call out; when it ends, the line goes to a runner, or is free if empty.
struct Busy<'a, T: Batched>(&'a Arc<T>);

impl<T: Batched> Drop for Busy<'_, T> {
    fn drop(&mut self) {
        let mut line = self.0.line().lock();
        if line.waiting.is_empty() {
            line.busy = false;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                // Stays busy: the runner owns the line now.
                drop(runtime.spawn(run_line(self.0.clone())));
            }
            Err(_) => {
                // Only from a drop outside any runtime: nobody can make the call.
                for (_, tx) in line.waiting.drain(..) {
                    let _ = tx.send((Err(StoreError::Unavailable), None));
                }
                line.busy = false;
            }
        }
    }
}
