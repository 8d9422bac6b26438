//! One-time use across the fleet: every `private_key_jwt` assertion id,
//! every `aws_iam` signature, every exchanged upstream token (of an
//! entry with `one_time_use`) and every DPoP proof is recorded once, in a store shared by every
//! replica (every Lambda environment, every ECS task), so a captured
//! credential replayed at another replica is refused there too.
//!
//! | store | for |
//! |---|---|
//! | [`DynamoDbReplayStore`] | a fleet: one conditional `PutItem` per use, TTL on `expires_at` |
//! | [`MemoryReplayStore`] | one process only (the embedded default, a single container) |
//!
//! Keys are namespaced per method and hashed ([`ReplayKey`]): no text a client
//! chose ever becomes a key, and two methods never collide. Each key is
//! remembered until the credential could no longer be accepted anyway
//! (assertion or upstream token `exp` + leeway; `X-Amz-Date` + allowed skew). A store that
//! cannot record a use answers [`StoreError`], and the caller refuses the
//! login with a 503: a first use that was not recorded is never accepted.

mod dpop;
mod dynamodb;
mod memory;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ring::digest::{Context, SHA256};

pub use dpop::FleetProofStore;
pub use dynamodb::{DynamoDbReplayStore, TableError, EXPIRES_AT, PARTITION_KEY};
pub use memory::MemoryReplayStore;

use crate::config::{Config, ReplayConfig};
use crate::context::ServiceContext;

/// Whether a one-time credential was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// First use: recorded now.
    Fresh,
    /// Seen before and still remembered: a replay.
    Replayed,
}

/// The kind of one-time credential, a namespace of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A `private_key_jwt` assertion, by issuer, client and `jti`.
    Assertion,
    /// A signed `sts:GetCallerIdentity` request (`aws_iam`), by its SigV4 signature.
    AwsSigV4,
    /// An upstream identity token exchanged for ours, by its entry and its
    /// `jti` (or the token itself when it has none).
    Upstream,
    /// A DPoP proof at the token endpoint, by oidc-core's digest of its
    /// key's thumbprint and its `jti` ([`ProofId`](oidc_core::dpop::ProofId)).
    Dpop,
}

impl Method {
    /// Every method, in a fixed order.
    pub const ALL: [Method; 4] = [
        Method::Assertion,
        Method::AwsSigV4,
        Method::Upstream,
        Method::Dpop,
    ];

    /// The key prefix: `jti#`, `sigv4#`, `upstream#` or `dpop#`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Assertion => "jti#",
            Self::AwsSigV4 => "sigv4#",
            Self::Upstream => "upstream#",
            Self::Dpop => "dpop#",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Assertion => 0,
            Self::AwsSigV4 => 1,
            Self::Upstream => 2,
            Self::Dpop => 3,
        }
    }
}

/// A one-time credential's key in the store: a method and a SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey {
    method: Method,
    digest: [u8; 32],
}

impl ReplayKey {
    /// The key of assertion `jti` of `client_id` at `issuer` (each part
    /// length-prefixed, so no two triples hash alike).
    pub fn assertion(issuer: &str, client_id: &str, jti: &str) -> Self {
        Self::of(Method::Assertion, &[issuer, client_id, jti])
    }

    /// The key of a SigV4 `signature` (hex).
    pub fn aws_signature(signature: &str) -> Self {
        Self::of(Method::AwsSigV4, &[signature])
    }

    /// The key of an upstream token of the `[[upstream_issuers]]` entry
    /// named `entry`: by its `jti` when it has one, else by the whole
    /// token (hashed, like every key). Namespaced per entry, so that two
    /// issuers' `jti`s never collide.
    pub fn upstream_token(entry: &str, jti: Option<&str>, token: &str) -> Self {
        match jti {
            Some(jti) => Self::of(Method::Upstream, &[entry, "jti", jti]),
            None => Self::of(Method::Upstream, &[entry, "token", token]),
        }
    }

    /// The key of a DPoP proof: oidc-core's digest of it (SHA-256 of the
    /// key's thumbprint and the `jti`, length-prefixed).
    pub fn dpop_proof(proof: &oidc_core::dpop::ProofId) -> Self {
        Self {
            method: Method::Dpop,
            digest: *proof.digest(),
        }
    }

