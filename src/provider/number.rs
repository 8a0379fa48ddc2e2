//! The plain numbers in header values: counts, and delays in (decimal) seconds or
//! milliseconds.
