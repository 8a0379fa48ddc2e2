//! Placeholder: the sliding-window helper replaces this file.