    fn of(method: Method, parts: &[&str]) -> Self {
        let mut context = Context::new(&SHA256);
        for part in parts {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(context.finish().as_ref());
        Self { method, digest }
    }

    /// Its method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The partition key as stored: `jti#`, `sigv4#`, `upstream#` or
    /// `dpop#` and 64 hex digits.
    pub fn partition_key(&self) -> String {
        format!("{}{}", self.method.prefix(), hex::encode(self.digest))
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.partition_key())
    }
}

/// A use could not be recorded; the login must be refused for now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store is unreachable, throttling, failing or too slow.
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
    /// The in-memory store holds as many live entries as it may.
    #[error("replay store full: {0} live entries of this kind")]
    Full(usize),
}

/// Where one-time uses are recorded.
#[async_trait]
pub trait ReplayStore: Send + Sync + fmt::Debug {
    /// Records `key` until `remember_until` (Unix seconds), or finds it
    /// already recorded and not yet expired at `now`: a replay. Check and
    /// record are one atomic step, so of concurrent uses exactly one is
    /// [`FirstUse::Fresh`], whichever replica each reaches.
    async fn first_use(&self, key: &ReplayKey, remember_until: u64, now: u64)
        -> Result<FirstUse, StoreError>;

    /// Whether uses can be recorded now (for `/readyz`).
    async fn ready(&self) -> Result<(), StoreError>;

    /// `memory` or `dynamodb`, for messages.
    fn kind(&self) -> &'static str;
}

/// The store `config` asks for. A DynamoDB table that is missing or has
/// another key schema is an error (the server must not start); DynamoDB
/// unreachable at start is not (logins fail closed until it answers).
pub async fn store_for(
    config: &Config,
    context: &ServiceContext,
) -> Result<Arc<dyn ReplayStore>, TableError> {
    match &config.replay {
        ReplayConfig::Memory => Ok(Arc::new(MemoryReplayStore::default())),
        ReplayConfig::DynamoDb { table, call_timeout } => {
            let sdk = context.sdk_config().await;
            let mut calls = oidc_core::aws::CallPolicy::default();
            calls.call_timeout = *call_timeout;
            calls.observer = context.aws_observer();
            Ok(Arc::new(DynamoDbReplayStore::connect(&sdk, table, calls).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_hashed_and_unambiguous() {
        let a = ReplayKey::assertion("https://i", "c", "j");
        assert_eq!(a.partition_key().len(), "jti#".len() + 64);
        assert!(a.partition_key().starts_with("jti#"));
        assert!(ReplayKey::aws_signature("ab")
            .partition_key()
            .starts_with("sigv4#"));
        // Length prefixes: moving a character between parts changes the key.
        assert_ne!(a, ReplayKey::assertion("https://ic", "", "j"));
        assert_ne!(a, ReplayKey::assertion("https://i", "c", "J"));
        assert_ne!(
            ReplayKey::assertion("x", "y", "z").partition_key(),
            ReplayKey::aws_signature("xyz").partition_key()
        );
        // Upstream tokens: per entry, by jti or by the token.
        let up = ReplayKey::upstream_token("aws", Some("j"), "t");
        assert!(up.partition_key().starts_with("upstream#"));
        assert_ne!(up, ReplayKey::upstream_token("k8s", Some("j"), "t"));
        assert_ne!(up, ReplayKey::upstream_token("aws", None, "j"));
        assert_eq!(
            ReplayKey::upstream_token("aws", None, "t"),
            ReplayKey::upstream_token("aws", None, "t")
        );
        assert!(!format!("{a:?}").contains("https://i"));
        let proof = ReplayKey::dpop_proof(&oidc_core::dpop::ProofId::new("jkt", "j"));
        assert!(proof.partition_key().starts_with("dpop#"));
        assert_eq!(proof.partition_key().len(), "dpop#".len() + 64);
        assert_ne!(
            proof,
            ReplayKey::dpop_proof(&oidc_core::dpop::ProofId::new("jkt2", "j"))
        );
    }
}
