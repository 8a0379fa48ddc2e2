//! Placeholder until the adapter lands: re-exports the core.
#![no_std]
pub use tollgate::*;
