//! A platform's token issuer, as oidc-server's token exchange meets it: an
//! OpenID discovery document and a JWKS on loopback, and the tokens that
//! platform hands its workloads, signed with the key that JWKS publishes.
//!
//! Shapes, each as the real issuer serves them:
//! - [`UpstreamIdp::kubernetes`]: a Kubernetes API server's service-account
//!   issuer (RS256, RSA-2048, JWKS at `/openid/v1/jwks`, `Cache-Control:
//!   public, max-age=3600`); its projected tokens carry no `typ` and nest
//!   the pod's identity under `kubernetes.io`;
//! - [`UpstreamIdp::spire`]: SPIRE's OIDC discovery provider (ES256, JWKS at
//!   `/keys`); JWT-SVIDs have `typ: JWT` and no `jti`;
//! - [`UpstreamIdp::aws`]: an AWS account's STS issuer as AWS publishes it
//!   (ES384 key `EC384_0`, the discovery document without
//!   `authorization_endpoint` or `response_types_supported`): for the
//!   benchmark, which needs thousands of tokens signed ahead. The tests
//!   that get AWS tokens the way a connector does use
//!   [`crate::sts_web_identity`] and the real aws-sdk-sts.
//!
//! What it simplifies: the issuer is `http://127.0.0.1:PORT` (loopback
//! http, which oidc-core accepts), one key, no rotation. It counts the
//! requests for its discovery document and its JWKS, so a test can tell how
//! often a verifier fetched them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use oidc_core::keys::{LocalSigner, Signer as _};
use oidc_core::{base64url, Algorithm};
use serde_json::{json, Map, Value};

/// A running issuer; stops when dropped.
pub struct UpstreamIdp {
    /// Its issuer URL, `http://127.0.0.1:PORT`.
    pub issuer: String,
    state: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    signer: LocalSigner,
    kid: String,
    discovery: Value,
    jwks: Value,
    cache_control: String,
    discovery_requests: AtomicU64,
    jwks_requests: AtomicU64,
}

/// How an issuer publishes itself.
struct Shape {
    signer: LocalSigner,
    kid: &'static str,
    jwks_path: &'static str,
    /// Discovery members besides `issuer` and `jwks_uri`.
    discovery: Value,
    /// The JWKS's `max-age`.
    max_age_secs: u64,
}

impl UpstreamIdp {
    /// A Kubernetes API server's service-account token issuer (the
    /// workspace's RSA-2048 test key).
    pub async fn kubernetes() -> Self {
        let pem = std::fs::read_to_string(crate::workspace_path("oidc-core/tests/keys/rsa2048.pem"))
            .expect("the RSA-2048 test key");
        Self::start(Shape {
            signer: LocalSigner::from_pem_with_algorithm(&pem, Some(Algorithm::RS256)).expect("RSA key"),
            kid: "k8s-sa-1",
            jwks_path: "/openid/v1/jwks",
            discovery: json!({
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }),
            max_age_secs: 3600,
        })
        .await
    }

    /// SPIRE's OIDC discovery provider, publishing the trust domain's JWT
    /// signing key.
    pub async fn spire() -> Self {
        Self::start(Shape {
            signer: LocalSigner::generate(Algorithm::ES256).expect("a P-256 key").0,
            kid: "spire-jwt-1",
            jwks_path: "/keys",
            discovery: json!({
                "authorization_endpoint": "",
                "response_types_supported": ["id_token"],
                "subject_types_supported": [],
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384"],
            }),
            max_age_secs: 300,
        })
        .await
    }

    /// An AWS account's STS web identity token issuer, ES384 only, its JWKS
    /// cached for `max_age_secs`.
    pub async fn aws(max_age_secs: u64) -> Self {
        Self::start(Shape {
            signer: LocalSigner::generate(Algorithm::ES384).expect("a P-384 key").0,
            kid: "EC384_0",
            jwks_path: "/.well-known/jwks.json",
            discovery: json!({
                "id_token_signing_alg_values_supported": ["RS256", "ES384"],
                "subject_types_supported": ["public"],
                "claims_supported": ["aud", "exp", "iat", "iss", "jti", "sub", crate::sts_web_identity::AWS_NAMESPACE],
            }),
            max_age_secs,
        })
        .await
    }

    async fn start(shape: Shape) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the upstream issuer");
        let issuer = format!("http://{}", listener.local_addr().expect("local address"));
        let mut jwk = shape.signer.verifying_key().to_jwk();
        jwk.insert("kid".into(), json!(shape.kid));
        jwk.insert("use".into(), json!("sig"));
        let mut discovery = shape.discovery;
        discovery["issuer"] = json!(issuer);
        discovery["jwks_uri"] = json!(format!("{issuer}{}", shape.jwks_path));
        let state = Arc::new(Inner {
            signer: shape.signer,
            kid: shape.kid.to_owned(),
            discovery,
            jwks: json!({ "keys": [jwk] }),
            cache_control: format!("public, max-age={}", shape.max_age_secs),
            discovery_requests: AtomicU64::new(0),
            jwks_requests: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery_document))
            .route(shape.jwks_path, get(jwks))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { issuer, state, task }
    }

    /// `claims` signed with the issuer's key, the header `alg`, `kid` and,
    /// when given, `typ`.
    pub fn sign(&self, typ: Option<&str>, claims: &Value) -> String {
        let mut header = Map::new();
        header.insert(
            "alg".into(),
            json!(self.state.signer.verifying_key().algorithm().name()),
        );
        header.insert("kid".into(), json!(self.state.kid));
        if let Some(typ) = typ {
            header.insert("typ".into(), json!(typ));
        }
        let input = format!(
            "{}.{}",
            base64url::encode(Value::Object(header).to_string()),
            base64url::encode(claims.to_string())
        );
        let signature = self.state.signer.sign_now(input.as_bytes()).expect("sign");
        format!("{input}.{}", base64url::encode(signature))
    }

    /// Requests for the discovery document so far.
    pub fn discovery_requests(&self) -> u64 {
        self.state.discovery_requests.load(Ordering::SeqCst)
    }

    /// Requests for the JWKS so far.
    pub fn jwks_requests(&self) -> u64 {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }
}

impl Drop for UpstreamIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery_document(State(state): State<Arc<Inner>>) -> Response {
    state.discovery_requests.fetch_add(1, Ordering::SeqCst);
    axum::Json(state.discovery.clone()).into_response()
}

async fn jwks(State(state): State<Arc<Inner>>) -> Response {
    state.jwks_requests.fetch_add(1, Ordering::SeqCst);
    (
        [(CACHE_CONTROL, state.cache_control.clone())],
        axum::Json(state.jwks.clone()),
    )
        .into_response()
}
