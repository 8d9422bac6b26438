//! [`AppState`]: everything a request handler needs, built once at start
//! over services already started ([`AppState::start`] starts them, in
//! `start.rs`, above this module).

use std::sync::Arc;

use bytes::Bytes;
use oidc_core::clock::{SystemClock, WallClock};
use oidc_core::dpop::{DpopVerifier, DEFAULT_MAX_FUTURE_SKEW};
use oidc_core::{Algorithm, Issuer, KeySet};
use serde_json::json;

use crate::auth::{AssertionRules, Authenticator, AwsIam, Federation, METHODS};
use crate::config::Config;
use crate::connectors::Connectors;
use crate::keyset::PollerHandle;
use crate::metrics::Metrics;
use crate::readiness::Health;
use crate::replay::{FleetProofStore, MemoryReplayStore, ReplayStore};
use crate::throttle::Throttle;

/// Shared state of the router (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`], reached by the handlers through `Deref`;
/// from outside the crate, through [`AppState`]'s accessors.
#[derive(Debug)]
pub struct Inner {
    /// The configuration in force.
    pub(crate) config: Arc<Config>,
    /// Signs tokens.
    pub(crate) issuer: Issuer,
    /// Checks client credentials.
    pub(crate) authenticator: Authenticator,
    /// Throttles failed authentication.
    pub(crate) throttle: Throttle,
    /// Metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Signer health for `/readyz`.
    pub(crate) health: Health,
    /// The discovery document, serialized once.
    pub(crate) discovery: Bytes,
    /// The clock (Unix seconds).
    pub(crate) clock: Arc<dyn WallClock>,
    /// Refreshes a shared key set on demand.
    pub(crate) key_poller: Option<PollerHandle>,
    /// Checks DPoP proofs on `POST /token`, recording each in the replay store.
    pub(crate) dpop: DpopVerifier,
    /// The token endpoint URL as discovery publishes it: a proof's `htu`.
    pub(crate) token_endpoint: String,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Builds an [`AppState`]; tests replace the clock or the replay store.
#[derive(Debug)]
#[must_use]
pub struct AppStateBuilder {
    config: Arc<Config>,
    keys: Arc<KeySet>,
    clock: Arc<dyn WallClock>,
    replay: Arc<dyn ReplayStore>,
    metrics: Arc<Metrics>,
    key_poller: Option<PollerHandle>,
}

impl AppState {
    /// Starts building the state for `config`, signing with `keys`.
    pub fn builder(config: Arc<Config>, keys: Arc<KeySet>) -> AppStateBuilder {
        AppStateBuilder {
            config,
            keys,
            clock: Arc::new(SystemClock),
            replay: Arc::new(MemoryReplayStore::default()),
            metrics: Arc::new(Metrics::new()),
            key_poller: None,
        }
    }

    /// The token endpoint URL.
    pub fn token_endpoint(&self) -> String {
        self.token_endpoint.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The key set tokens are signed with and the JWKS is served from.
    pub fn keys(&self) -> &Arc<KeySet> {
        self.issuer.keys()
    }

    /// The poller of a shared key set, if the keys come from one.
    pub fn key_poller(&self) -> Option<&PollerHandle> {
        self.key_poller.as_ref()
    }
}

impl AppStateBuilder {
    /// Uses `clock` for tokens and assertions.
    pub fn clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    /// Records one-time uses in `replay` (default: in memory).
    pub fn replay_store(mut self, replay: Arc<dyn ReplayStore>) -> Self {
        self.replay = replay;
        self
    }

    /// Refreshes the key set with `poller` where the platform asks (the
    /// start of a Lambda invocation).
    pub fn key_poller(mut self, poller: PollerHandle) -> Self {
        self.key_poller = Some(poller);
        self
    }

