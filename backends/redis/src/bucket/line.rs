//! The bucket's reservations in shared calls (the line itself is `crate::line`): one
//! `gcra_reserve` call decides a batch in order, and the tokens the server gave to callers
//! that never read their answer (gone by the answer, or cancelled before they read it) are
//! given back, all of a call's at once.

use core::time::Duration;
use std::sync::{Arc, Mutex};

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

    // A reservation that may wait (the head of this process's waiters) heads its call: an
    // admission ahead of it in the call would share the call's one undo with it (a head
    // cancelled in its sleep then found the call undone already, and its tokens lapsed: 44-116
    // of about 1 500 in `tests/bucket_unread.rs`), and its place would count the tokens of
    // one nobody read (`Fates::settle`).
    fn leads(ask: &Ask) -> bool {
        ask.max_wait != Some(0)
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

    // The bucket gives back by call, all of a call's unread tokens at once (an undo names the
    // call, and only the latest one's): each admission's guard says what became of it, and
    // the call's `CallUndo` gives back once every guard has, or when the next call goes.
    type Guard = Unread;

    fn guard(self: &Arc<Self>, ask: &Ask, answer: &Decision) -> Option<Unread> {
        let Ok(a) = answer else { return None };
        if a.code != 1 {
            return None; // refused: nothing taken
        }
        let undo = {
            let mut last = self.last_undo.lock().unwrap_or_else(|e| e.into_inner());
            match &*last {
                Some(u) if u.call == a.call => u.clone(),
                _ => {
                    let u = Arc::new(CallUndo {
                        call: a.call.clone(),
                        fates: Mutex::new(Fates::default()),
                    });
                    *last = Some(u.clone());
                    u
                }
            }
        };
        let index = {
            let mut fates = undo.fates.lock().unwrap_or_else(|e| e.into_inner());
            fates.all.push(Fate { k: ask.k, waits: a.wait > 0, state: State::Out });
            fates.out += 1;
            fates.all.len() - 1
        };
        Some(Unread { bucket: self.clone(), undo: Some(undo), index })
    }

    fn disarm(guard: Unread) {
        Self::take_over(guard);
    }

    fn take_over(mut guard: Unread) -> bool {
        guard.resolve(State::Read)
    }

    fn unclaimed(self: &Arc<Self>, outcomes: Vec<(Ask, Decision, bool)>) {
        // The answers nobody took came back and their guards marked them unread: the call's
        // undo waits only for the callers that still have theirs in hand, if any.
        let call = outcomes.iter().find_map(|(_, d, _)| d.as_ref().ok().map(|a| a.call.clone()));
        let last = self.last_undo.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(u) = last
            && call.is_some_and(|c| c == u.call)
        {
            let mut fates = u.fates.lock().unwrap_or_else(|e| e.into_inner());
            fates.sealed = true;
            if fates.out == 0 {
                let back = fates.settle(self.burst);
                self.give_back_locked(back, &u.call, &fates);
            }
        }
    }

    fn patience(&self) -> Option<Duration> {
        Some(self.store.inner.options.response_timeout)
    }

    fn unresolved(&self) -> bool {
        let last = self.last_undo.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().is_some_and(|u| {
            let fates = u.fates.lock().unwrap_or_else(|e| e.into_inner());
            !fates.done && fates.out > 0
        })
    }
}

/// One admission of a shared call, travelling with its answer: read by its caller
/// ([`Batched::take_over`]), dropped unread (its caller gone by the send, or cancelled before
/// it read the answer, which the channel then drops), or taken back by the next call.
#[derive(Debug)]
pub(crate) struct Unread {
    bucket: Arc<BucketInner>,
    undo: Option<Arc<CallUndo>>,
    index: usize,
}

impl Unread {
    /// Marks the admission `to` (read or unread); false if the next call took it back first.
    /// The last of a call's admissions to be resolved gives back the unread ones.
    fn resolve(&mut self, to: State) -> bool {
        let Some(undo) = self.undo.take() else { return true };
        let mut fates = undo.fates.lock().unwrap_or_else(|e| e.into_inner());
        let fate = &mut fates.all[self.index];
        if fate.state != State::Out {
            return false; // revoked
        }
        fate.state = to;
        fates.out -= 1;
        if fates.out == 0 && fates.sealed {
            let back = fates.settle(self.bucket.burst);
            self.bucket.give_back_locked(back, &undo.call, &fates);
        }
        true
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        self.resolve(State::Unread);
    }
}

/// What became of one admission of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its answer is on its way.
    Out,
    Read,
    Unread,
    /// Given back by the next call before its caller read it: the caller asks again.
    Revoked,
}

#[derive(Debug)]
struct Fate {
    k: u64,
    /// Its caller sleeps until its turn (a reservation, not an admission at once).
    waits: bool,
    state: State,
}

#[derive(Debug, Default)]
pub(super) struct Fates {
    all: Vec<Fate>,
    /// How many are [`State::Out`].
    out: usize,
    /// Every answer of the call has its guard (the runner is done sending them).
    sealed: bool,
    /// Given back (or found not exactly undoable) already.
    done: bool,
}

