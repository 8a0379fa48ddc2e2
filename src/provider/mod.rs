//! What an LLM provider says about its own rate limits: its rate-limit headers parsed into
//! [`Observed`] limits ([`parse_headers`]) and a 429 response classified into a [`Throttled`]
//! ([`classify_429`]).
//!
//! Everything here is pure: bytes in, plain data out, no clock, no I/O, no `std` — so it runs
//! on any target with an allocator and under a fuzzer. What to *do* with a report (drain the
//! local window, learn a lower limit, pause admissions) is the model limiter's job; invariant 11
//! in `ARCHITECTURE.md` says feedback only ever tightens.
//!
//! Headers a provider does not send, or sends in a form that cannot be trusted (malformed,
//! repeated with another value, a remaining above its limit), are left out of the
//! [`HeaderReport`] and listed in [`HeaderReport::ignored`] with the reason: a bad header is
//! never a panic and never a guess.
//!
//! ```
//! use core::time::Duration;
//! use tollgate::provider::{Provider, Quota, parse_headers};
//!
//! let headers = [
//!     ("content-type", "application/json"),
//!     ("x-ratelimit-limit-requests", "500"),
//!     ("x-ratelimit-remaining-requests", "499"),
//!     ("x-ratelimit-reset-requests", "120ms"),
//!     ("x-ratelimit-limit-tokens", "30000"),
//!     ("x-ratelimit-remaining-tokens", "29000"),
//!     ("x-ratelimit-reset-tokens", "2s"),
//! ];
//! let report = parse_headers(Provider::OpenAi, headers, None);
//! let tokens = report.get(Quota::Tokens).unwrap();
//! assert_eq!(tokens.limit, Some(30_000));
//! assert_eq!(tokens.remaining, Some(29_000));
//! assert_eq!(tokens.reset_after, Some(Duration::from_secs(2)));
//! assert_eq!(tokens.window, Some(Duration::from_secs(60)));
//! assert!(report.ignored.is_empty());
//! ```
//!
//! The files, one job each: `report.rs` (the types of a parsed header set), `detect.rs`
//! (which provider sent a header set), `names.rs` (each provider's header names),
//! `headers.rs` (the parser), `go_duration.rs`, `datetime.rs` and `number.rs` (the value
//! syntaxes), `throttled.rs` and `scan.rs` (429 classification and its body scanner),
//! `http.rs` (`http::HeaderMap`, feature `http`).

mod datetime;
mod detect;
mod go_duration;
mod headers;
#[cfg(feature = "http")]
mod http;
mod names;
mod number;
mod report;
mod scan;
mod throttled;

pub use datetime::{parse_http_date, parse_rfc3339};
pub use go_duration::{GoDuration, parse_go_duration};
pub use headers::parse_headers;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::parse_header_map;
pub use report::{HeaderReport, IgnoreReason, Ignored, Observed, Provider, Quota};
pub use throttled::{Throttled, classify_429};
