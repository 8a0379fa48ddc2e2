//! The model's tries and settles in shared calls (the line itself is `crate::line`): one
//! `model_batch` call settles and tries a batch of this process's requests, and what the
//! server admitted for callers gone by the answer is given back.

use core::time::Duration;
use std::sync::Arc;

use super::{LimiterInner, ModelEntry};
use tollgate::model::Estimate;

use crate::error::StoreError;
use crate::line::{self, Batched, Line};
use crate::scripts::scripts;
use crate::store::{int, text};

/// One request of the line.
#[derive(Debug, Clone)]
pub(crate) enum Ask {
    /// Admit `tokens`, `input` of them input, under `id` now, or refuse (never queue).
    Try { id: String, tokens: u64, input: u64 },
    /// Settle the admission `id`: `mode` 0 to `actual` tokens (`input` of them input), 1
    /// release keeping the estimate, 2 undo (its tokens and its request given back).
    Settle { id: String, actual: u64, input: u64, mode: u8 },
}

/// The server's decision on one request: the call's instant, whether the model's state was
/// new, and the request's entries as `model_batch.lua` answers them (`v[0]` -2 for all when
/// another config is stored for the model).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer {
    pub(crate) now: i64,
    pub(crate) fresh: bool,
    pub(crate) v: [i64; 4],
}

impl Answer {
    /// A try's answer in `model_admit`'s form: `{1, now, at, lease_expiry, 0, fresh}` or
    /// `{0, now, ready_at, limit, why, fresh}`, or `{-2}`.
    pub(crate) fn admit_reply(&self) -> Vec<i64> {
        if self.v[0] == -2 {
            return vec![-2];
        }
        vec![self.v[0], self.now, self.v[1], self.v[2], self.v[3], i64::from(self.fresh)]
    }
}

/// An answer, or why there is none.
pub(crate) type Decision = line::Decision<ModelEntry>;

impl ModelEntry {
    /// `model_batch`'s arguments: `settles` (id, actual, actual input, mode) and `tries` (id,
    /// tokens, input).
    pub(crate) fn batch_args<'a>(
        &self,
        settles: impl ExactSizeIterator<Item = (&'a str, u64, u64, u8)>,
        tries: impl ExactSizeIterator<Item = (&'a str, u64, u64)>,
    ) -> Vec<Vec<u8>> {
        let (ns, nt) = (settles.len(), tries.len());
        let mut a = self.config_args.clone();
        a.reserve(7 + 4 * ns + 3 * nt);
        a.extend([
            int(self.config.max_parallel_requests),
            int(self.lease_ttl_us),
            int(self.state_ttl_ms),
            text(self.publish),
            text(&self.channel),
            int(ns),
            int(nt),
        ]);
        for (id, actual, input, mode) in settles {
            a.extend([text(id), int(actual), int(input), int(u64::from(mode))]);
        }
        for (id, tokens, input) in tries {
            a.extend([int(tokens), int(input), text(id)]);
        }
        a
    }
}

impl Batched for ModelEntry {
    type Ask = Ask;
    type Answer = Answer;

    fn line(&self) -> &Line<Self> {
        &self.line
    }

    async fn call(
        self: &Arc<Self>,
        asks: &[Ask],
        _alone: bool,
        budget: Option<Duration>,
    ) -> Vec<Decision> {
        let (mut settles, mut tries) = (Vec::new(), Vec::new());
        for a in asks {
            match a {
                Ask::Settle { id, actual, input, mode } => {
                    settles.push((id.as_str(), *actual, *input, *mode));
                }
                Ask::Try { id, tokens, input } => tries.push((id.as_str(), *tokens, *input)),
            }
        }
        let (ns, nt) = (settles.len(), tries.len());
        let args = self.batch_args(settles.into_iter(), tries.into_iter());
        let script = &scripts().model_batch;
        let store = &self.store.inner;
        // Admissions wait for the breaker; settles only give back, and always go.
        let reply = if nt > 0 {
            store.eval_admission(script, &self.keys, &args, budget).await
        } else {
            store.eval(script, &self.keys, &args, budget).await
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return vec![Err(e); asks.len()],
        };
        if reply.first() == Some(&-2) {
            let a = Answer { now: 0, fresh: false, v: [-2, 0, 0, 0] };
            return vec![Ok(a); asks.len()];
        }
        if reply.len() != 2 + 2 * ns + 4 * nt {
            let e = StoreError::Protocol(format!("model_batch: {reply:?}"));
            return vec![Err(e); asks.len()];
        }
        let (now, fresh) = (reply[0], reply[1] == 1);
        let (mut s, mut t) =
            (reply[2..2 + 2 * ns].chunks_exact(2), reply[2 + 2 * ns..].chunks_exact(4));
        asks.iter()
            .map(|a| {
                let v = match a {
                    Ask::Settle { .. } => s.next().map(|c| [c[0], c[1], 0, 0]),
                    Ask::Try { .. } => t.next().map(|c| [c[0], c[1], c[2], c[3]]),
                };
                v.map(|v| Answer { now, fresh, v })
                    .ok_or_else(|| StoreError::Protocol("model_batch: short reply".into()))
            })
            .collect()
    }

    fn patience(&self) -> Option<Duration> {
        // A caller with no bound of its own waits no longer in the line than on a call.
        Some(self.store.inner.options.response_timeout)
    }

    fn unclaimed(self: &Arc<Self>, _: Vec<(Ask, Decision, bool)>) {
        // Each try's guard undoes it (below), whether its caller was gone at the send or
        // cancelled before it read the answer.
    }

    type Guard = Undo;

    fn guard(self: &Arc<Self>, ask: &Ask, answer: &Decision) -> Option<Undo> {
        // A settle's caller gone: its permit's drop sends the settle again (it applies once).
        let Ask::Try { id, .. } = ask else { return None };
        // Admitted, or perhaps (the call failed after it went out): if nobody takes it over,
        // the admission is undone, its slot, tokens and request given back.
        let maybe = match answer {
            Ok(a) => a.v[0] == 1,
            Err(e) => *e != StoreError::Unavailable,
        };
        maybe.then(|| Undo { entry: self.clone(), id: id.clone(), armed: true })
    }

    fn disarm(mut guard: Undo) {
        guard.armed = false;
    }
}

/// Undoes a try's admission (through the janitor) unless its caller took it over.
#[derive(Debug)]
pub(crate) struct Undo {
    entry: Arc<ModelEntry>,
    id: String,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.armed {
            let job = LimiterInner::settle_job(&self.entry, &self.id, Estimate::default(), 2);
            self.entry.store.inner.later(job);
        }
    }
}
