//! DPoP (RFC 9449) at `POST /token`: every refusal of the issue's list its
//! own test, and tokens bound to the proof's key (`cnf.jkt`, `token_type:
//! DPoP`) for client_secret_basic, private_key_jwt and token exchange. The
//! router is driven without a socket.

use axum::body::Body;
use axum::http::header::CACHE_CONTROL;
use axum::http::Request;
use oidc_core::base64url;
use oidc_core::dpop::{DpopKey, DpopNonces, DpopProof};
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::Algorithm;
use serde_json::{json, Value};

use crate::edge::audited;
use crate::support::fixture::{
    assertion, dpop_required_connector, good_claims, now, AUDIENCE, DPOP_CLIENT as REQUIRED, JWT_BEARER,
    SECRET, SECRET_CLIENT,
};
use crate::support::{basic, form_request, Answer, TestApp, ISSUER};

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

/// The test configuration with [`REQUIRED`], the connector with `dpop =
/// "required"` (the same secret as [`SECRET_CLIENT`]), and `extra` appended.
async fn app_with(extra: &str) -> TestApp {
    let extra = extra.to_owned();
    TestApp::with(move |toml| format!("{toml}\n{extra}\n{}", dpop_required_connector())).await
}

async fn app() -> TestApp {
    app_with("").await
}

fn token_url() -> String {
    format!("{ISSUER}/token")
}

/// A fresh proof of `key` for `POST` to the token endpoint.
fn proof(key: &DpopKey) -> String {
    DpopProof::builder(key, "POST", &token_url())
        .sign()
        .unwrap()
        .into_string()
}

/// `POST /token` with `form`, `authorization`, and one `DPoP` header per proof.
async fn post(app: &TestApp, authorization: Option<&str>, form: &[(&str, &str)], proofs: &[&str]) -> Answer {
    let mut request = form_request("/token", authorization, form);
    for proof in proofs {
        request.headers_mut().append("dpop", proof.parse().unwrap());
    }
    app.send(request).await
}

/// A client_secret_basic request of `client` with `proofs`.
async fn basic_post(app: &TestApp, client: &str, proofs: &[&str]) -> Answer {
    post(app, Some(&basic(client, SECRET)), &[GRANT], proofs).await
}

/// The same, with its audit event.
async fn basic_audited(app: &TestApp, client: &str, proofs: &[&str]) -> (Answer, Value) {
    let (answer, events) = audited(basic_post(app, client, proofs)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    (answer, events[0].clone())
}

fn claims_of(answer: &Answer) -> Value {
    let token = answer.body["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64url::decode(payload).unwrap()).unwrap()
}

/// A token bound to `key`.
fn assert_bound(answer: &Answer, key: &DpopKey) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["token_type"], "DPoP");
    let claims = claims_of(answer);
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint(), "{claims}");
    claims
}

/// A 400 with RFC 9449 `error`, `reason` in the audit event, and a
/// description that holds nothing of the proof.
fn assert_refused(answer: &Answer, event: &Value, error: &str, reason: &str, proof: &str) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body["error"], error, "{}", answer.body);
    assert_eq!(answer.headers[CACHE_CONTROL], "no-store");
    assert!(answer.body.get("access_token").is_none());
    assert_eq!(event["reason"], reason, "{event}");
    let description = answer.body["error_description"].as_str().unwrap();
    for part in proof.split('.') {
        assert!(part.len() < 8 || !description.contains(part), "{description}");
    }
    assert!(!event.to_string().contains(proof.split('.').next().unwrap_or("")) || proof.is_empty());
}

/// A JWS of `header` and `claims` with `sign`'s signature, for proofs the
/// builder would never make.
fn raw_jws(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string()),
        base64url::encode(claims.to_string())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", base64url::encode(signature))
}

fn proof_claims() -> Value {
    json!({
        "jti": oidc_core::Jti::random().unwrap().as_str(),
        "htm": "POST",
        "htu": token_url(),
        "iat": now(),
    })
}

// ---------------------------------------------------------------------------
// Accepted

