//! Placeholder until the attribute lands.
