//! Tests of the `oidc-server` binary, its configuration, and its router
//! driven without a socket.

// A test that cannot unwrap has failed; the panic message is the report.
#![allow(clippy::unwrap_used)]

mod assertions;
mod audit;
mod cli;
mod config;
mod docs;
mod dpop;
mod edge;
mod embedded;
mod exchange;
#[cfg(feature = "lambda")]
mod lambda;
mod log_output;
mod support;
mod token_endpoint;
