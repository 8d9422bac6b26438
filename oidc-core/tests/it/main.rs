//! oidc-core's integration tests: one binary, one module per concern.

mod cache;
mod cache_remote;
mod catalog;
mod dpop;
mod dpop_axum;
mod fuzz_smoke;
mod helpers;
mod interop;
mod keys;
mod kms_der;
mod remote;
mod roundtrip;
mod tenants;
mod trust;
mod trust_lookup;
mod trust_scale;
mod upstream;
mod wycheproof;
