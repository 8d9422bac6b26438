//! The crate's top-level error: one enum per kind of cause, wrapped.

use crate::issue::IssueError;
use crate::jwks::JwkSetError;
use crate::jws::JwsError;
use crate::keys::{KeyError, SignError};
#[cfg(feature = "remote")]
use crate::verify::RemoteJwksError;
use crate::verify::{PolicyError, VerifyError};

/// Any error of this crate. Match on the inner enums for details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A token was refused.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A compact JWS was refused.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// A key was refused.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A key set was refused.
    #[error(transparent)]
    JwkSet(#[from] JwkSetError),
    /// A signer failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// A token could not be issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// A verification policy is inconsistent.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A remote key source could not be set up.
    #[cfg(feature = "remote")]
    #[error(transparent)]
    RemoteJwks(#[from] RemoteJwksError),
}
