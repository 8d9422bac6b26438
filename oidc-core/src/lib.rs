//! Connector identity tokens: issue them, and verify them strictly.
//!
//! A connector presents a short-lived JWT access token (RFC 9068 profile,
//! compact JWS) on every poll. This crate is both ends of that:
//!
//! - [`Issuer`] signs tokens with the active key of a [`KeySet`], through the
//!   [`Signer`](keys::Signer) trait (local keys here; AWS KMS behind the `aws` feature);
//! - [`Verifier`] checks them against a [`Policy`] with keys from a
//!   [`KeySource`] (a static [`JwkSet`]; a remote JWKS or discovery behind `remote`).
//!
//! # Layers
//!
//! | module | job |
//! |---|---|
//! | [`base64url`], [`json`] | the strict encodings every token part and key is read with: canonical unpadded base64url; one JSON value, no duplicate member, bounded nesting |
//! | [`jws`] | strict compact JWS encode/decode, shared by everything that signs or verifies |
//! | [`keys`] | algorithms, public keys pinned to one algorithm, thumbprints, the `Signer` trait, local keys; [`keys::der`], the DER of remote signers |
//! | [`jwks`] | JWK Sets, parsed strictly |
//! | [`claims`] | the token's claims ([`AccessTokenClaims`]) and their types |
//! | [`keyset`] | [`KeySet`]: the active signer and the published keys, swapped atomically |
//! | [`clock`] | the wall and monotonic clocks every time check reads, and clocks a test or a host sets |
//! | [`issue`] | [`Issuer`], [`TokenRequest`] |
//! | [`verify`] | [`Verifier`], [`Policy`], [`Verified`] claims; an opt-in [`VerificationCache`](verify::VerificationCache) for repeated tokens; [`verify::dpop`]: a request's token, bearer or DPoP-bound with its proof ([`Verifier::verify_request`]) |
//! | [`dpop`] | DPoP (RFC 9449): the client's [`DpopKey`](dpop::DpopKey) and [`DpopProof`](dpop::DpopProof)s, the [`DpopVerifier`](dpop::DpopVerifier) of proofs, stateless server [`DpopNonces`](dpop::DpopNonces), the per-process proof replay store; tokens bound with [`Issuer::issue_with_confirmation`] |
//! | [`text`] | the one policy for a stranger's text in errors and logs: bounded, one line |
//! | [`calendar`] | UTC dates and Unix seconds, for the date formats no dependency reads (SigV4's `X-Amz-Date`, RFC 3339) |
//!
//! # What it deliberately does not do
//!
//! No HMAC, no `none`, no JWE, no JSON serialization, no keys taken from a token
//! header (the one header key read anywhere is a DPoP proof's own `jwk`, which
//! proves possession of that key and vouches for nothing else), no RSA under
//! 2048 bits, no lenient parsing. Every refusal has its own
//! error variant ([`VerifyError`]) with a stable reason code.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use oidc_core::keys::{LocalSigner, Signer};
//! use oidc_core::{AccessTokenClaims, Algorithm, Issuer, JwkSet, KeySet, Lifetime, Policy, TokenRequest, Verifier};
//!
//! let (signer, _pem) = LocalSigner::generate(Algorithm::ES256)?;
//! let jwks = JwkSet::from_keys([signer.verifying_key().clone()])?;
//! let keys = Arc::new(KeySet::single(Arc::new(signer)));
//! let issuer = Issuer::new("https://tokens.example.com", keys, Lifetime::default())?;
//!
//! let issued = issuer.issue(&TokenRequest::new("connector-1", "https://api.example.com")).await?;
//!
//! let policy = Policy::builder("https://tokens.example.com", ["https://api.example.com"]).build()?;
//! let verified = Verifier::new(policy, jwks).verify::<AccessTokenClaims>(issued.token.as_str()).await?;
//! assert_eq!(verified.claims().sub, "connector-1");
//! # Ok::<(), oidc_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//!
//! DPoP (the [`dpop`] module and [`verify::dpop`]) needs nothing beyond ring
//! and serde and is in every build; the trust file's `dpop` key comes with
//! `remote`, the extractors with `axum`.
//!
//! | feature | adds |
//! |---|---|
//! | `http` | the HTTPS client (rustls with ring) and fetch policy shared by every crate here: `http::client_builder`, checked URLs, capped reads, discovery documents |
//! | `remote` | `verify::RemoteJwks`: a [`KeySource`] that fetches and caches a JWKS URL or an issuer's discovery document (HTTPS only, size cap, timeout, `Cache-Control` clamped, ETag revalidation, one single-flight refetch per cooldown on unknown kids, last good set kept through failures up to a stale limit, optional failure backoff); `verify::trust::TrustedIssuers`: many issuers, each token checked against the entry its `iss` names exactly (static list or TOML file, on-demand lookup with a negative cache, lazy per-issuer key sources under one cap on fetches, bounded LRU, status view keyed by entry name); implies `http` |
//! | `aws-config` | `aws::load_sdk_config`: the AWS SDK configuration (credentials, region) on rustls with ring, and no service SDK |
//! | `aws` | `keys::KmsSigner` (every token one KMS `Sign`), `keys::kms_envelope` (a local key kept encrypted under KMS: zero KMS calls per token); `aws::CallPolicy` (timeouts, retries, an observer of every call); implies `aws-config`. The key set shared by replicas through Secrets Manager, its rules and its rotation are the issuer's operations and live in `oidc-server` (`oidc_server::keyset`), which writes each set it reads into a [`KeySet`] |
//! | `axum` | `axum::VerifiedToken`: an axum extractor that yields verified claims or answers `401` with `WWW-Authenticate: Bearer error="invalid_token"` and no detail (the reason is logged); with `remote`, `axum::TrustedToken` does the same through a `TrustedIssuers` and yields the entry's name too. Both refuse DPoP-bound tokens; `axum::DpopToken` (and with `remote`, `axum::DpopTrustedToken`) accept bearer or DPoP requests by the policy's `dpop` mode, answering `DPoP error="invalid_dpop_proof"` or `use_dpop_nonce` with a `DPoP-Nonce` |

mod alg;
#[cfg(feature = "aws-config")]
pub mod aws;
#[cfg(feature = "axum")]
pub mod axum;
pub mod base64url;
pub mod calendar;
pub mod claims;
pub mod clock;
pub mod dpop;
mod error;
#[cfg(feature = "http")]
pub mod http;
pub mod issue;
pub mod json;
pub mod jwks;
pub mod jws;
pub mod keys;
pub mod keyset;
pub mod text;
pub mod verify;

pub use alg::{Algorithm, AlgorithmError};
pub use claims::{AccessTokenClaims, Audience, BearerToken, Jti};
pub use error::Error;
pub use issue::{IssueError, IssuedToken, Issuer, Lifetime, TokenRequest};
pub use jwks::JwkSet;
pub use keyset::{ActiveKey, KeySet, KeySetState};
pub use verify::{KeyLookupError, KeySource, Policy, Verified, Verifier, VerifyError};
