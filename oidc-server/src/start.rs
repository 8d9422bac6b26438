//! The start of a running service: the key set and the replay store that
//! a [`Config`] asks for, started with a [`ServiceContext`], and the
//! [`AppState`] over them.

use std::sync::Arc;

use crate::config::Config;
use crate::context::ServiceContext;
use crate::keyset::SigningSetupError;
use crate::replay::TableError;
use crate::state::AppState;

/// The services `config` needs could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The signing key or key set.
    #[error(transparent)]
    Signing(#[from] SigningSetupError),
    /// The replay store.
    #[error(transparent)]
    Replay(#[from] TableError),
}

impl AppState {
    /// Everything `config` asks for: its key set (and the poller that keeps
    /// it current), its replay store (the table checked), the state over them.
    pub async fn start(config: Arc<Config>, context: &ServiceContext) -> Result<AppState, StartError> {
        // Independent reads (Secrets Manager and KMS, DynamoDB): at once,
        // so a cold start waits for the slower, not for both.
        let (keys, replay) = tokio::join!(
            crate::keyset::signing_keys(&config, context),
            crate::replay::store_for(&config, context)
        );
        let (keys, replay) = (keys?, replay?);
        let mut builder = AppState::builder(config, keys.keys);
        if let Some(poller) = keys.poller {
            builder = builder.key_poller(poller);
        }
        Ok(builder
            .replay_store(replay)
            .metrics(context.metrics.clone())
            .clock(context.clock.clone())
            .build())
    }
}
