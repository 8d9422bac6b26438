//! Fuzz targets of the workspace's parsers of untrusted input, and the
//! properties each one checks beyond "no panic". Every
//! `fuzz_targets/NAME.rs` is one line that calls `NAME::run`; the code is
//! here so that the targets share their fixtures and helpers.
//!
//! A property that does not hold panics with a message saying which, and
//! libFuzzer records the input under `fuzz/artifacts/NAME/`.
#![forbid(unsafe_code)]

pub mod aws_iam;
pub mod basic;
pub mod cached_source;
pub mod credential;
pub mod der_signature;
pub mod discovery;
pub mod form;
pub mod json;
pub mod jwks;
pub mod jws_decode;
pub mod jws_verify;
pub mod retry_after;
pub mod sigv4;
pub mod spki;
pub mod token_endpoint;
pub mod token_response;

use std::future::Future;
use std::sync::OnceLock;

/// A single-threaded Tokio runtime with time and I/O, shared by the targets
/// that need one (built once per process).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime")
    })
}

/// Runs `future` to completion on [`runtime`].
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// Splits `data` at the first `n - 1` occurrences of `separator` into at
/// most `n` parts (fewer when the separator is missing).
pub fn split(data: &[u8], separator: u8, n: usize) -> Vec<&[u8]> {
    data.splitn(n, |b| *b == separator).collect()
}

/// A cheap, deterministic hash of the input (FNV-1a), to pick positions
/// and variants from it without a random number generator.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The PEM test keys of oidc-core, compiled in.
pub mod keys {
    /// P-256 PKCS#8.
    pub const P256: &str = include_str!("../../oidc-core/tests/keys/p256.pem");
    /// Ed25519 PKCS#8.
    pub const ED25519: &str = include_str!("../../oidc-core/tests/keys/ed25519.pem");
}