impl Fates {
    /// Marks the call done, the answers still out revoked, and returns the tokens to give
    /// back on a bucket of `burst`: the unread and the revoked ones, but of those ahead of a
    /// reader that waits, at most `burst - k` (`k` its tokens); the rest lapse (which only
    /// delays later callers).
    ///
    /// Why (in tokens' time): a call admits its requests at one instant until one must wait,
    /// the head of this process's waiters (the only one that reserves ahead; after it nothing
    /// is admitted), which goes at `TAT - burst` (`TAT` after the call). Say the readers
    /// ahead of the head leave the bucket at `T`, and `g` tokens ahead of it nobody read:
    /// `TAT = T + g + k`. Had those `g` never been asked for, the same readers at the same
    /// instants, the head included, would leave it at `max(T, TAT - burst) + k`. Giving back
    /// `g'` leaves `T + g - g' + k`, at least that as long as `g' <= g` and
    /// `g' <= burst - k`: then a later caller gets in no sooner than it could had they never
    /// asked. More (a bucket of 1: the head waits a whole token for a try ahead of it) would
    /// let a later caller in beside the head. This holds for the head going at the instant
    /// the server gave it, the schedule every bound of the bucket is stated in; what it
    /// spends of the head's slack for a late wake-up is `g'` of `burst - k` tokens' time.
    /// Before, nothing was given back once a reader that waits came after one unread: at
    /// 1 000 a second with a burst of 200, 1-14 % of the tokens consumed
    /// (`tests/bucket_unread.rs`). Since a head leads its call ([`Batched::leads`]), nothing
    /// is ahead of it there; the rule stays for any call that has one.
    fn settle(&mut self, burst: u64) -> u64 {
        if core::mem::replace(&mut self.done, true) {
            return 0;
        }
        let head = self.all.iter().position(|f| f.state == State::Read && f.waits);
        let (mut ahead, mut back) = (0_u64, 0_u64);
        for (i, f) in self.all.iter_mut().enumerate() {
            if f.state == State::Out {
                f.state = State::Revoked;
                self.out -= 1;
            }
            if f.state != State::Read {
                if head.is_some_and(|h| i < h) {
                    ahead += f.k;
                } else {
                    back += f.k;
                }
            }
        }
        if let Some(h) = head {
            back += ahead.min(burst.saturating_sub(self.all[h].k));
        }
        back
    }
}

/// A shared call's admissions, given back (the unread ones' tokens, in one undo by the call's
/// name) when the last of them is resolved: from `Drop`, which cannot do I/O, through the next
/// call of this process and the janitor (`BucketInner::give_back`). Or, when this process's
/// next call goes before every answer was read (`BucketInner::reserve`), in that call: only
/// the latest call can be undone, so the answers still on their way are revoked then, and
/// their callers ask again. Both happen under its lock, so exactly one of them gives back.
#[derive(Debug)]
pub(super) struct CallUndo {
    pub(super) call: Arc<str>,
    fates: Mutex<Fates>,
}

impl CallUndo {
    /// Before another call goes: gives back this call's tokens (see [`CallUndo`]) into the
    /// next call, if its answers are not all resolved yet.
    pub(super) fn settle_into(&self, bucket: &BucketInner) {
        let mut fates = self.fates.lock().unwrap_or_else(|e| e.into_inner());
        if fates.done {
            return;
        }
        let back = fates.settle(bucket.burst);
        bucket.give_back_locked(back, &self.call, &fates);
    }
}

impl BucketInner {
    /// [`give_back`](Self::give_back) of `back` tokens of `call`, if any, while its fates are
    /// locked (so the next call's `reserve` sees it, or settles the call itself).
    fn give_back_locked(&self, back: u64, call: &str, _fates: &Fates) {
        if back > 0 {
            self.give_back(back, call);
        }
    }
}

impl BucketInner {
    /// Decides `ask`, sharing a call with the other callers (`crate::line`), and says where;
    /// `armed` is the caller's guard, disarmed while it waits in the line.
    pub(super) async fn decide(
        self: &Arc<Self>,
        ask: Ask,
        budget: Option<Duration>,
        armed: &mut bool,
    ) -> (Decision, line::Via) {
        line::decide(self, ask, budget, armed).await
    }
}

#[cfg(test)]
mod tests {
    //! What a call's settling gives back, by the order of its admissions.
    use super::{Fate, Fates, State};

    fn fates(all: &[(u64, bool, State)]) -> Fates {
        let all = all.iter().map(|&(k, waits, state)| Fate { k, waits, state }).collect();
        Fates { all, out: 0, sealed: true, done: false }
    }

    #[test]
    fn unread_ahead_of_a_waiting_reader_come_back_as_far_as_the_burst_leaves_room() {
        let (unread, head) = ((1, false, State::Unread), (1, true, State::Read));
        // A bucket of 1: the head waited a whole token for the try ahead of it.
        assert_eq!(fates(&[unread, head]).settle(1), 0);
        assert_eq!(fates(&[unread, head]).settle(2), 1);
        assert_eq!(fates(&[unread, head]).settle(200), 1);
        let three = (3, false, State::Unread);
        assert_eq!(fates(&[three, (1, false, State::Read), head]).settle(3), 2);
        assert_eq!(fates(&[three, unread, (2, true, State::Read)]).settle(5), 3);
    }

    #[test]
    fn without_a_waiting_reader_every_unread_comes_back_once() {
        let mut f =
            fates(&[(2, false, State::Unread), (1, false, State::Read), (3, true, State::Unread)]);
        assert_eq!(f.settle(1), 5);
        assert_eq!(f.settle(1), 0, "settled twice");
        // A reader that waits ahead of the unread keeps nothing from them.
        assert_eq!(fates(&[(1, true, State::Read), (2, false, State::Unread)]).settle(1), 2);
    }
}
