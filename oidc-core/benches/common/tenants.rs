//! A loopback server playing any number of token services at once: tenant
//! `n` publishes its discovery document and JWKS under `/t/{n}/`, with the
//! key `keys[n % keys.len()]`; every request is counted. For the many-issuer
//! benchmarks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::{Algorithm, Issuer, JwkSet, KeySet, Lifetime, TokenRequest};

/// The audience of every tenant's tokens.
pub const AUDIENCE: &str = "https://api.example.com";

struct Shared {
    base: String,
    jwks: Vec<String>,
    requests: AtomicUsize,
}

/// The server and the signing keys behind its tenants.
pub struct Tenants {
    pub base: String,
    pub signers: Vec<Arc<LocalSigner>>,
    shared: Arc<Shared>,
}

impl Tenants {
    /// Serves on 127.0.0.1 from `runtime`, with `keys` distinct ES256 keys.
    pub fn start(runtime: &tokio::runtime::Runtime, keys: usize) -> Self {
        let signers: Vec<Arc<LocalSigner>> = (0..keys)
            .map(|_| Arc::new(LocalSigner::generate(Algorithm::ES256).expect("generate").0))
            .collect();
        let jwks = signers
            .iter()
            .map(|s| {
                JwkSet::from_keys([s.verifying_key().clone()])
                    .expect("one key")
                    .to_json()
            })
            .collect();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            base: base.clone(),
            jwks,
            requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/t/{n}/.well-known/openid-configuration", get(discovery))
            .route("/t/{n}/jwks.json", get(jwks_of))
            .with_state(Arc::clone(&shared));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            base,
            signers,
            shared,
        }
    }

    /// The issuer URL of tenant `n`.
    pub fn issuer(&self, n: usize) -> String {
        format!("{}/t/{n}", self.base)
    }

    /// A fresh token of tenant `n` (its own `jti`, `org_id` `org-{n:05}`),
    /// valid for 15 minutes.
    pub fn token(&self, runtime: &tokio::runtime::Runtime, n: usize) -> String {
        let signer: Arc<dyn Signer> = self.signers[n % self.signers.len()].clone();
        let lifetime = Lifetime::new(
            std::time::Duration::from_secs(900),
            std::time::Duration::from_secs(900),
        )
        .expect("lifetime");
        let issuer = Issuer::new(self.issuer(n), Arc::new(KeySet::single(signer)), lifetime).expect("issuer");
        let mut request = TokenRequest::new("connector-7f3a9c", AUDIENCE);
        request
            .attributes
            .insert("org_id", serde_json::Value::String(format!("org-{n:05}")))
            .expect("not a registered claim");
        runtime
            .block_on(issuer.issue(&request))
            .expect("issue")
            .token
            .into_string()
    }

    /// The JWKS document tenant `n` serves.
    pub fn jwks(&self, n: usize) -> &str {
        &self.shared.jwks[n % self.shared.jwks.len()]
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

fn tenant(shared: &Shared, n: &str) -> Option<usize> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    n.parse().ok()
}

async fn discovery(State(shared): State<Arc<Shared>>, Path(n): Path<String>) -> Response {
    match tenant(&shared, &n) {
        Some(n) => axum::Json(serde_json::json!({
            "issuer": format!("{}/t/{n}", shared.base),
            "jwks_uri": format!("{}/t/{n}/jwks.json", shared.base),
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn jwks_of(State(shared): State<Arc<Shared>>, Path(n): Path<String>) -> Response {
    match tenant(&shared, &n) {
        Some(n) => (
            [("cache-control", "public, max-age=3600")],
            shared.jwks[n % shared.jwks.len()].clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