#[tokio::test]
async fn client_secret_basic_with_a_proof_gets_a_dpop_bound_token() {
    let app = app().await;
    let key = DpopKey::generate().unwrap();
    for client in [SECRET_CLIENT, REQUIRED] {
        let answer = basic_post(&app, client, &[&proof(&key)]).await;
        let claims = assert_bound(&answer, &key);
        assert_eq!(claims["sub"], client);
        // No nonces configured: none is sent.
        assert!(answer.headers.get("dpop-nonce").is_none());
    }
    // Without a proof, a connector that allows DPoP gets a bearer token.
    let answer = basic_post(&app, SECRET_CLIENT, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["token_type"], "Bearer");
    assert!(claims_of(&answer).get("cnf").is_none());
}

#[tokio::test]
async fn every_allowed_algorithm_binds_its_key() {
    let app = app().await;
    for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
        let key = DpopKey::generate_with(alg).unwrap();
        assert_bound(&basic_post(&app, REQUIRED, &[&proof(&key)]).await, &key);
    }
}

#[tokio::test]
async fn private_key_jwt_with_a_proof_gets_a_dpop_bound_token() {
    let app = app().await;
    let key = DpopKey::generate().unwrap();
    let jwt = assertion(&app.client_key, "JWT", good_claims(ISSUER)).await;
    let form = [
        GRANT,
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", jwt.as_str()),
    ];
    let answer = post(&app, None, &form, &[&proof(&key)]).await;
    assert_eq!(assert_bound(&answer, &key)["sub"], "connector-jwt");
}

#[tokio::test]
async fn a_token_exchange_with_a_proof_gets_a_dpop_bound_token() {
    let upstream = LocalSigner::generate(Algorithm::ES256).unwrap().0;
    let jwks = toml::Value::try_from(json!({ "keys": [upstream.verifying_key().to_jwk()] })).unwrap();
    let app = TestApp::with(|toml| {
        format!(
            r#"{toml}
[[upstream_issuers]]
name = "spiffe"
issuer = "https://spire.example.org"
typ = ["JWT"]
algorithms = ["ES256"]
jwks = {jwks}

[[connectors]]
id = "spiffe-poller"
audiences = ["{AUDIENCE}"]
dpop = "required"
federated = [{{ issuer = "spiffe", subject = "spiffe://example.org/poller" }}]
"#
        )
    })
    .await;
    let subject_token = || {
        let now = now();
        let claims = json!({
            "iss": "https://spire.example.org", "sub": "spiffe://example.org/poller",
            "aud": [ISSUER], "iat": now, "exp": now + 300,
            "jti": oidc_core::Jti::random().unwrap().as_str(),
        });
        let header = json!({ "alg": "ES256", "typ": "JWT", "kid": upstream.kid() });
        raw_jws(&header, &claims, |input| upstream.sign_now(input).unwrap())
    };
    let exchange = |token: String, proofs: Vec<String>| {
        let app = &app;
        async move {
            let form = [
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("subject_token", token.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ];
            let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
            post(app, None, &form, &proofs).await
        }
    };
    let key = DpopKey::generate().unwrap();
    let answer = exchange(subject_token(), vec![proof(&key)]).await;
    assert_eq!(
        answer.body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(assert_bound(&answer, &key)["sub"], "spiffe-poller");
    // The connector requires DPoP: the same exchange without a proof is refused.
    let answer = exchange(subject_token(), vec![]).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body["error"], "invalid_dpop_proof");
}

#[tokio::test]
async fn discovery_publishes_the_proof_algorithms() {
    let app = app_with("[dpop]\nalgorithms = [\"ES256\", \"EdDSA\"]\n").await;
    let doc = app.get("/.well-known/openid-configuration").await.body;
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
    // An algorithm left out is refused.
    let key = DpopKey::generate_with(Algorithm::ES384).unwrap();
    let p = proof(&key);
    let (answer, event) = basic_audited(&app, REQUIRED, &[&p]).await;
    assert_refused(
        &answer,
        &event,
        "invalid_dpop_proof",
        "dpop_algorithm_not_allowed",
        &p,
    );
    let doc = TestApp::new()
        .await
        .get("/.well-known/openid-configuration")
        .await
        .body;
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256", "PS256", "ES384"])
    );
}

// ---------------------------------------------------------------------------
// Refused, each its own test

