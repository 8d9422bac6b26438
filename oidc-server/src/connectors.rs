//! The registry of connectors (OAuth clients) and client-secret checks.

use std::collections::HashMap;
use std::sync::Arc;

use ring::digest::{digest, SHA256};
use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::config::ConnectorConfig;

/// Registered connectors by id.
#[derive(Debug, Clone, Default)]
pub struct Connectors {
    by_id: HashMap<String, Arc<ConnectorConfig>>,
}

/// Compared against when the client is unknown, so that an unknown client costs
/// the same hash and comparison as a known one with a wrong secret.
const DUMMY_DIGEST: [u8; 32] = [0x5a; 32];

impl Connectors {
    /// A registry of `connectors` (ids are unique: the config checks it).
    pub fn new(connectors: impl IntoIterator<Item = ConnectorConfig>) -> Self {
        Self {
            by_id: connectors
                .into_iter()
                .map(|c| (c.id.clone(), Arc::new(c)))
                .collect(),
        }
    }

    /// The connector with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<ConnectorConfig>> {
        self.by_id.get(id)
    }

    /// Every connector, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ConnectorConfig>> {
        self.by_id.values()
    }

    /// Number of connectors.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The connector if `secret` is its client secret. Unknown client, client
    /// without a secret and wrong secret all take the same path and answer `None`.
    pub fn check_secret(&self, client_id: &str, secret: &str) -> Option<&Arc<ConnectorConfig>> {
        let presented = digest(&SHA256, secret.as_bytes());
        let connector = self.by_id.get(client_id);
        let stored = connector
            .and_then(|c| c.secret_sha256.as_ref())
            .unwrap_or(&DUMMY_DIGEST);
        let equal: bool = presented.as_ref().ct_eq(stored.as_slice()).into();
        match connector {
            Some(c) if equal && c.secret_sha256.is_some() => Some(c),
            _ => None,
        }
    }
}

/// A fresh client secret: 256 random bits, base64url. Zeroized on drop.
pub fn new_secret() -> Result<Zeroizing<String>, ring::error::Unspecified> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new().fill(bytes.as_mut())?;
    Ok(Zeroizing::new(oidc_core::base64url::encode(bytes.as_ref())))
}

/// The hex SHA-256 of a secret, as stored in the config.
pub fn secret_digest_hex(secret: &str) -> String {
    hex::encode(digest(&SHA256, secret.as_bytes()))
}
