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

    /// Whether `ask` goes at the head of a call (the asks ahead of it in the line in the call
    /// before): the bucket's reservations that may wait, so that nothing in their call is
    /// ahead of them (see `bucket/line.rs`).
    fn leads(_ask: &Self::Ask) -> bool {
        false
    }

    /// How long a caller with no budget of its own (`budget` `None`) may wait in the line,
    /// from when it joined: the store's response timeout, the most any caller waits on the
    /// store (`None`: until its answer, which the calls' own timeouts bound).
    fn patience(&self) -> Option<Duration> {
        None
    }
}

/// The line, and whether a call is out.
#[derive(Debug)]
pub(crate) struct Line<T: Batched> {
    state: Mutex<LineState<T>>,
}

impl<T: Batched> Default for Line<T> {
    fn default() -> Self {
        let state =
            LineState { busy: false, waiting: VecDeque::new(), out_since: None, tickets: 0 };
        Self { state: Mutex::new(state) }
    }
}

/// An answer on its way to its caller, with what undoes it if the caller never reads it.
type Delivery<T> = (Decision<T>, Option<<T as Batched>::Guard>);

/// A caller waiting in the line: its request and where its answer goes.
#[derive(Debug)]
struct Waiter<T: Batched> {
    ask: T::Ask,
    tx: oneshot::Sender<Delivery<T>>,
    /// It has no budget of its own: turned away when the call ahead of it hangs.
    unbounded: bool,
    /// Its number in the line, to find it there.
    ticket: u64,
}

#[derive(Debug)]
struct LineState<T: Batched> {
    busy: bool,
    waiting: VecDeque<Waiter<T>>,
    /// When the call out started (`None` between calls).
    out_since: Option<tokio::time::Instant>,
    /// Tickets handed out so far.
    tickets: u64,
}

impl<T: Batched> Line<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, LineState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The call out hung or could not reach the server (see [`hung`]): the callers with no
    /// budget of their own waiting behind it are turned away with
    /// [`StoreError::Unavailable`] (not tried), as an open breaker turns callers away. They
    /// waited for that call, and each further call in a blackhole waits a whole response
    /// timeout: carried on, one behind `MAX_BATCH` others waited one more for every batch
    /// ahead of it (600 tries: 784 ms at a 200 ms timeout), not the one the store documents.
    /// Callers with a bound of their own stay: their bound ends their wait, and it alone
    /// says nothing about the server.
    fn turn_away(&self) {
        let gone: Vec<_> = {
            let mut line = self.lock();
            line.out_since = None;
            let all = core::mem::take(&mut line.waiting);
            let (gone, stay): (VecDeque<_>, VecDeque<_>) =
                all.into_iter().partition(|w| w.unbounded);
            line.waiting = stay;
            gone.into_iter().collect()
        };
        for w in gone {
            let _ = w.tx.send((Err(StoreError::Unavailable), None));
        }
    }
}

