//! Tests of the `oidc-server` binary and its configuration.

// A test that cannot unwrap has failed; the panic message is the report.
#![allow(clippy::unwrap_used)]

mod cli;
mod config;
mod embedded;
#[cfg(feature = "lambda")]
mod lambda;
