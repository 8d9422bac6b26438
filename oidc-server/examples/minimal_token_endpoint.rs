//! The least any token endpoint must do, as a baseline for `bench/run.sh
//! http`: check `Authorization: Basic` against a SHA-256 digest in constant
//! time, serialize the claims, sign them with one ring ES256 signature, and
//! answer the token. No audit log, no metrics, no throttling, no config, no
//! timeouts: what oidc-server does beyond this is what the benchmark's
//! fraction measures.
//!
//! Run (the same key, connector and secret as the embedded default):
//!
//! ```sh
//! cargo run --release -p oidc-server --example minimal_token_endpoint -- 127.0.0.1:18070
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use subtle::ConstantTimeEq;

const KEY_PEM: &str = include_str!("../../keys-example/dev-es256.pem");
const CLIENT: &str = "demo-connector";
const SECRET_SHA256: &str = "c12c2d1aed64589e0446d7f485ccce435859ade12e2d00ced3229420296f0bd6";

struct Endpoint {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    digest: [u8; 32],
    issuer: String,
    header: String,
}

async fn token(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64).ok())
        .and_then(|pair| String::from_utf8(pair).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
            let equal: bool = digest.as_ref().ct_eq(&endpoint.digest).into();
            (id == CLIENT && equal).then_some(())
        });
    if authorized.is_none() {
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"invalid_client\"}").into_response();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut jti = [0u8; 16];
    if endpoint.rng.fill(&mut jti).is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let claims = serde_json::json!({
        "iss": endpoint.issuer, "sub": CLIENT, "aud": "http://127.0.0.1:9090", "client_id": CLIENT,
        "iat": now, "nbf": now, "exp": now + 300, "jti": URL_SAFE_NO_PAD.encode(jti), "scope": "actions:read",
    });
    let input = format!(
        "{}.{}",
        endpoint.header,
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let Ok(signature) = endpoint.key.sign(&endpoint.rng, input.as_bytes()) else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    let body = serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "actions:read"});
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18070".into())
        .parse()?;
    let der: String = KEY_PEM.lines().filter(|l| !l.starts_with("-----")).collect();
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &STANDARD.decode(der)?, &rng)
        .map_err(|e| format!("key: {e}"))?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(SECRET_SHA256, &mut digest)?;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"at+jwt","kid":"minimal"}"#);
    let endpoint = Arc::new(Endpoint {
        key,
        rng,
        digest,
        issuer: format!("http://{addr}"),
        header,
    });
    let app = Router::new().route("/token", post(token)).with_state(endpoint);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
