//! **A stand-in for AWS STS `GetWebIdentityToken`** (IAM outbound identity
//! federation), which moto (checked on 5.2.6) does not implement and no
//! emulator on the registries signs with real keys. It is not AWS: it is
//! the harness's own server, built to the shapes AWS documents and shows,
//! so that the real aws-sdk-sts and the real verifiers can be driven end to
//! end.
//!
//! What it does as STS does:
//! - speaks STS's query protocol on `POST /`: a form with
//!   `Action=GetWebIdentityToken`, `Version=2011-06-15`, the audiences as
//!   `Audience.member.N`, `DurationSeconds`, `SigningAlgorithm`,
//!   `Tags.member.N.Key`/`.Value`; answers `GetWebIdentityTokenResponse`
//!   XML (`WebIdentityToken`, `Expiration`) or STS's `ErrorResponse` XML
//!   (`Type`, `Code`, `Message`, `RequestId`);
//! - requires a SigV4 `Authorization` header and checks its signature (the
//!   access keys it knows: [`ACCESS_KEY_ID`]/[`SECRET_ACCESS_KEY`], moto's
//!   dummy pair), refusing without one (`MissingAuthenticationToken`) or with
//!   a wrong one (`SignatureDoesNotMatch`, `InvalidClientTokenId`);
//! - signs real ES384 (kid `EC384_0`) and RS256 (kid `RSA_0`) tokens, header
//!   `{"kid","typ":"JWT","alg"}`, claims `iss`, `sub` (a role ARN with a
//!   path), `aud` (a string for one audience, an array for several), `iat`,
//!   `exp`, `jti` (a UUID), no `nbf`, and AWS's claims under
//!   `"https://sts.amazonaws.com/"` (`aws_account`, `source_region`,
//!   `org_id`, `ou_path`, `principal_id`, `principal_tags`, `request_tags`,
//!   `ec2_source_instance_arn`);
//! - refuses a duration longer than the caller's session with
//!   `SessionDurationEscalationException` (the session's remaining time is
//!   set by the test: [`StsWebIdentity::set_session_limit`]), a payload
//!   over 14,984 bytes with `JWTPayloadSizeExceededException`, and values
//!   out of range with `ValidationError`;
//! - publishes the account issuer's discovery document (`issuer`,
//!   `jwks_uri`, `id_token_signing_alg_values_supported`,
//!   `subject_types_supported`, `claims_supported`; no
//!   `authorization_endpoint` or `response_types_supported`) and its JWKS
//!   (the RSA key without `alg`, the P-384 key with `alg: ES384`).
//!
//! What it simplifies:
//! - the issuer is `http://127.0.0.1:PORT/<uuid>` (loopback http, which
//!   oidc-core accepts for discovery and JWKS; a path, since only
//!   `localhost` itself counts as a loopback name), not
//!   `https://<uuid>.tokens.sts.global.api.aws`;
//! - one principal for every key it knows ([`ROLE_ARN`] in account
//!   [`ACCOUNT`], on an EC2 instance), no IAM policy (every signed caller may
//!   call `sts:GetWebIdentityToken`), no account switch for the feature (it
//!   is always enabled), no session tokens checked, no rule on tag keys and
//!   values beyond their count;
//! - the session limit is one number for every caller, not each session's
//!   own expiry.
//!
//! Every other request (any other STS action, any other service) goes to
//! moto unchanged, Host and signature included: point
//! `AWS_ENDPOINT_URL_STS` (a child process) or an SDK configuration's
//! `endpoint_url` (in-process, [`StsWebIdentity::sdk_config`]) here and the
//! rest of STS stays moto's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use oidc_core::keys::{LocalSigner, Signer as _};
use oidc_core::Algorithm;
use serde_json::{json, Value};

mod sigv4;
mod token;

pub use token::MAX_PAYLOAD_BYTES;

use token::TokenRequest;

