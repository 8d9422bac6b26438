//! A loopback server that plays many token services at once: tenant `t`
//! publishes its discovery document and JWKS under `/t/{t}/`, answers as its
//! [`Mode`] says (up, an HTTP error, or never), and every request is counted
//! per tenant; with the keys, tokens and entries the trust and cache tests
//! share.

#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::verify::trust::{IssuerEntry, IssuerEntryBuilder, TrustedIssuers};
use oidc_core::{AccessTokenClaims, Algorithm, Issuer, JwkSet, KeySet, Lifetime, TokenRequest, VerifyError};

pub(crate) const AUDIENCE: &str = "https://api.example.com";
pub(crate) const SECS: fn(u64) -> Duration = Duration::from_secs;

// ---------------------------------------------------------------------------
// The tenant server
// ---------------------------------------------------------------------------

/// How a tenant's endpoints answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    Up,
    Status(StatusCode),
    /// Accept the request and never answer.
    Hang,
}

pub(crate) struct Tenant {
    jwks: Mutex<String>,
    /// Members added to the discovery document (AWS STS's, for example).
    discovery_extra: Mutex<serde_json::Map<String, serde_json::Value>>,
    mode: Mutex<Mode>,
    pub(crate) discovery_hits: AtomicUsize,
    pub(crate) jwks_hits: AtomicUsize,
}

impl Tenant {
    pub(crate) fn hits(&self) -> (usize, usize) {
        (
            self.discovery_hits.load(Ordering::SeqCst),
            self.jwks_hits.load(Ordering::SeqCst),
        )
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub(crate) fn serve(&self, jwks: &JwkSet) {
        *self.jwks.lock().unwrap() = jwks.to_json();
    }

    /// Serves this JWKS document as it is.
    pub(crate) fn serve_text(&self, jwks: &str) {
        *self.jwks.lock().unwrap() = jwks.to_owned();
    }

    /// Adds these members to the discovery document.
    pub(crate) fn extend_discovery(&self, members: serde_json::Value) {
        if let serde_json::Value::Object(members) = members {
            self.discovery_extra.lock().unwrap().extend(members);
        }
    }
}

struct ServerState {
    base: String,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    requests: AtomicUsize,
}

pub(crate) struct TenantServer {
    pub(crate) base: String,
    state: Arc<ServerState>,
}

impl TenantServer {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ServerState {
            base: base.clone(),
            tenants: RwLock::default(),
            requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/t/{tenant}/.well-known/openid-configuration", get(discovery))
            .route("/t/{tenant}/jwks.json", get(jwks))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    /// The issuer URL of tenant `id`.
    pub(crate) fn issuer(&self, id: &str) -> String {
        format!("{}/t/{id}", self.base)
    }

    /// Adds tenant `id` publishing `jwks`.
    pub(crate) fn add(&self, id: &str, jwks: &JwkSet) -> Arc<Tenant> {
        let tenant = Arc::new(Tenant {
            jwks: Mutex::new(jwks.to_json()),
            discovery_extra: Mutex::default(),
            mode: Mutex::new(Mode::Up),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
        });
        self.state
            .tenants
            .write()
            .unwrap()
            .insert(id.to_owned(), Arc::clone(&tenant));
        tenant
    }

    pub(crate) fn tenant(&self, id: &str) -> Arc<Tenant> {
        Arc::clone(&self.state.tenants.read().unwrap()[id])
    }

    /// Requests of any kind the server has answered or is answering.
    pub(crate) fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

/// Counts the request (for the tenant, on `hits`), then answers as the
/// tenant's mode says.
async fn answer(
    state: &ServerState,
    id: &str,
    hits: fn(&Tenant) -> &AtomicUsize,
    body: impl FnOnce(&Tenant) -> Response,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let tenant = state.tenants.read().unwrap().get(id).cloned();
    let Some(tenant) = tenant else {
        return StatusCode::NOT_FOUND.into_response();
    };
    hits(&tenant).fetch_add(1, Ordering::SeqCst);
    let mode = *tenant.mode.lock().unwrap();
    match mode {
        Mode::Up => body(&tenant),
        Mode::Status(status) => status.into_response(),
        Mode::Hang => std::future::pending().await,
    }
}

async fn discovery(State(state): State<Arc<ServerState>>, Path(id): Path<String>) -> Response {
    let base = state.base.clone();
    answer(
        &state,
        &id,
        |t| &t.discovery_hits,
        |tenant| {
            let mut document = json!({
                "issuer": format!("{base}/t/{id}"),
                "jwks_uri": format!("{base}/t/{id}/jwks.json"),
            });
            if let Some(document) = document.as_object_mut() {
                document.extend(tenant.discovery_extra.lock().unwrap().clone());
            }
            axum::Json(document).into_response()
        },
    )
    .await
}

async fn jwks(State(state): State<Arc<ServerState>>, Path(id): Path<String>) -> Response {
    answer(
        &state,
        &id,
        |t| &t.jwks_hits,
        |tenant| {
            let body = tenant.jwks.lock().unwrap().clone();
            ([("cache-control", "public, max-age=300")], body).into_response()
        },
    )
    .await
}

// ---------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------

/// A signing key and the one-key JWKS that publishes it.
#[derive(Clone)]
pub(crate) struct TestKey {
    pub(crate) signer: Arc<LocalSigner>,
    pub(crate) jwks: JwkSet,
}

impl TestKey {
    pub(crate) fn new(alg: Algorithm) -> Self {
        let (signer, _) = LocalSigner::generate(alg).unwrap();
        let jwks = JwkSet::from_keys([signer.verifying_key().clone()]).unwrap();
        Self {
            signer: Arc::new(signer),
            jwks,
        }
    }

    /// A token naming `iss`, for `aud`, with `org_id` if given.
    pub(crate) async fn token(&self, iss: &str, aud: &str, org_id: Option<&str>) -> String {
        let keys: Arc<dyn Signer> = self.signer.clone();
        let issuer = Issuer::new(iss, Arc::new(KeySet::single(keys)), Lifetime::default()).unwrap();
        let mut request = TokenRequest::new("connector-1", aud);
        if let Some(org) = org_id {
            request.attributes.insert("org_id", json!(org)).unwrap();
        }
        issuer.issue(&request).await.unwrap().token.into_string()
    }
}

/// The entry of tenant `id` of `server`, requiring `org_id = id`.
pub(crate) fn entry(server: &TenantServer, id: &str) -> IssuerEntryBuilder {
    IssuerEntry::builder(id, server.issuer(id), [AUDIENCE]).require_claim("org_id", id)
}

pub(crate) async fn verify(trusted: &TrustedIssuers, token: &str) -> Result<(String, String), VerifyError> {
    trusted
        .verify::<AccessTokenClaims>(token)
        .await
        .map(|t| (t.issuer_name().to_owned(), t.claims().sub.clone()))
}

pub(crate) fn reason(result: Result<(String, String), VerifyError>) -> &'static str {
    result.unwrap_err().reason()
}