/// Whether `answers` of a call made with `budget` say the server is unreachable: a
/// connection error, or a timeout of a call with no budget of its own (so a whole response
/// timeout). A call cut short by its caller's bound says nothing.
fn hung<T: Batched>(answers: &[Decision<T>], budget: Option<Duration>) -> bool {
    match answers.first() {
        Some(Err(StoreError::Redis(_))) => true,
        Some(Err(StoreError::Timeout { .. })) => budget.is_none(),
        _ => false,
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
    /// The caller's `budget` ran out before the shared call answered (or, with no budget,
    /// its [`patience`](Batched::patience), behind calls not known to have hung): the call
    /// may still decide the request, and then its answer's guard ([`Batched::guard`]) or
    /// [`Batched::unclaimed`] undoes it (nobody else may, and nothing may be done again under
    /// its id: the two could cross).
    Abandoned,
}

/// Decides `ask`: in a call of its own when none is out, else in the next call with
/// everything else waiting. `budget` bounds the wait for the answer; past it the answer is
/// [`StoreError::Timeout`], and the request may still be decided (see [`Via`]).
///
/// With no budget (`None`), the wait is bounded by the store's response timeout from when
/// the caller joined the line ([`Batched::patience`]), as a call of its own would be: behind
/// a call that hangs, it is turned away with [`StoreError::Unavailable`] when that call
/// times out (a fault: the degraded policy answers, see [`Line::turn_away`]); still waiting
/// behind the very call that was out when it joined, which has then been out the whole
/// response timeout, likewise; otherwise (the calls ahead answered, or the one carrying it
/// has not yet timed out) it is [`StoreError::Timeout`] with [`Via::Abandoned`], which says
/// nothing about the server.
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
    let joined = tokio::time::Instant::now();
    let until = budget.and_then(|b| joined.checked_add(b));
    let patience = if budget.is_none() { this.patience() } else { None };
    let patient_until = patience.and_then(|p| joined.checked_add(p));
    loop {
        let (tx, rx) = oneshot::channel();
        let (alone, ticket) = {
            let mut line = this.line().lock();
            if line.busy {
                line.tickets += 1;
                let ticket = line.tickets;
                let unbounded = budget.is_none();
                line.waiting.push_back(Waiter { ask: ask.clone(), tx, unbounded, ticket });
                (false, ticket)
            } else {
                line.busy = true;
                line.out_since = Some(tokio::time::Instant::now());
                (true, 0)
            }
        };
        if alone {
            // On its own: this task makes the call, and its end (or its cancellation) hands
            // the line to a runner.
            *armed = true;
            let _busy = Busy(this);
            let left = until.map(|u| u.saturating_duration_since(tokio::time::Instant::now()));
            let budget = left.or(budget);
            let mut answers = this.call(core::slice::from_ref(&ask), true, budget).await;
            if hung::<T>(&answers, budget) {
                this.line().turn_away();
            }
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
            (None, _) => match (patience, patient_until) {
                (Some(p), Some(u)) => match tokio::time::timeout_at(u, rx).await {
                    Ok(a) => a,
                    Err(_) => return out_of_patience(this, ticket, joined, p),
                },
                _ => rx.await,
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

/// A caller with no budget whose [`patience`](Batched::patience) `p` ran out in the line
/// (joined at `joined`, as `ticket`): still in the line behind the call that was out when it
/// joined, that call has been out `p` and hung (a fault: [`StoreError::Unavailable`], nothing
/// tried for it); otherwise nothing is known of the server (the calls ahead answered, or the
/// one carrying it has not timed out yet): [`Via::Abandoned`], its answer undone if it comes.
fn out_of_patience<T: Batched>(
    this: &Arc<T>,
    ticket: u64,
    joined: tokio::time::Instant,
    p: Duration,
) -> (Decision<T>, Via) {
    let mut line = this.line().lock();
    let Some(at) = line.waiting.iter().position(|w| w.ticket == ticket) else {
        return (Err(StoreError::Timeout { after: p }), Via::Abandoned);
    };
    // Out of the line: no call carries it now.
    drop(line.waiting.remove(at));
    if line.out_since.is_some_and(|since| since <= joined) {
        return (Err(StoreError::Unavailable), Via::Shared);
    }
    (Err(StoreError::Timeout { after: p }), Via::Abandoned)
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
                if !asks.is_empty() && line.waiting.front().is_some_and(|w| T::leads(&w.ask)) {
                    break; // it heads the next call
                }
                let Some(w) = line.waiting.pop_front() else { break };
                // A caller that gave up before its call went out takes nothing.
                if !w.tx.is_closed() {
                    asks.push(w.ask);
                    txs.push(w.tx);
                }
            }
            if !asks.is_empty() {
                line.out_since = Some(tokio::time::Instant::now());
            }
            (asks, txs)
        };
        if asks.is_empty() {
            return; // `Busy` sees the line empty and frees it
        }
        (answered, lingered, idle, seen) = (asks.len(), 0, 0, 0);
        let answers = this.call(&asks, false, None).await;
        let hung = hung::<T>(&answers, None);
        if !hung {
            // Answered: nobody behind it waits behind a hung call.
            this.line().lock().out_since = None;
        }
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
        if hung {
            this.line().turn_away();
        }
    }
}

/// The call out; when it ends, the line goes to a runner, or is free if empty.
struct Busy<'a, T: Batched>(&'a Arc<T>);

impl<T: Batched> Drop for Busy<'_, T> {
    fn drop(&mut self) {
        let mut line = self.0.line().lock();
        line.out_since = None;
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
                for w in line.waiting.drain(..) {
                    let _ = w.tx.send((Err(StoreError::Unavailable), None));
                }
                line.busy = false;
            }
        }
    }
}