/// The account of the principal.
pub const ACCOUNT: &str = "123456789012";
/// The principal every known access key belongs to: a role with a path (the
/// token's `sub` is the role's ARN, not the session's).
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/connectors/poller";
/// The access key id the stand-in knows (moto's dummy one).
pub const ACCESS_KEY_ID: &str = "testing";
/// Its secret key.
pub const SECRET_ACCESS_KEY: &str = "testing";
/// AWS's claims' member in the token.
pub const AWS_NAMESPACE: &str = "https://sts.amazonaws.com/";
/// The region the stand-in says it is in (`source_region`), and the tests'.
pub const REGION: &str = crate::moto::REGION;

/// One `GetWebIdentityToken` call the stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `Audience.member.N`, in order.
    pub audiences: Vec<String>,
    /// `DurationSeconds` (300 when absent).
    pub duration_secs: u64,
    /// `SigningAlgorithm`.
    pub algorithm: String,
    /// `Tags.member.N`, as (key, value).
    pub tags: Vec<(String, String)>,
    /// The error code answered, or `None` when a token was issued.
    pub refused: Option<String>,
}

/// The running stand-in; stops when dropped.
pub struct StsWebIdentity {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://ADDR`: the STS endpoint to give the SDK.
    pub endpoint: String,
    /// The account's issuer, `http://ADDR/<uuid>`.
    pub issuer: String,
    state: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    issuer: String,
    upstream: String,
    client: reqwest::Client,
    es384: LocalSigner,
    rsa: LocalSigner,
    keys: HashMap<String, String>,
    /// Seconds the caller's session has left; 0 for no limit.
    session_limit: AtomicU64,
    calls: Mutex<Vec<Call>>,
    forwarded: AtomicU64,
}

impl StsWebIdentity {
    /// Starts the stand-in on a free loopback port, forwarding what it does
    /// not serve itself to `upstream` (moto's endpoint, `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> StsWebIdentity {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the STS stand-in");
        let addr = listener.local_addr().expect("local address");
        let endpoint = format!("http://{addr}");
        let issuer = format!("{endpoint}/{}", token::uuid());
        let rsa_pem = std::fs::read_to_string(crate::workspace_path("oidc-core/tests/keys/rsa2048.pem"))
            .expect("the RSA-2048 test key");
        let state = Arc::new(Inner {
            issuer: issuer.clone(),
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: oidc_core::http::client_builder()
                .expect("TLS setup")
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("forwarding client"),
            es384: LocalSigner::generate(Algorithm::ES384).expect("a P-384 key").0,
            rsa: LocalSigner::from_pem_with_algorithm(&rsa_pem, Some(Algorithm::RS256)).expect("RSA key"),
            keys: HashMap::from([(ACCESS_KEY_ID.to_owned(), SECRET_ACCESS_KEY.to_owned())]),
            session_limit: AtomicU64::new(0),
            calls: Mutex::default(),
            forwarded: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/{account}/.well-known/openid-configuration", get(discovery))
            .route("/{account}/.well-known/jwks.json", get(jwks))
            .fallback(sts)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StsWebIdentity {
            addr,
            endpoint,
            issuer,
            state,
            task,
        }
    }

    /// Makes the caller's session end `seconds` from now, as far as token
    /// lifetimes go (`None`: no limit, the default).
    pub fn set_session_limit(&self, seconds: Option<u64>) {
        self.state
            .session_limit
            .store(seconds.unwrap_or(0), Ordering::SeqCst);
    }

    /// The `GetWebIdentityToken` calls answered so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Requests passed on to moto so far.
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// The account's JWKS as served (AWS's shape).
    pub fn jwks(&self) -> Value {
        self.state.jwks()
    }

    /// An SDK configuration whose every service endpoint is the stand-in
    /// (STS here, the rest forwarded to moto), with the known access key.
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_with(ACCESS_KEY_ID, SECRET_ACCESS_KEY).await
    }

