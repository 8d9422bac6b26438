//! The issuer's key set: built from the `[signing]` configuration
//! ([`signing_keys`]: a local key, one KMS key, or a shared key set), and the
//! shared key set in Secrets Manager, rotated by Secrets Manager's own
//! protocol: the operations only the token service runs (oidc-core holds the
//! signers and the [`KeySet`] they are swapped into).
//!
//! One secret; each version holds one whole key set ([`KeySetDocument`]):
//! `AWSCURRENT` is the set in force, `AWSPREVIOUS` the one before it,
//! `AWSPENDING` only the set being rotated in, for the minutes one rotation
//! takes. [`Rotation`] implements the four steps (`createSecret`,
//! `setSecret`, `testSecret`, `finishSecret`) for the Lambda rotation
//! handler and for `oidc-server keys rotate`; [`KeySetPoller`] keeps a
//! server's [`KeySet`] on the set in force.
//!
//! | module | job |
//! |---|---|
//! | `from_config` | `[signing]` into a key set, and for a shared set the poller that keeps it current |
//! | [`document`] | the key-set document: one whole set per secret version, with its timings |
//! | [`rules`] | when a set may rotate and how long its current key may sign |
//! | `secret` | reading and writing versions and stages |
//! | `kms_keys` | making new keys (sealed envelope keys, or KMS keys), retiring KMS keys |
//! | `rotation` | the four steps, their rules and their idempotence |
//! | `poller` | a server's view of the set in force |
//!
//! [`KeySetDocument`]: document::KeySetDocument
//! [`KeySet`]: oidc_core::KeySet

pub mod document;
mod from_config;
mod kms_keys;
mod poller;
mod rotation;
pub mod rules;
mod secret;

pub use from_config::{key_set, key_set_with, signing_keys, SigningKeys, SigningSetupError};
pub use kms_keys::{KeyMaker, PendingDeletion, KEY_SET_TAG, ROTATION_TAG};
pub use poller::{KeySetPoller, PollSummary, PollerHandle};
pub use rotation::{Rotated, Rotation, RotationEvent, RotationStep};
pub use secret::{KeySetSecret, Stored, StoredValue};

use oidc_core::aws::{CallFailure, CallOutcome};

use document::DocumentError;
use rules::{TooEarly, TooLate};

/// Why the key set could not be read, rotated or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// An AWS service could not be reached or kept failing.
    #[error("AWS unavailable: {0}")]
    Unavailable(String),
    /// An AWS service refused (access denied, a key disabled, ...).
    #[error("AWS refused: {0}")]
    Refused(String),
    /// The secret does not exist.
    #[error("key-set secret {0:?} does not exist (create it with `oidc-server keys init`)")]
    NoSuchSecret(String),
    /// A version's value is not a key set.
    #[error("key-set secret version {version_id}: {error}")]
    BadDocument {
        /// The version.
        version_id: String,
        /// Why.
        error: DocumentError,
    },
    /// The rules refuse the rotation now.
    #[error(transparent)]
    TooEarly(#[from] TooEarly),
    /// The rotation's last step came later than its window allows: the
    /// pending set was abandoned.
    #[error(transparent)]
    TooLate(#[from] TooLate),
    /// A rotation step found the secret in a state it cannot go on from.
    #[error("rotation {token}: {reason}")]
    Rotation {
        /// The rotation's `ClientRequestToken`.
        token: String,
        /// What is wrong.
        reason: String,
    },
    /// A key of the set cannot sign (its KMS key or envelope key refused).
    #[error("key {kid}: {reason}")]
    Key {
        /// The key.
        kid: String,
        /// Why.
        reason: String,
        /// Whether retrying later may help.
        transient: bool,
    },
}

impl KeySetError {
    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_)) || matches!(self, Self::Key { transient: true, .. })
    }

    pub(crate) fn from_failure(failure: CallFailure, secret_id: &str) -> Self {
        match (failure.outcome, failure.code.as_deref()) {
            (CallOutcome::Refused, Some("ResourceNotFoundException")) => {
                Self::NoSuchSecret(secret_id.to_owned())
            }
            (CallOutcome::Refused, _) => Self::Refused(failure.reason),
            _ => Self::Unavailable(failure.reason),
        }
    }
}
