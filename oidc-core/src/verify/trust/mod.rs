//! Many issuers (feature `remote`): a registry of trusted issuers for a
//! control plane that verifies tokens from thousands of token services, one
//! per customer, each isolated from the others.
//!
//! [`TrustedIssuers::verify`] reads the token's unverified `iss`, looks it up
//! **exactly** (byte for byte) and refuses an unknown issuer
//! ([`VerifyError::UnknownIssuer`]) before any network request. Only that
//! issuer's [`IssuerEntry`] applies from then on: its keys, its algorithms,
//! its audiences, its required claim values. The result, [`Trusted`], names
//! the entry.
//!
//! # Where entries come from
//!
//! - a static list, built in code ([`TrustedIssuersBuilder::issuer`]) or read
//!   from a TOML file ([`TrustedIssuers::from_toml_file`], format in
//!   [`file`](mod@file));
//! - an [`IssuerLookup`] the control plane implements (its own database),
//!   asked on demand for an `iss` the static list does not have, at most once
//!   at a time per issuer and under a cap on lookups in flight. An issuer it
//!   does not know goes into a bounded negative cache (by a keyed hash, never
//!   the text a stranger sent) for
//!   [`negative_ttl`](TrustedIssuersBuilder::negative_ttl); an entry it found
//!   is looked up again after [`lookup_ttl`](TrustedIssuersBuilder::lookup_ttl),
//!   so a removed or changed tenant takes effect within it.
//!
//! A lookup that fails (the store is down) is neither "trusted" nor
//! "unknown": a new issuer's token is refused as
//! [`VerifyError::IssuerLookup`] (unavailable; nothing is remembered), and an
//! entry in hand keeps being used, looked up again every 10 s, for at most
//! [`lookup_stale_limit`](TrustedIssuersBuilder::lookup_stale_limit) past its
//! TTL; after that its tokens are refused too, until a lookup answers. A
//! tenant removed from the store therefore stops being trusted within
//! `lookup_ttl` + `lookup_stale_limit` even while the store fails.
//!
//! Tokens naming random issuers cost a lookup each (before any signature
//! can be checked), so lookups are bounded three ways: at most
//! [`max_concurrent_lookups`](TrustedIssuersBuilder::max_concurrent_lookups)
//! in flight, at most
//! [`max_queued_lookups`](TrustedIssuersBuilder::max_queued_lookups) waiting
//! (beyond it a token is refused at once as unavailable), and each within
//! [`lookup_timeout`](TrustedIssuersBuilder::lookup_timeout), its wait
//! included. A flood of random issuers thus never builds a queue that a new
//! tenant's first token waits behind for more than that; live and static
//! issuers never wait for a lookup.
//!
//! # Isolation and bounds
//!
//! - **Lazy.** An issuer's discovery document and JWKS are fetched on its
//!   first token, by its own [`RemoteJwks`] (single flight per issuer, the
//!   `Cache-Control`, unknown-`kid`, cooldown and stale-if-error rules of that
//!   type). A [pinned](IssuerKeys::Pinned) key set is never fetched.
//! - **Bounded memory.** At most
//!   [`max_cached_issuers`](TrustedIssuersBuilder::max_cached_issuers) issuers
//!   are live; the least recently used goes first, and is fetched again on its
//!   next token. Every live issuer shares one HTTP client.
//! - **Bounded fetching.** At most
//!   [`max_concurrent_fetches`](TrustedIssuersBuilder::max_concurrent_fetches)
//!   fetches run at once across all issuers; an issuer has at most one, so a
//!   slow or dead issuer holds at most one of them, for at most two timeouts
//!   (discovery, then JWKS). After consecutive failures an issuer's next
//!   fetch waits longer each time, up to
//!   [`failure_backoff`](TrustedIssuersBuilder::failure_backoff), and its
//!   tokens fail at once meanwhile ([`KeyLookupError::Unavailable`]): a dead
//!   issuer costs the others neither time nor fetch slots.
//! - **Names, not URLs.** Results, logs and the [status view](TrustedIssuers::status)
//!   use the entry's name (restricted to label-safe characters); nothing a
//!   token says becomes a label or unbounded state.

mod builder;
mod entry;
pub mod file;
mod live;
mod lookup;
mod registry;
mod status;

use std::sync::Arc;

pub use builder::{
    TrustError, TrustedIssuersBuilder, DEFAULT_FAILURE_BACKOFF, DEFAULT_LOOKUP_STALE_LIMIT,
    DEFAULT_LOOKUP_TIMEOUT, DEFAULT_LOOKUP_TTL, DEFAULT_MAX_CACHED_ISSUERS, DEFAULT_MAX_CONCURRENT_FETCHES,
    DEFAULT_MAX_CONCURRENT_LOOKUPS, DEFAULT_MAX_QUEUED_LOOKUPS, DEFAULT_NEGATIVE_CAPACITY,
    DEFAULT_NEGATIVE_TTL,
};
pub use entry::{EntryError, IssuerEntry, IssuerEntryBuilder, IssuerKeys, MAX_NAME_LEN};
pub use file::TrustFileError;
pub use live::IssuerOrigin;
pub use lookup::{IssuerLookup, LookupError, MAX_LOOKUP_ISSUER_LEN};
pub use registry::TrustedIssuers;
pub use status::{IssuerStatus, KeysStatus, RefreshError, TrustStats};

use crate::dpop::DpopMode;
use crate::verify::Verified;
#[cfg(doc)]
use crate::verify::{KeyLookupError, RemoteJwks, VerifyError};

/// A token verified by a [`TrustedIssuers`] registry: the [`Verified`]
/// claims and the name of the entry that vouched for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Trusted<C> {
    name: Arc<str>,
    dpop: DpopMode,
    verified: Verified<C>,
}

impl<C> Trusted<C> {
    /// The name of the issuer entry (the tenant).
    pub fn issuer_name(&self) -> &str {
        &self.name
    }

    /// Whether the entry requires DPoP-bound tokens.
    pub fn dpop(&self) -> DpopMode {
        self.dpop
    }

    /// The verified claims.
    pub fn claims(&self) -> &C {
        self.verified.claims()
    }

    /// The verified claims with their key.
    pub fn verified(&self) -> &Verified<C> {
        &self.verified
    }

    /// The verified claims with their key, by value.
    pub fn into_verified(self) -> Verified<C> {
        self.verified
    }
}