    /// Uses `metrics` (to share them with a signer).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Builds the state.
    pub fn build(self) -> AppState {
        let config = self.config;
        let issuer = Issuer::new(config.issuer.clone(), self.keys, config.lifetime)
            .unwrap_or_else(|_| unreachable!("the config checks that the issuer is not empty"))
            .with_clock(self.clock.clone())
            // A signer waiting on KMS answers within the request's time, so
            // a hung backend yields a clean 503, audited, not a dropped request.
            .with_sign_deadline(config.http.request_timeout.mul_f64(0.8));
        let token_endpoint = format!("{}/token", config.issuer);
        let mut dpop = DpopVerifier::builder()
            .algorithms(config.dpop.algorithms.iter().copied())
            .iat_window(config.dpop.iat_window, DEFAULT_MAX_FUTURE_SKEW)
            .replay_store(Arc::new(FleetProofStore::new(Arc::clone(&self.replay))))
            .clock(self.clock.clone());
        if let Some(nonces) = &config.dpop.nonces {
            dpop = dpop.nonces(nonces.clone());
        }
        let dpop = dpop
            .build()
            .unwrap_or_else(|_| unreachable!("the config checks the [dpop] settings with the same builder"));
        let rules = AssertionRules {
            issuer: config.issuer.clone(),
            audiences: vec![config.issuer.clone(), token_endpoint.clone()],
            max_lifetime: config.auth.assertion_max_lifetime,
            leeway: config.auth.leeway,
        };
        let connectors = Arc::new(Connectors::new(config.connectors.iter().cloned()));
        let discovery = discovery_document(&config);
        let aws_iam = config.aws_iam.clone().and_then(|aws| {
            let client = oidc_core::http::client_builder()
                .and_then(|b| {
                    b.redirect(reqwest::redirect::Policy::none())
                        .build()
                        .map_err(|e| oidc_core::http::HttpClientError::new(e.to_string()))
                })
                .inspect_err(|error| tracing::error!(%error, "AWS IAM authentication disabled"))
                .ok()?;
            Some(AwsIam {
                config: aws,
                issuer: config.issuer.clone(),
                client,
            })
        });
        let federation = Federation::new(
            &config.upstream_issuers,
            &connectors,
            self.clock.clone(),
            config.http.request_timeout,
        );
        AppState(Arc::new(Inner {
            authenticator: Authenticator::new(connectors, rules, self.replay, aws_iam, federation),
            throttle: Throttle::new(config.auth.failure_limit, config.auth.failure_window),
            metrics: self.metrics,
            health: Health::default(),
            discovery,
            clock: self.clock,
            key_poller: self.key_poller,
            dpop,
            token_endpoint,
            issuer,
            config,
        }))
    }
}

/// The discovery document (RFC 8414, OpenID Connect Discovery 1.0).
fn discovery_document(config: &Config) -> Bytes {
    let issuer = &config.issuer;
    let mut scopes: Vec<&str> = config
        .connectors
        .iter()
        .flat_map(|c| c.scopes.iter().map(String::as_str))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let algs: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
    let mut methods: Vec<&str> = METHODS.to_vec();
    if config.aws_iam.is_some() {
        methods.push(crate::auth::aws_iam::METHOD);
    }
    let mut grant_types = vec!["client_credentials"];
    if !config.upstream_issuers.is_empty() {
        grant_types.push(crate::auth::federated::TOKEN_EXCHANGE);
    }
    let mut doc = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/token"),
        "grant_types_supported": grant_types,
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "scopes_supported": scopes,
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "claims_supported": ["iss", "sub", "aud", "client_id", "iat", "nbf", "exp", "jti", "scope"],
        "access_token_signing_alg_values_supported": algs,
        "dpop_signing_alg_values_supported": config.dpop.algorithms.iter().map(|a| a.name()).collect::<Vec<_>>(),
    });
    if config.aws_iam.is_some() {
        doc["aws_iam_client_assertion_type"] = crate::auth::aws_iam::AWS_IAM_ASSERTION_TYPE.into();
    }
    Bytes::from(doc.to_string())
}