#[tokio::test]
async fn a_required_connector_without_a_proof_gets_no_bearer_token() {
    let app = app().await;
    let (answer, event) = basic_audited(&app, REQUIRED, &[]).await;
    assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_required", "");
    assert_eq!(event["client"], REQUIRED, "{event}");
    let counts = app.state.metrics().token_counts();
    assert_eq!(counts.refused, vec![("dpop_required", 1)]);
}

#[tokio::test]
async fn a_proof_for_another_method_is_refused() {
    let app = app().await;
    let key = DpopKey::generate().unwrap();
    let p = DpopProof::builder(&key, "GET", &token_url())
        .sign()
        .unwrap()
        .into_string();
    let (answer, event) = basic_audited(&app, SECRET_CLIENT, &[&p]).await;
    assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_wrong_method", &p);
}

#[tokio::test]
async fn a_proof_for_another_url_is_refused() {
    let app = app().await;
    let key = DpopKey::generate().unwrap();
    for url in [
        "https://tokens.test/other",
        "https://elsewhere.test/token",
        "http://tokens.test/token",
        "https://tokens.test:8443/token",
    ] {
        let p = DpopProof::builder(&key, "POST", url)
            .sign()
            .unwrap()
            .into_string();
        let (answer, event) = basic_audited(&app, SECRET_CLIENT, &[&p]).await;
        assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_wrong_url", &p);
    }
    // RFC 9449 §4.3: the host's case, the default port and a query do not matter.
    for url in ["https://TOKENS.test/token", "https://tokens.test:443/token?x=1"] {
        let p = DpopProof::builder(&key, "POST", url)
            .sign()
            .unwrap()
            .into_string();
        assert_bound(&basic_post(&app, SECRET_CLIENT, &[&p]).await, &key);
    }
}

#[tokio::test]
async fn a_proof_issued_outside_the_window_is_refused() {
    let app = app_with("[dpop]\niat_window_secs = 30\n").await;
    let key = DpopKey::generate().unwrap();
    let old = DpopProof::builder(&key, "POST", &token_url())
        .issued_at(now() - 45)
        .sign()
        .unwrap()
        .into_string();
    let (answer, event) = basic_audited(&app, REQUIRED, &[&old]).await;
    assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_too_old", &old);
    let future = DpopProof::builder(&key, "POST", &token_url())
        .issued_at(now() + 60)
        .sign()
        .unwrap()
        .into_string();
    let (answer, event) = basic_audited(&app, REQUIRED, &[&future]).await;
    assert_refused(
        &answer,
        &event,
        "invalid_dpop_proof",
        "dpop_issued_in_future",
        &future,
    );
    // Within the window: accepted.
    let recent = DpopProof::builder(&key, "POST", &token_url())
        .issued_at(now() - 20)
        .sign()
        .unwrap()
        .into_string();
    assert_bound(&basic_post(&app, REQUIRED, &[&recent]).await, &key);
}

#[tokio::test]
async fn the_same_proof_twice_is_refused_the_second_time() {
    let app = app().await;
    let key = DpopKey::generate().unwrap();
    let p = proof(&key);
    assert_bound(&basic_post(&app, REQUIRED, &[&p]).await, &key);
    let (answer, event) = basic_audited(&app, REQUIRED, &[&p]).await;
    assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_replayed", &p);
    // Also by another client, and by another grant's request.
    let (answer, event) = basic_audited(&app, SECRET_CLIENT, &[&p]).await;
    assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_replayed", &p);
}

#[tokio::test]
async fn a_refused_request_does_not_spend_its_proof() {
    let app = app().await;
    let key = DpopKey::generate().unwrap();
    let p = proof(&key);
    // A wrong secret: the proof is not recorded, so a stranger cannot fill the store.
    let answer = post(&app, Some(&basic(REQUIRED, "wrong")), &[GRANT], &[&p]).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_bound(&basic_post(&app, REQUIRED, &[&p]).await, &key);
}

