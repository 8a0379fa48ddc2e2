//! Each provider's rate-limit header names: which [`Quota`](super::Quota) and which field
//! a name reports.
