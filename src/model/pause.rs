//! A model's pause: the cooldown after a provider's 429 and the "quota exhausted" state, with
//! the one rule that makes them exact — admissions and pauses are ordered by one lock, and a
//! pause never starts before the latest admission it follows.
//!
//! Every admission runs under this lock (check the pause, then ask the store), and records the
//! instant it was charged at. A cooldown reported at `now` starts at `max(now, latest
//! admission)`, so with clocks read on several threads no admission ever lands inside a
//! cooldown: those before it were charged no later than its start, those after it no earlier
//! than its end.

use core::time::Duration;

use crate::Instant;

/// The report of a cooldown started or extended by a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cooldown {
    /// When this report's pause starts: the later of the report's clock reading and the
    /// latest admission of the model.
    pub from: Instant,
    /// The end of the cooldown now in force (a later one already in force is kept).
    pub until: Instant,
    /// Whether this report moved the end later (`false`: an earlier report's cooldown
    /// already covered it, so this 429 was one of the same burst).
    pub extended: bool,
}

/// What stops a model's admissions now, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paused {
    /// A cooldown until this instant: wait for it.
    Until(Instant),
    /// The quota is exhausted (until the reset, if known): fail.
    Exhausted(Option<Instant>),
}

#[derive(Debug, Default)]
pub(crate) struct Pause {
    /// The end of the cooldown (`Instant::ZERO`: none yet).
    until: Instant,
    /// `Some` while exhausted, with the reset if known.
    exhausted: Option<Option<Instant>>,
    /// The latest instant an admission was charged at.
    last_admission: Instant,
}

impl Pause {
    /// What stops an admission at `now`, clearing an exhaustion whose reset has come.
    pub(crate) fn check(&mut self, now: Instant) -> Option<Paused> {
        match self.exhausted {
            Some(Some(reset)) if now >= reset => self.exhausted = None,
            Some(reset) => return Some(Paused::Exhausted(reset)),
            None => {}
        }
        (now < self.until).then_some(Paused::Until(self.until))
    }

    pub(crate) fn admitted(&mut self, at: Instant) {
        self.last_admission = self.last_admission.max(at);
    }

    /// Starts or extends the cooldown by `retry_after` from `now` (or from the latest
    /// admission, if later).
    pub(crate) fn cool_down(&mut self, retry_after: Duration, now: Instant) -> Cooldown {
        let from = now.max(self.last_admission);
        let until = from.saturating_add(retry_after);
        let extended = until > self.until;
        self.until = self.until.max(until);
        Cooldown { from, until: self.until, extended }
    }

    pub(crate) fn exhaust(&mut self, reset_at: Option<Instant>) {
        // A known reset never replaces an unknown one already in force, nor an earlier
        // one a later: stricter only.
        self.exhausted = match (self.exhausted, reset_at) {
            (Some(None), _) | (_, None) => Some(None),
            (Some(Some(old)), Some(new)) => Some(Some(old.max(new))),
            (None, new) => Some(new),
        };
    }

    pub(crate) fn resume(&mut self) {
        self.until = Instant::ZERO;
        self.exhausted = None;
    }

    pub(crate) fn cooldown_until(&self, now: Instant) -> Option<Instant> {
        (now < self.until).then_some(self.until)
    }

    /// Whether an exhaustion is recorded, ended or not.
    pub(crate) fn has_exhaustion(&self) -> bool {
        self.exhausted.is_some()
    }

    pub(crate) fn exhausted(&self, now: Instant) -> Option<Option<Instant>> {
        match self.exhausted {
            Some(Some(reset)) if now >= reset => None,
            other => other,
        }
    }
}

#[cfg(all(test, not(tollgate_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_cooldown_starts_no_earlier_than_the_latest_admission_and_only_extends() {
        let mut p = Pause::default();
        p.admitted(Instant::from_secs(10));
        // Reported with a clock read before that admission: it starts at the admission.
        let c = p.cool_down(Duration::from_secs(2), Instant::from_secs(9));
        assert_eq!(
            c,
            Cooldown {
                from: Instant::from_secs(10),
                until: Instant::from_secs(12),
                extended: true
            }
        );
        assert_eq!(p.check(Instant::from_secs(11)), Some(Paused::Until(Instant::from_secs(12))));
        // A shorter one inside it changes nothing.
        let c = p.cool_down(Duration::from_secs(1), Instant::from_secs(10));
        assert!(!c.extended);
        assert_eq!(c.until, Instant::from_secs(12));
        assert_eq!(p.check(Instant::from_secs(12)), None);
    }

    #[test]
    fn exhaustion_holds_until_its_reset_and_an_unknown_reset_until_resumed() {
        let mut p = Pause::default();
        p.exhaust(Some(Instant::from_secs(5)));
        assert_eq!(
            p.check(Instant::from_secs(4)),
            Some(Paused::Exhausted(Some(Instant::from_secs(5))))
        );
        assert_eq!(p.check(Instant::from_secs(5)), None);
        p.exhaust(None);
        p.exhaust(Some(Instant::from_secs(1)));
        assert_eq!(p.check(Instant::from_secs(1_000)), Some(Paused::Exhausted(None)));
        p.resume();
        assert_eq!(p.check(Instant::from_secs(1_000)), None);
    }
}