    /// The same with other credentials (to be refused).
    pub async fn sdk_config_with(&self, access_key_id: &str, secret: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(access_key_id, secret, None, None, "e2e"))
            .http_client(oidc_core::aws::https_client())
            .load()
            .await
    }

    /// Environment for a child process whose standard AWS chain reaches STS
    /// here (`AWS_ENDPOINT_URL_STS`) and every other service at moto.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = crate::moto::env_for(&self.state.upstream);
        env.push(("AWS_ENDPOINT_URL_STS".into(), self.endpoint.clone()));
        env
    }
}

impl Drop for StsWebIdentity {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    fn signer(&self, algorithm: &str) -> Option<(&LocalSigner, &'static str)> {
        match algorithm {
            "ES384" => Some((&self.es384, "EC384_0")),
            "RS256" => Some((&self.rsa, "RSA_0")),
            _ => None,
        }
    }

    /// The JWKS as AWS publishes it: the RSA-2048 key without `alg`, the
    /// P-384 key with `alg: ES384`, under AWS's kids.
    fn jwks(&self) -> Value {
        let mut rsa = self.rsa.verifying_key().to_jwk();
        rsa.remove("alg");
        rsa.insert("kid".into(), json!("RSA_0"));
        let mut ec = self.es384.verifying_key().to_jwk();
        ec.insert("kid".into(), json!("EC384_0"));
        json!({ "keys": [rsa, ec] })
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
    }
}

/// `GET /<uuid>/.well-known/openid-configuration`: AWS's document, without
/// `authorization_endpoint` or `response_types_supported`.
async fn discovery(State(state): State<Arc<Inner>>, Path(account): Path<String>) -> Response {
    if !state.issuer.ends_with(&format!("/{account}")) {
        return StatusCode::NOT_FOUND.into_response();
    }
    axum::Json(json!({
        "issuer": state.issuer,
        "jwks_uri": format!("{}/.well-known/jwks.json", state.issuer),
        "id_token_signing_alg_values_supported": ["RS256", "ES384"],
        "subject_types_supported": ["public"],
        "claims_supported": ["aud", "exp", "iat", "iss", "jti", "sub", AWS_NAMESPACE],
    }))
    .into_response()
}

/// `GET /<uuid>/.well-known/jwks.json`.
async fn jwks(State(state): State<Arc<Inner>>, Path(account): Path<String>) -> Response {
    if !state.issuer.ends_with(&format!("/{account}")) {
        return StatusCode::NOT_FOUND.into_response();
    }
    axum::Json(state.jwks()).into_response()
}

/// Everything else: `GetWebIdentityToken` here, the rest to moto.
async fn sts(
    State(state): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let is_ours = method == Method::POST
        && form
            .iter()
            .any(|(k, v)| k == "Action" && v == "GetWebIdentityToken");
    if !is_ours {
        return forward(&state, method, &uri, &headers, body).await;
    }
    if let Err(refusal) = sigv4::check(&state.keys, &method, &uri, &headers, &body) {
        return token::error(refusal.status, refusal.code, &refusal.message);
    }
    match TokenRequest::read(&form) {
        Ok(request) => token::issue(&state, request),
        Err(refusal) => token::error(refusal.status, refusal.code, &refusal.message),
    }
}

/// Passes a request to moto as it came and its answer back as it went.
async fn forward(state: &Inner, method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Response {
    state.forwarded.fetch_add(1, Ordering::SeqCst);
    let url = format!(
        "{}{}",
        state.upstream,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut request = state.client.request(method, url);
    for (name, value) in headers {
        if !is_hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    let answer = match request.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return token::error(
                502,
                "ServiceUnavailable",
                &format!("the stand-in cannot reach moto: {e}"),
            )
        }
    };
    let status = answer.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !is_hop_by_hop(name) {
            out_headers.insert(name.clone(), value.clone());
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().extend(out_headers);
    response
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    ["connection", "content-length", "transfer-encoding", "keep-alive"].contains(&name.as_str())
}

/// A header value the stand-in writes itself (always valid).
fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("a valid header value")
}
