//! The bucket's reservations in shared calls (the line itself is `crate::line`): one
//! `gcra_reserve` call decides a batch in order, and the tokens the server gave to callers
//! gone by the answer are given back.

use core::time::Duration;
use std::sync::Arc;

use super::BucketInner;
use crate::line::{self, Batched, Line};

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
pub(super) type Decision = line::Decision<BucketInner>;

impl Batched for BucketInner {
    type Ask = Ask;
    type Answer = Answer;

    fn line(&self) -> &Line<Self> {
        &self.line
    }

    async fn call(
        self: &Arc<Self>,
        asks: &[Ask],
        alone: bool,
        budget: Option<Duration>,
    ) -> Vec<Decision> {
        // Alone, the call is named by the request: the caller's guard gives back by that name.
        let call: Arc<str> = if alone {
            Arc::from(asks[0].id.as_str())
        } else {
            Arc::from(self.store.inner.new_id())
        };
        self.reserve(asks, &call, budget).await
    }

    // The bucket gives back by call, all of a call's unclaimed tokens at once (an undo names
    // the call, and only the latest one's): one guard per answer cannot. An answer sent to a
    // caller cancelled before it reads it keeps its tokens (rare: the window between the send
    // and the caller's next poll).
    type Guard = ();

    fn guard(self: &Arc<Self>, _: &Ask, _: &Decision) -> Option<()> {
        None
    }

    fn disarm((): ()) {}

    fn unclaimed(self: &Arc<Self>, outcomes: Vec<(Ask, Decision, bool)>) {
        // Tokens the server gave to callers gone meanwhile. (Their own guards cannot give
        // them back: they never learnt which call carried them.)
        let (mut unclaimed, mut exact, mut call) = (0_u64, true, None);
        for (ask, answer, claimed) in outcomes {
            let Ok(a) = answer else { continue };
            call.get_or_insert(a.call.clone());
            if a.code != 1 {
                continue;
            }
            if !claimed {
                unclaimed += ask.k;
            } else if a.wait > 0 && unclaimed > 0 {
                // A waiter's place counts the unclaimed tokens before it: taking them off
                // would let a later caller in beside it.
                exact = false;
            }
        }
        if let Some(call) = call
            && unclaimed > 0
            && exact
        {
            self.give_back(unclaimed, &call);
        }
    }
}

impl BucketInner {
    /// Decides `ask`, sharing a call with the other callers (`crate::line`); `armed` is the
    /// caller's guard, disarmed while it waits in the line.
    pub(super) async fn decide(
        self: &Arc<Self>,
        ask: Ask,
        budget: Option<Duration>,
        armed: &mut bool,
    ) -> Decision {
        line::decide(self, ask, budget, armed).await.0
    }
}
