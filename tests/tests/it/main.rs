//! End-to-end tests: the token server on loopback, driven by HTTP clients,
//! the workspace's verifier and third-party verifiers.

// A test that cannot unwrap has failed; the panic message is the report.
#![allow(clippy::unwrap_used)]

mod assertions;
mod aws_iam;
mod boundaries;
mod client;
mod connector_token;
mod deploy;
mod docs;
mod dpop_bench;
mod dpop_client;
mod dpop_token_endpoint;
mod edge;
mod exchange_bench;
mod exchange_flow;
mod exchange_replay;
mod flow;
mod keys_init;
mod kms;
mod kms_bench;
mod kms_cli;
mod kms_envelope;
mod kms_faults;
mod lambda_cold_start;
mod lambda_runtime;
mod policies;
mod rehearsal;
mod replay;
mod replay_bench;
mod rotation;
mod rotation_bench;
mod third_party;
mod token_endpoint;
mod token_exchange_client;
mod trust;
