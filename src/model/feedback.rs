//! What feedback from a provider changed in the limiter: the typed reports of the feedback
//! primitives ([`ModelRateLimiter::learn_limit`](crate::ModelRateLimiter::learn_limit),
//! [`drain`](crate::ModelRateLimiter::drain), the cooldown) and of the glue that reads a
//! provider's headers and 429s into them.

use alloc::borrow::Cow;

/// A limit whose maximum feedback changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The limit's name.
    pub limit: Cow<'static, str>,
    /// The maximum before.
    pub from: u64,
    /// The maximum now.
    pub to: u64,
}

/// A limit that feedback drained to the provider's remaining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// The limit's name.
    pub limit: Cow<'static, str>,
    /// What was charged so that the local room is no more than the provider's.
    pub charged: u64,
}
