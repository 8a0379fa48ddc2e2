//! [`Limit`]: one rate limit of a model as data — what it counts ([`Counts`]) and how
//! ([`LimitKind`]: a sliding window of any length and slot count, or a GCRA token bucket).

use alloc::borrow::Cow;
use core::time::Duration;

use crate::Rate;
use crate::error::InvalidConfig;
use crate::time::duration_to_nanos_saturating;

/// What a [`Limit`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counts {
    /// Requests: every admission weighs 1, and settling changes nothing.
    Requests,
    /// Tokens in all, input and output together (OpenAI's, Azure's and Bedrock's TPM): an
    /// admission weighs its whole estimate ([`Estimate::total`](crate::model::Estimate::total)),
    /// and settling replaces it with the actual total.
    Tokens,
    /// Input (prompt) tokens only (Anthropic's ITPM): an admission reserves the estimate of
    /// input, and settling replaces it with the actual input.
    InputTokens,
    /// Output (completion) tokens only (Anthropic's OTPM): *not* reserved at admission — a
    /// request's `max_tokens` is not what it will produce — but counted as actually produced
    /// when the request settles ([`settle_io`](crate::model::ModelPermitOf::settle_io)). An
    /// admission only needs the window not to be full already.
    OutputTokens,
}

/// How a [`Limit`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// At most `max` in any window of length `window`, counted in `slots` slots of
    /// `ceil(window / slots)` each (a ring of `slots + 1` counters, see
    /// [`RingWindow`](crate::window::RingWindow)). A slot counts whole while any part of it is in the
    /// window, so the limit holds in every true sliding window; a request waits at most one
    /// slot longer than an exact log would make it wait. Memory: `8 · (slots + 1)` bytes.
    Window {
        /// The window's length.
        window: Duration,
        /// How many slots the window is cut into, 1 to [`Limit::MAX_SLOTS`].
        slots: u32,
    },
    /// A GCRA token bucket: bursts of up to `max`, refilled at `rate` (exact integer
    /// arithmetic, no drift). Memory: one 128-bit word.
    Bucket {
        /// The refill rate.
        rate: Rate,
    },
}

/// One rate limit of a model, as data: what it counts, the most it allows, and how it counts.
///
/// A model's `rpm` and `tpm` are two such limits (named `"rpm"` and `"tpm"`, minute windows in
/// 60 slots); further ones go into [`RateLimitConfig::limits`](crate::RateLimitConfig::limits).
/// Every limit of a model is checked and charged together, all or nothing.
///
/// ```
/// use core::time::Duration;
/// use tollgate::model::{Counts, Limit, LimitKind};
/// use tollgate::{Rate, RateLimitConfig};
///
/// const DAY: Duration = Duration::from_secs(86_400);
/// let config = RateLimitConfig {
///     rpm: 500,
///     tpm: 40_000,
///     limits: vec![
///         // 10 000 requests per day, counted in 24 one-hour slots.
///         Limit::requests("rpd", 10_000, DAY).with_slots(24),
///         // At most 2 000 tokens in any 10 s (smoothing a per-minute quota).
///         Limit::tokens("tokens per 10 s", 2_000, Duration::from_secs(10)),
///         // A token bucket: bursts of 5 requests, 2 per second after that.
///         Limit::bucket("rps", Counts::Requests, 5, Rate::per_second(2)),
///     ],
///     ..Default::default()
/// };
/// config.validate()?;
/// assert_eq!(config.limits[0].kind, LimitKind::Window { window: DAY, slots: 24 });
/// # Ok::<_, tollgate::model::ModelConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limit {
    /// The name in [`ModelStats::limits`](crate::ModelStats::limits) and in the `tracing`
    /// event that says why a request waits.
    pub name: Cow<'static, str>,
    /// What it counts.
    pub counts: Counts,
    /// The most admitted per window (a window), or the burst (a bucket). At least 1.
    pub max: u64,
    /// How it counts.
    pub kind: LimitKind,
}