#[tokio::test]
async fn alg_none_and_hs256_proofs_are_refused() {
    let app = app().await;
    let key = DpopKey::generate().unwrap();
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "typ": "dpop+jwt", "alg": alg, "jwk": key.public_jwk() });
        let p = raw_jws(&header, &proof_claims(), |_| Vec::new());
        let p = p.trim_end_matches('.').to_owned() + ".";
        let (answer, event) = basic_audited(&app, REQUIRED, &[&p]).await;
        assert_eq!(
            answer.body["error"], "invalid_dpop_proof",
            "{alg}: {}",
            answer.body
        );
        assert_eq!(answer.status, 400);
        assert!(event["reason"].as_str().unwrap().starts_with("dpop_"), "{event}");
    }
    // HS256 keyed with a secret carried in an oct jwk.
    let secret = [7u8; 32];
    let jwk = json!({ "kty": "oct", "k": base64url::encode(secret) });
    let header = json!({ "typ": "dpop+jwt", "alg": "HS256", "jwk": jwk });
    let p = raw_jws(&header, &proof_claims(), |input| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        ring::hmac::sign(&key, input).as_ref().to_vec()
    });
    let (answer, event) = basic_audited(&app, REQUIRED, &[&p]).await;
    assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_bad_algorithm", &p);
}

#[tokio::test]
async fn a_private_key_in_the_jwk_is_refused() {
    let app = app().await;
    let (signer, pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
    let mut jwk = signer.verifying_key().to_jwk();
    // The private scalar, as a careless client would leak it.
    let der = pem.as_str().to_owned();
    jwk.insert("d".into(), json!(base64url::encode(&der.as_bytes()[..32])));
    let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk });
    let p = raw_jws(&header, &proof_claims(), |input| signer.sign_now(input).unwrap());
    let (answer, event) = basic_audited(&app, REQUIRED, &[&p]).await;
    assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_private_jwk", &p);
}

#[tokio::test]
async fn an_oct_key_in_the_jwk_is_refused() {
    let app = app().await;
    let (signer, _) = LocalSigner::generate(Algorithm::ES256).unwrap();
    let jwk = json!({ "kty": "oct", "k": base64url::encode([1u8; 32]) });
    let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk });
    let p = raw_jws(&header, &proof_claims(), |input| signer.sign_now(input).unwrap());
    let (answer, event) = basic_audited(&app, REQUIRED, &[&p]).await;
    assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_symmetric_jwk", &p);
}

#[tokio::test]
async fn a_proof_with_a_bad_signature_is_refused() {
    let app = app().await;
    let key = DpopKey::generate().unwrap();
    let other = LocalSigner::generate(Algorithm::ES256).unwrap().0;
    let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk() });
    // Signed by another key than the jwk's.
    let p = raw_jws(&header, &proof_claims(), |input| other.sign_now(input).unwrap());
    let (answer, event) = basic_audited(&app, REQUIRED, &[&p]).await;
    assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_bad_signature", &p);
    // A valid proof with its claims changed after signing.
    let good = proof(&key);
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = proof_claims();
    claims["htu"] = json!(token_url());
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64url::encode(claims.to_string()),
        parts[2]
    );
    let (answer, event) = basic_audited(&app, REQUIRED, &[&forged]).await;
    assert_refused(
        &answer,
        &event,
        "invalid_dpop_proof",
        "dpop_bad_signature",
        &forged,
    );
}

#[tokio::test]
async fn two_dpop_headers_are_refused() {
    let app = app().await;
    let key = DpopKey::generate().unwrap();
    let (first, second) = (proof(&key), proof(&key));
    let (answer, event) = basic_audited(&app, REQUIRED, &[&first, &second]).await;
    assert_refused(
        &answer,
        &event,
        "invalid_dpop_proof",
        "dpop_several_headers",
        &first,
    );
    // Neither was spent.
    assert_bound(&basic_post(&app, REQUIRED, &[&first]).await, &key);
}

