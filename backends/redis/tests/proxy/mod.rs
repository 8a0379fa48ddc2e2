//! Support code of the Redis fault, multi-process and cluster tests (owned by those tests).
#![allow(dead_code)] // each test binary uses its own part of the support code

pub mod children;
pub mod fault;
pub mod log;
