//! Placeholder: the semaphore helper replaces this file.