#[tokio::test]
async fn malformed_proofs_are_invalid_dpop_proof_never_500() {
    let app = app().await;
    let key = DpopKey::generate().unwrap();
    let good = proof(&key);
    let long = "a".repeat(9000);
    let cases = ["", "not a jwt", "a.b.c", long.as_str(), &good[..good.len() - 2]];
    for p in cases {
        let (answer, event) = basic_audited(&app, REQUIRED, &[p]).await;
        assert_eq!(answer.status, 400, "{p:.40}: {}", answer.body);
        assert_eq!(answer.body["error"], "invalid_dpop_proof", "{p:.40}");
        assert!(event["reason"].as_str().unwrap().starts_with("dpop_"), "{event}");
    }
    // Not UTF-8 (a header value may carry any visible byte).
    let mut request: Request<Body> = form_request("/token", Some(&basic(REQUIRED, SECRET)), &[GRANT]);
    request.headers_mut().insert(
        "dpop",
        axum::http::HeaderValue::from_bytes(b"\xff\xfe.a.b").unwrap(),
    );
    let answer = app.send(request).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body["error"], "invalid_dpop_proof");
    // A typ other than dpop+jwt (an access token sent as a proof).
    let header = json!({ "typ": "at+jwt", "alg": "ES256", "jwk": key.public_jwk() });
    let signer = LocalSigner::from_pem(key.pem().as_str()).unwrap();
    let p = raw_jws(&header, &proof_claims(), |input| signer.sign_now(input).unwrap());
    let (answer, event) = basic_audited(&app, REQUIRED, &[&p]).await;
    assert_refused(&answer, &event, "invalid_dpop_proof", "dpop_wrong_typ", &p);
}

// ---------------------------------------------------------------------------
// Server nonces

