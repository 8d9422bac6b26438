//! Integration tests of connector-client: the cache driven by a scripted
//! token source and a manual clock, and the HTTP parts against small axum
//! servers on 127.0.0.1.

// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod backoff;
mod client_credentials;
mod dpop;
mod file_sink;
mod middleware;
mod refresh;
mod single_flight;
mod support;
mod token_exchange;