impl Limit {
    /// The most slots a window may have (a ring of 4 097 counters, 32 KiB): enough for a day
    /// in slots of about 21.1 s (86 400 s / 4 096), and a bound on what one model's state can
    /// cost. A day needs far fewer: [`DAY_SLOTS`](Self::DAY_SLOTS).
    pub const MAX_SLOTS: u32 = 4_096;
    /// The slots of a window made by [`requests`](Self::requests) or
    /// [`tokens`](Self::tokens): a minute in one-second slots, as `rpm` and `tpm`.
    pub const DEFAULT_SLOTS: u32 = 60;
    /// The slots of a window made by [`per_day`](Self::per_day): a day in 15-minute slots
    /// (97 counters, 776 bytes), so a request waits at most 15 minutes longer than an exact
    /// log would make it wait, whatever the daily limit.
    pub const DAY_SLOTS: u32 = 96;
    /// One day.
    pub const DAY: Duration = Duration::from_secs(86_400);

    /// At most `max` of what `counts` says in any day, in [`DAY_SLOTS`](Self::DAY_SLOTS) slots:
    /// requests or tokens per day (memory independent of `max`).
    ///
    /// ```
    /// use tollgate::model::{Counts, Limit, LimitKind};
    ///
    /// let rpd = Limit::per_day("rpd", Counts::Requests, 14_400);
    /// assert_eq!(rpd.kind, LimitKind::Window { window: Limit::DAY, slots: 96 });
    /// ```
    pub fn per_day(name: impl Into<Cow<'static, str>>, counts: Counts, max: u64) -> Self {
        Self::window(name, counts, max, Self::DAY).with_slots(Self::DAY_SLOTS)
    }

    /// At most `max` requests in any `window`, in [`DEFAULT_SLOTS`](Self::DEFAULT_SLOTS) slots.
    pub fn requests(name: impl Into<Cow<'static, str>>, max: u64, window: Duration) -> Self {
        Self::window(name, Counts::Requests, max, window)
    }

    /// At most `max` tokens in any `window`, in [`DEFAULT_SLOTS`](Self::DEFAULT_SLOTS) slots.
    pub fn tokens(name: impl Into<Cow<'static, str>>, max: u64, window: Duration) -> Self {
        Self::window(name, Counts::Tokens, max, window)
    }

    /// A sliding window of `max` per `window` of what `counts` says, in
    /// [`DEFAULT_SLOTS`](Self::DEFAULT_SLOTS) slots.
    pub fn window(
        name: impl Into<Cow<'static, str>>,
        counts: Counts,
        max: u64,
        window: Duration,
    ) -> Self {
        let kind = LimitKind::Window { window, slots: Self::DEFAULT_SLOTS };
        Self { name: name.into(), counts, max, kind }
    }

    /// A GCRA token bucket of what `counts` says: bursts of up to `burst`, refilled at `rate`.
    pub fn bucket(
        name: impl Into<Cow<'static, str>>,
        counts: Counts,
        burst: u64,
        rate: Rate,
    ) -> Self {
        Self { name: name.into(), counts, max: burst, kind: LimitKind::Bucket { rate } }
    }

    /// This window with `slots` slots instead (finer slots: a shorter extra wait, more
    /// memory). Does nothing to a bucket.
    ///
    /// ```
    /// use core::time::Duration;
    /// use tollgate::model::{Limit, LimitKind};
    ///
    /// let rph = Limit::requests("rph", 100, Duration::from_secs(3_600)).with_slots(12);
    /// assert_eq!(rph.kind, LimitKind::Window { window: Duration::from_secs(3_600), slots: 12 });
    /// ```
    #[must_use]
    pub fn with_slots(mut self, slots: u32) -> Self {
        if let LimitKind::Window { slots: s, .. } = &mut self.kind {
            *s = slots;
        }
        self
    }

    /// Checks that the limit can work: `max ≥ 1`, a window of at least 1 ns in 1 to
    /// [`MAX_SLOTS`](Self::MAX_SLOTS) slots.
    ///
    /// # Errors
    /// An [`InvalidConfig`] naming the field: `"max"`, `"window"` or `"slots"`.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.max == 0 {
            return Err(InvalidConfig::new("max", "must be greater than zero"));
        }
        if let LimitKind::Window { window, slots } = self.kind {
            if duration_to_nanos_saturating(window) == 0 {
                return Err(InvalidConfig::new("window", "must be at least one nanosecond"));
            }
            if slots == 0 || slots > Self::MAX_SLOTS {
                return Err(InvalidConfig::new("slots", "must be from 1 to Limit::MAX_SLOTS"));
            }
        }
        Ok(())
    }
}
