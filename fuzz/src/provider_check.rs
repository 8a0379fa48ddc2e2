//! The checks every provider harness makes of a `HeaderReport`, whatever the input.

use tollgate::provider::{HeaderReport, Quota};

/// A report is well formed: every remaining ≤ its limit, at most one entry per quota, in
/// `Quota::ALL` order, each with something known, and every ignored name in lower case.
pub(crate) fn check_report(report: &HeaderReport) {
    let mut last: Option<Quota> = None;
    for o in &report.observed {
        if let (Some(limit), Some(remaining)) = (o.limit, o.remaining) {
            assert!(remaining <= limit, "remaining {remaining} > limit {limit}: {report:?}");
        }
        assert!(last.is_none_or(|q| q < o.quota), "quotas out of order: {report:?}");
        last = Some(o.quota);
        assert!(
            o.limit.is_some() || o.remaining.is_some() || o.reset_after.is_some(),
            "an entry with nothing known: {report:?}"
        );
        assert!(o.window.is_some_and(|w| !w.is_zero()), "no window: {report:?}");
        assert!(o.remaining_at_least() <= o.remaining);
    }
    for i in &report.ignored {
        assert_eq!(i.name, i.name.to_ascii_lowercase(), "{report:?}");
    }
}
