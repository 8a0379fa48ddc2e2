//! [`Estimate`]: a request's tokens split into input and output, for admission (what it is
//! expected to use) and for settling (what it used).

/// A request's tokens, input and output apart: reserved at admission by
/// [`acquire_with`](crate::ModelRateLimiter::acquire_with), reported at the end by
/// [`settle_io`](crate::model::ModelPermitOf::settle_io).
///
/// Each limit weighs it by what the limit counts ([`Counts`](crate::model::Counts)):
/// a [`Tokens`](crate::model::Counts::Tokens) limit the [`total`](Self::total), an
/// [`InputTokens`](crate::model::Counts::InputTokens) limit the `input`, and an
/// [`OutputTokens`](crate::model::Counts::OutputTokens) limit nothing at admission (output is
/// counted as produced, when the request settles).
///
/// A plain token count, as [`acquire`](crate::ModelRateLimiter::acquire) takes, is an
/// estimate whose every token is input (`From<u64>`): the conservative reading, since input
/// is reserved and output is not.
///
/// ```
/// use tollgate::model::Estimate;
///
/// let e = Estimate { input: 1_200, output: 800 };
/// assert_eq!(e.total(), 2_000);
/// assert_eq!(Estimate::from(500), Estimate { input: 500, output: 0 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Estimate {
    /// Input (prompt) tokens.
    pub input: u64,
    /// Output (completion) tokens: at admission what the request may produce (counted in
    /// total-token limits), at settle what it produced.
    pub output: u64,
}

impl Estimate {
    /// Input and output together (saturating).
    pub const fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

impl From<u64> for Estimate {
    /// Every token as input.
    fn from(tokens: u64) -> Self {
        Self { input: tokens, output: 0 }
    }
}
