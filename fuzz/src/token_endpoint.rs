//! The whole token service router, `oidc_server::app(state)`, driven with
//! `tower::ServiceExt::oneshot` (no socket) with an arbitrary method, path,
//! headers and body.
//!
//! Input: `METHOD PATH` on the first line, then header lines, an empty
//! line and the body. An unreadable method or path falls back to
//! `POST /token`.
//!
//! The state is the test suite's (oidc-server/tests/it/support/fixture.rs):
//! a generated ES256 signing key, a secret connector, a `private_key_jwt`
//! connector (whose key is oidc-core's P-256 test key, so seeds carry valid
//! assertions), `aws_iam` with STS on a closed loopback port, the memory
//! replay store and a clock fixed at [`NOW`]. The failure limit is high so
//! that the fuzzer's failures do not turn every later answer into a 429.
//!
//! Properties: no answer is a 500 or another 5xx than 503 (which must say
//! when to retry); every answer of `/token` is `no-store` JSON; a 200 of
//! `/token` carries a token that verifies against the service's own JWKS.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode, Uri};
use http_body_util::BodyExt as _;
use oidc_core::clock::ManualWallClock;
use oidc_core::keys::{LocalSigner, Signer as _};
use oidc_core::{AccessTokenClaims, JwkSet, Policy, Verifier};
use oidc_server::config::{Config, Origin, Overrides};
use oidc_server::AppState;
use serde_json::Value;
use tower::ServiceExt as _;

/// The issuer of the state.
pub const ISSUER: &str = "https://tokens.test";
/// The fixed clock (2023-11-14T22:13:20Z).
pub const NOW: u64 = 1_700_000_000;
/// The secret connector and its secret.
pub const SECRET_CLIENT: &str = "connector-secret";
/// Its secret.
pub const SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuv";
/// The `private_key_jwt` connector.
pub const JWT_CLIENT: &str = "connector-jwt";
/// The audience of both.
pub const AUDIENCE: &str = "https://control-plane.test";

const PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    40_000,
);

fn config_toml() -> String {
    let digest: String = ring::digest::digest(&ring::digest::SHA256, SECRET.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let client = LocalSigner::from_pem(crate::keys::P256).expect("the P-256 test key");
    let jwks = serde_json::json!({ "keys": [Value::Object(client.verifying_key().to_jwk())] });
    let jwks = toml::Value::try_from(jwks).expect("JWKS as TOML");
    format!(
        r#"
issuer = "{ISSUER}"

[signing]
kind = "local"
generate = "ES256"

[auth]
failure_limit = 1000000000
failure_window_secs = 1

[aws_iam]
sts_endpoint = "http://127.0.0.1:9"

[[connectors]]
id = "{SECRET_CLIENT}"
secret_sha256 = "{digest}"
audiences = ["{AUDIENCE}", "https://other.test"]
scopes = ["actions:read", "actions:write"]
default_scopes = ["actions:read"]
attributes = {{ org_id = "org-1", account_id = "123456789012" }}
aws_principals = ["arn:aws:iam::123456789012:role/connector"]

[[connectors]]
id = "{JWT_CLIENT}"
audiences = ["{AUDIENCE}"]
scopes = ["actions:read"]
jwks = {jwks}
"#
    )
}

struct Fixture {
    state: AppState,
    verifier: Verifier<JwkSet>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        crate::block_on(async {
            let config = Config::from_toml(
                &config_toml(),
                Origin::File("fuzz-token-endpoint.toml".into()),
                std::iter::empty(),
                &Overrides::default(),
            )
            .unwrap_or_else(|e| panic!("the fuzz configuration is invalid: {e}"));
            let config = Arc::new(config);
            let context = oidc_server::ServiceContext::default();
            let keys = oidc_server::keyset::key_set_with(&config, &context)
                .await
                .expect("signing keys");
            let jwks = keys.current().published().clone();
            let replay = oidc_server::replay::store_for(&config, &context)
                .await
                .expect("replay store");
            let state = AppState::builder(config, keys)
                .replay_store(replay)
                .clock(Arc::new(ManualWallClock::new(NOW)))
                .build();
            let policy = Policy::builder(ISSUER, [AUDIENCE, "https://other.test"])
                .build()
                .expect("a policy");
            let verifier = Verifier::new(policy, jwks).with_clock(Arc::new(ManualWallClock::new(NOW)));
            Fixture { state, verifier }
        })
    })
}

/// `METHOD PATH`, header lines, an empty line, the body.
pub fn parse_request(data: &[u8]) -> Request<Body> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let (first, headers) = match head.iter().position(|b| *b == b'\n') {
        Some(at) => (&head[..at], &head[at + 1..]),
        None => (head, &[][..]),
    };
    let mut words = first.splitn(2, |b| *b == b' ');
    let method = words
        .next()
        .and_then(|m| Method::from_bytes(m).ok())
        .unwrap_or(Method::POST);
    let uri = words
        .next()
        .and_then(|u| Uri::try_from(u).ok())
        .unwrap_or_else(|| Uri::from_static("/token"));
    let mut request = Request::new(Body::from(body.to_vec()));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = crate::credential::headers(headers);
    request.extensions_mut().insert(ConnectInfo(PEER));
    request
}

pub fn run(data: &[u8]) {
    let f = fixture();
    let request = parse_request(data);
    let path = request.uri().path().to_owned();
    let (status, headers, body) = crate::block_on(async {
        let response = oidc_server::app(f.state.clone())
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("a response body").to_bytes();
        (parts.status, parts.headers, body)
    });
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 for {path}: {body:?}"
    );
    if status.is_server_error() {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{status} for {path}");
        assert!(
            headers.contains_key(header::RETRY_AFTER),
            "503 without Retry-After for {path}: {body:?}"
        );
    }
    if path == "/token" && status != StatusCode::METHOD_NOT_ALLOWED {
        let document: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{status} from /token is not JSON ({e}): {body:?}"));
        assert_eq!(
            headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{status} from /token without Cache-Control: no-store"
        );
        if status == StatusCode::OK {
            let token = document["access_token"]
                .as_str()
                .expect("a 200 without access_token");
            crate::block_on(f.verifier.verify::<AccessTokenClaims>(token))
                .unwrap_or_else(|e| panic!("the service issued a token its own JWKS refuses: {e}"));
        }
    }
}
