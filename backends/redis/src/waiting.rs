//! A count of this process's callers of one limit that are past their first try (waiting in
//! the limit's queue or on their way to it): while there are any, later callers skip the try
//! and queue behind them, so a try never overtakes a waiter.

use core::sync::atomic::{AtomicUsize, Ordering};

/// One caller past its first try, counted while it lives.
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(crate) fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
