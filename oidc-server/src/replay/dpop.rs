//! DPoP proofs at the token endpoint in the fleet's replay store: oidc-core's
//! [`DpopVerifier`](oidc_core::dpop::DpopVerifier) records each proof through
//! [`ProofReplayStore`]; this adapter puts it in the server's [`ReplayStore`]
//! (namespace `dpop#`), so a proof replayed at another replica (or Lambda
//! environment) within its window is refused there too.

use std::sync::Arc;

use async_trait::async_trait;
use oidc_core::dpop::{self, ProofId, ProofReplayStore, ReplayError};

use super::{FirstUse, ReplayKey, ReplayStore, StoreError};

/// The server's [`ReplayStore`] seen as oidc-core's [`ProofReplayStore`].
#[derive(Debug, Clone)]
pub struct FleetProofStore(Arc<dyn ReplayStore>);

impl FleetProofStore {
    /// Proofs recorded in `store`.
    pub fn new(store: Arc<dyn ReplayStore>) -> Self {
        Self(store)
    }
}

#[async_trait]
impl ProofReplayStore for FleetProofStore {
    async fn first_use(
        &self,
        proof: &ProofId,
        remember_until: u64,
        now: u64,
    ) -> Result<dpop::FirstUse, ReplayError> {
        match self
            .0
            .first_use(&ReplayKey::dpop_proof(proof), remember_until, now)
            .await
        {
            Ok(FirstUse::Fresh) => Ok(dpop::FirstUse::Fresh),
            Ok(FirstUse::Replayed) => Ok(dpop::FirstUse::Replayed),
            // Fail closed: a proof that was not recorded is not accepted.
            Err(error @ (StoreError::Unavailable(_) | StoreError::Full(_))) => {
                Err(ReplayError::Unavailable(error.to_string()))
            }
        }
    }
}