/// A file of `contents` in a fresh temporary folder, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(contents: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "oidc-server-dpop-{}-{}",
            std::process::id(),
            oidc_core::Jti::random().unwrap().as_str()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nonce.key");
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }

    fn toml_path(&self) -> String {
        format!("{:?}", self.0.display().to_string())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// An app with nonces under `key` (written to a file), step 60 s.
async fn nonce_app(key: &str) -> (TestApp, TempFile) {
    let file = TempFile::new(&format!("{key}\n"));
    let app = app_with(&format!(
        "[dpop]\nnonce_key_file = {}\nnonce_step_secs = 60\n",
        file.toml_path()
    ))
    .await;
    (app, file)
}

const NONCE_KEY: &str = "0123456789abcdef0123456789abcdef-nonce-key";

#[tokio::test]
async fn with_nonces_a_proof_without_one_gets_use_dpop_nonce_and_the_retry_succeeds() {
    let (app, _dir) = nonce_app(NONCE_KEY).await;
    let key = DpopKey::generate().unwrap();
    let p = proof(&key);
    let (answer, event) = basic_audited(&app, REQUIRED, &[&p]).await;
    assert_refused(&answer, &event, "use_dpop_nonce", "dpop_nonce", &p);
    let nonce = answer.headers["dpop-nonce"].to_str().unwrap().to_owned();
    // The retry with the nonce succeeds, and the answer carries the next nonce.
    let retry = DpopProof::builder(&key, "POST", &token_url())
        .nonce(&nonce)
        .sign()
        .unwrap()
        .into_string();
    let answer = basic_post(&app, REQUIRED, &[&retry]).await;
    assert_bound(&answer, &key);
    assert!(answer.headers.contains_key("dpop-nonce"));
    // A replica with the same key (another state over the same file) accepts it too.
    let again = DpopProof::builder(&key, "POST", &token_url())
        .nonce(&nonce)
        .sign()
        .unwrap()
        .into_string();
    let (replica, _dir2) = nonce_app(NONCE_KEY).await;
    assert_bound(&basic_post(&replica, REQUIRED, &[&again]).await, &key);
    // A required connector without any proof also learns the nonce.
    let answer = basic_post(&app, REQUIRED, &[]).await;
    assert_eq!(answer.body["error"], "invalid_dpop_proof");
    assert!(answer.headers.contains_key("dpop-nonce"));
}

#[tokio::test]
async fn with_nonces_an_expired_or_foreign_nonce_gets_use_dpop_nonce() {
    let (app, _dir) = nonce_app(NONCE_KEY).await;
    let key = DpopKey::generate().unwrap();
    let step = std::time::Duration::from_secs(60);
    let ours = DpopNonces::new(NONCE_KEY.as_bytes(), step).unwrap();
    let foreign = DpopNonces::new(&[9u8; 32], step).unwrap();
    let now = now();
    for nonce in [
        ours.issue(now - 180),
        foreign.issue(now),
        "not-a-nonce".to_owned(),
    ] {
        let p = DpopProof::builder(&key, "POST", &token_url())
            .nonce(&nonce)
            .sign()
            .unwrap()
            .into_string();
        let (answer, event) = basic_audited(&app, REQUIRED, &[&p]).await;
        assert_refused(&answer, &event, "use_dpop_nonce", "dpop_nonce", &p);
        assert_ne!(answer.headers["dpop-nonce"], nonce.as_str());
        assert_eq!(
            ours.check(answer.headers["dpop-nonce"].to_str().unwrap(), now),
            Ok(())
        );
    }
}

// ---------------------------------------------------------------------------
// Configuration

fn config(extra: &str) -> Result<oidc_server::config::Config, oidc_server::config::ConfigError> {
    let toml = format!(
        r#"issuer = "https://tokens.test"
[signing]
kind = "local"
generate = "ES256"
{extra}
[[connectors]]
id = "c"
secret_sha256 = "{}"
audiences = ["https://api.test"]
"#,
        "00".repeat(32)
    );
    oidc_server::config::Config::from_toml(
        &toml,
        oidc_server::config::Origin::Environment,
        std::iter::empty(),
        &Default::default(),
    )
}

#[test]
fn dpop_settings_are_checked_at_load() {
    let config_ok = config("").unwrap();
    assert_eq!(config_ok.dpop.algorithms, Algorithm::ALL.to_vec());
    assert!(config_ok.dpop.nonces.is_none());
    assert_eq!(config_ok.connectors[0].dpop, oidc_core::dpop::DpopMode::Allowed);
    for (extra, field) in [
        ("[dpop]\nalgorithms = [\"HS256\"]", "dpop.algorithms"),
        ("[dpop]\nalgorithms = []", "dpop.algorithms"),
        ("[dpop]\niat_window_secs = 0", "dpop.iat_window_secs"),
        ("[dpop]\niat_window_secs = 3600", "dpop.iat_window_secs"),
        ("[dpop]\nnonce_step_secs = 60", "dpop.nonce_step_secs"),
        (
            "[dpop]\nnonce_key_env = \"OIDC_TEST_UNSET_NONCE_KEY_VARIABLE\"",
            "dpop.nonce_key_env",
        ),
        (
            "[dpop]\nnonce_key_file = \"/nonexistent/nonce.key\"",
            "dpop.nonce_key_file",
        ),
    ] {
        let error = config(extra).unwrap_err().to_string();
        assert!(error.contains(field), "{extra}: {error}");
    }
    // A short key is refused and never echoed.
    let short = TempFile::new("tooshort-secret-key");
    let error = config(&format!("[dpop]\nnonce_key_file = {}", short.toml_path()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("at least 32"), "{error}");
    assert!(!error.contains("tooshort-secret-key"), "{error}");
    // A good key is held, and Debug never shows it.
    let good = TempFile::new(NONCE_KEY);
    let loaded = config(&format!("[dpop]\nnonce_key_file = {}", good.toml_path())).unwrap();
    assert!(loaded.dpop.nonces.is_some());
    assert!(!format!("{loaded:?}").contains(NONCE_KEY));
}

#[test]
fn a_connector_dpop_mode_other_than_required_or_allowed_is_refused() {
    let toml = r#"issuer = "https://tokens.test"
[signing]
kind = "local"
generate = "ES256"
[[connectors]]
id = "c"
secret_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
audiences = ["https://api.test"]
dpop = "sometimes"
"#;
    let error = oidc_server::config::Config::from_toml(
        toml,
        oidc_server::config::Origin::Environment,
        std::iter::empty(),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("dpop") || error.contains("sometimes"), "{error}");
}

#[test]
fn dpop_in_an_upstream_issuer_entry_is_refused() {
    let error = config(
        r#"
[[upstream_issuers]]
name = "spiffe"
issuer = "https://spire.example.org"
algorithms = ["ES256"]
dpop = "required"
jwks = { keys = [] }
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("upstream_issuers[0].dpop"), "{error}");
    assert!(error.contains("on the connector"), "{error}");
}

// ---------------------------------------------------------------------------
// Lambda: the `DPoP` header comes through the same router

#[cfg(feature = "lambda")]
#[tokio::test]
async fn a_function_url_event_with_a_proof_gets_a_dpop_bound_token() {
    use crate::lambda::{fixture, state_with_connector, ISSUER as LAMBDA_ISSUER};
    let state = state_with_connector("dpop = \"required\"").await;
    let event: Value = serde_json::from_str(&fixture("function-url-token")).unwrap();
    let invoke = |proof: Option<&str>| {
        let mut event = event.clone();
        if let Some(proof) = proof {
            event["headers"]["dpop"] = json!(proof);
        }
        let state = state.clone();
        async move {
            let response =
                oidc_server::lambda::invoke(oidc_server::lambda::router(state), &event.to_string())
                    .await
                    .unwrap();
            let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
            (response["statusCode"].as_u64().unwrap(), body)
        }
    };
    let key = DpopKey::generate().unwrap();
    let proof = DpopProof::builder(&key, "POST", &format!("{LAMBDA_ISSUER}/token"))
        .sign()
        .unwrap()
        .into_string();
    let (status, body) = invoke(Some(&proof)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let payload = body["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&base64url::decode(payload).unwrap()).unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint());
    // The same proof again, and no proof at all: refused.
    let (status, body) = invoke(Some(&proof)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
    let (status, body) = invoke(None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
}

#[test]
fn check_config_explains_dpop_and_the_embedded_default_requires_it_of_one_connector() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_oidc-server"))
        .arg("check-config")
        .env_remove("OIDC_SERVER_CONFIG")
        .env_remove("OIDC_SERVER_CONFIG_TOML")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("required by 1 connector(s) (demo-dpop-connector)"),
        "{stdout}"
    );
    assert!(stdout.contains("no server nonces"), "{stdout}");
    assert!(stdout.contains("in this process only"), "{stdout}");
    // The demo connector is as it was: DPoP allowed, not required.
    let config = oidc_server::config::Config::load(None, std::iter::empty(), &Default::default()).unwrap();
    let mode = |id: &str| config.connectors.iter().find(|c| c.id == id).unwrap().dpop;
    assert_eq!(mode("demo-connector"), oidc_core::dpop::DpopMode::Allowed);
    assert_eq!(mode("demo-dpop-connector"), oidc_core::dpop::DpopMode::Required);
}

/// A replay store that cannot record anything (DynamoDB down).
#[derive(Debug)]
struct DownStore;

#[async_trait::async_trait]
impl oidc_server::replay::ReplayStore for DownStore {
    async fn first_use(
        &self,
        _key: &oidc_server::replay::ReplayKey,
        _remember_until: u64,
        _now: u64,
    ) -> Result<oidc_server::replay::FirstUse, oidc_server::replay::StoreError> {
        Err(oidc_server::replay::StoreError::Unavailable(
            "down for the test".into(),
        ))
    }

    async fn ready(&self) -> Result<(), oidc_server::replay::StoreError> {
        Err(oidc_server::replay::StoreError::Unavailable(
            "down for the test".into(),
        ))
    }

    fn kind(&self) -> &'static str {
        "down"
    }
}

#[tokio::test]
async fn a_replay_store_that_is_down_answers_503_for_a_proof_and_bearer_tokens_go_on() {
    use crate::support::fixture::{self, client_key, test_config, StateSetup};
    let (client_key, jwks) = client_key(Algorithm::ES256);
    let overrides = oidc_server::config::Overrides {
        issuer: Some(ISSUER.to_owned()),
        ..Default::default()
    };
    let setup = StateSetup {
        replay: Some(std::sync::Arc::new(DownStore)),
        ..Default::default()
    };
    let state = fixture::app_state(&test_config(&jwks), &overrides, setup).await;
    let app = TestApp { state, client_key };
    let key = DpopKey::generate().unwrap();
    let p = proof(&key);
    let (answer, event) = basic_audited(&app, SECRET_CLIENT, &[&p]).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["error"], "temporarily_unavailable");
    assert!(answer.headers.contains_key("retry-after"));
    assert_eq!(event["reason"], "dpop_replay_store_unavailable", "{event}");
    // Without a proof, nothing needs recording.
    let answer = basic_post(&app, SECRET_CLIENT, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["token_type"], "Bearer");
}
