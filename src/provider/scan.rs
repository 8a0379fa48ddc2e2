//! A small scanner over a 429 body's bytes: finds a few known phrases and JSON keys without
//! parsing the body as JSON.
