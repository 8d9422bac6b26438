//! Token exchange (RFC 8693) at `POST /token`, and upstream tokens as
//! client assertions: the router driven without a socket, with upstream
//! tokens shaped like the real ones (AWS STS web identity tokens, ES384 and
//! RS256 with AWS's kids and an RSA key without `alg`; a Kubernetes
//! projected service-account token; a SPIFFE JWT-SVID), signed with keys
//! generated here and pinned in the entries' JWKS, so nothing is fetched.
//!
//! Each refusal of the security catalog's "Exchange" line has its own test.

use std::net::TcpListener;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::Request;
use oidc_core::base64url;
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::Algorithm;
use oidc_server::config::{Config, Origin, Overrides};
use serde_json::{json, Map, Value};

use crate::edge::audited;
use crate::support::fixture::{now, AUDIENCE, JWT_BEARER, SECRET, SECRET_CLIENT};
use crate::support::{basic, form_request, Answer, TestApp, ISSUER};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An AWS account's STS issuer (IAM outbound identity federation).
const AWS_ISS: &str = "https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tokens.sts.global.api.aws";
/// Another account's, whose entry accepts ES384 only.
const AWS_ES384_ISS: &str = "https://9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d.tokens.sts.global.api.aws";
const K8S_ISS: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const SPIFFE_ISS: &str = "https://spire.example.org";

const ACCOUNT: &str = "123456789012";
const ROLE: &str = "arn:aws:iam::123456789012:role/connectors/poller";
const NS: &str = "https://sts.amazonaws.com/";
const K8S_SUB: &str = "system:serviceaccount:connectors:poller";
const SPIFFE_SUB: &str = "spiffe://example.org/ns/connectors/sa/poller";

/// The upstream issuers' keys.
struct Keys {
    es384: LocalSigner,
    rsa: LocalSigner,
    es256: LocalSigner,
}

fn rsa_pem() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../oidc-core/tests/keys/rsa2048.pem"
    ))
    .unwrap()
}

impl Keys {
    fn new() -> Self {
        Self {
            es384: LocalSigner::generate(Algorithm::ES384).unwrap().0,
            rsa: LocalSigner::from_pem_with_algorithm(&rsa_pem(), Some(Algorithm::RS256)).unwrap(),
            es256: LocalSigner::generate(Algorithm::ES256).unwrap().0,
        }
    }

    /// AWS's JWKS: the RSA key without `alg` (kid `RSA_0`), the P-384 key
    /// (kid `EC384_0`).
    fn aws_jwks(&self) -> Value {
        let mut rsa = self.rsa.verifying_key().to_jwk();
        rsa.remove("alg");
        rsa.insert("kid".into(), json!("RSA_0"));
        let mut ec = self.es384.verifying_key().to_jwk();
        ec.insert("kid".into(), json!("EC384_0"));
        json!({ "keys": [rsa, ec] })
    }

    fn k8s_jwks(&self) -> Value {
        let mut rsa = self.rsa.verifying_key().to_jwk();
        rsa.insert("kid".into(), json!("k8s-1"));
        json!({ "keys": [rsa] })
    }

    fn spiffe_jwks(&self) -> Value {
        json!({ "keys": [self.es256.verifying_key().to_jwk()] })
    }

    /// `claims` signed with `alg`'s key under `header` (`kid` and `alg`
    /// filled in when absent).
    fn sign(&self, alg: Algorithm, mut header: Map<String, Value>, claims: &Value) -> String {
        let (signer, kid) = match alg {
            Algorithm::ES384 => (&self.es384, "EC384_0".to_owned()),
            Algorithm::RS256 => (&self.rsa, "RSA_0".to_owned()),
            Algorithm::ES256 => (&self.es256, self.es256.kid().to_owned()),
            other => panic!("no key for {other}"),
        };
        header.entry("kid").or_insert(json!(kid));
        header.entry("alg").or_insert(json!(alg.name()));
        let input = format!(
            "{}.{}",
            base64url::encode(Value::Object(header).to_string()),
            base64url::encode(claims.to_string())
        );
        let signature = signer.sign_now(input.as_bytes()).unwrap();
        format!("{input}.{}", base64url::encode(signature))
    }

    /// An AWS STS web identity token (`typ: JWT`).
    fn aws(&self, alg: Algorithm, claims: &Value) -> String {
        let header = json!({ "typ": "JWT" });
        self.sign(alg, header.as_object().unwrap().clone(), claims)
    }
}

/// The claims of an AWS STS web identity token of [`ROLE`] for this token
/// service, issued now for 5 minutes, `edit`ed.
fn aws_claims(edit: impl FnOnce(&mut Value)) -> Value {
    let now = now();
    let mut claims = json!({
        "iss": AWS_ISS,
        "sub": ROLE,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 300,
        "jti": oidc_core::Jti::random().unwrap().as_str(),
        NS: {
            "aws_account": ACCOUNT,
            "source_region": "eu-west-1",
            "org_id": "o-a1b2c3d4e5",
            "ou_path": ["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/"],
            "principal_id": "AROAEXAMPLEROLEID",
            "principal_tags": { "team": "connectors" },
            "ec2_source_instance_arn": "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0",
        }
    });
    edit(&mut claims);
    claims
}

/// A Kubernetes projected service-account token's claims: an hour long,
/// no `jti` of the kind STS writes, claims under `kubernetes.io`.
fn k8s_claims(iat: u64) -> Value {
    json!({
        "iss": K8S_ISS,
        "sub": K8S_SUB,
        "aud": [ISSUER],
        "iat": iat,
        "nbf": iat,
        "exp": iat + 3600,
        "kubernetes.io": {
            "namespace": "connectors",
            "serviceaccount": { "name": "poller", "uid": "5f1c2d3e-0000-4000-8000-000000000001" },
            "pod": { "name": "poller-7d9f", "uid": "5f1c2d3e-0000-4000-8000-000000000002" },
        }
    })
}

/// A SPIFFE JWT-SVID's claims.
fn spiffe_claims() -> Value {
    let now = now();
    json!({ "iss": SPIFFE_ISS, "sub": SPIFFE_SUB, "aud": [ISSUER], "iat": now, "exp": now + 300 })
}

fn inline(value: &Value) -> toml::Value {
    toml::Value::try_from(value).unwrap()
}

/// The upstream entries and the connectors bound to them, after the test
/// configuration's own connectors.
fn upstream_config(keys: &Keys) -> String {
    let aws_jwks = inline(&keys.aws_jwks());
    format!(
        r#"
[[upstream_issuers]]
name = "aws"
issuer = "{AWS_ISS}"
typ = ["JWT"]
algorithms = ["RS256", "ES384"]
max_lifetime_secs = 3600
required_claims = {{ "/https:~1~1sts.amazonaws.com~1/aws_account" = "{ACCOUNT}" }}
jwks = {aws_jwks}

[[upstream_issuers]]
name = "aws-es384"
issuer = "{AWS_ES384_ISS}"
audiences = ["{ISSUER}"]
typ = ["JWT"]
algorithms = ["ES384"]
max_lifetime_secs = 3600
jwks = {aws_jwks}

[[upstream_issuers]]
name = "k8s"
issuer = "{K8S_ISS}"
typ = [""]
algorithms = ["RS256"]
max_lifetime_secs = 3600
max_token_age_secs = 1800
one_time_use = false
jwks = {k8s_jwks}

[[upstream_issuers]]
name = "spiffe"
issuer = "{SPIFFE_ISS}"
typ = ["JWT", ""]
algorithms = ["ES256"]
jwks = {spiffe_jwks}

[[connectors]]
id = "aws-poller"
audiences = ["{AUDIENCE}"]
scopes = ["actions:read"]
attributes = {{ tier = "gold" }}
federated = [{{ issuer = "aws", subject = "{ROLE}" }}]
copy_claims = {{ account_id = "/https:~1~1sts.amazonaws.com~1/aws_account", ou = "/https:~1~1sts.amazonaws.com~1/ou_path" }}

[[connectors]]
id = "aws-blue-team"
audiences = ["{AUDIENCE}"]
federated = [{{ issuer = "aws", subject = "arn:aws:iam::{ACCOUNT}:role/connectors/team-*", claims = {{ "/https:~1~1sts.amazonaws.com~1/principal_tags/team" = "blue" }} }}]

[[connectors]]
id = "aws-es384-only"
audiences = ["{AUDIENCE}"]
federated = [{{ issuer = "aws-es384", subject = "{ROLE}" }}]

[[connectors]]
id = "k8s-poller"
audiences = ["{AUDIENCE}"]
federated = [{{ issuer = "k8s", subject = "{K8S_SUB}", claims = {{ "/kubernetes.io/namespace" = "connectors" }} }}]

[[connectors]]
id = "spiffe-poller"
audiences = ["{AUDIENCE}"]
federated = [{{ issuer = "spiffe", subject = "spiffe://example.org/ns/connectors/sa/*" }}]
"#,
        k8s_jwks = inline(&keys.k8s_jwks()),
        spiffe_jwks = inline(&keys.spiffe_jwks()),
    )
}

/// The test app with the upstream entries, and their keys.
async fn app() -> (TestApp, Keys) {
    let keys = Keys::new();
    let upstream = upstream_config(&keys);
    let app = TestApp::with(|toml| format!("{toml}{upstream}")).await;
    (app, keys)
}

/// A token exchange of `token`, with `extra` parameters.
async fn exchange(app: &TestApp, token: &str, extra: &[(&str, &str)]) -> Answer {
    let mut form = vec![
        ("grant_type", GRANT),
        ("subject_token", token),
        ("subject_token_type", JWT),
    ];
    form.extend_from_slice(extra);
    app.post_form(None, &form).await
}

/// The claims of an issued access token.
fn claims_of(answer: &Answer) -> Value {
    let token = answer.body["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64url::decode(payload).unwrap()).unwrap()
}

fn assert_issued(answer: &Answer, connector: &str) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(answer.body["token_type"], "Bearer");
    assert_eq!(answer.headers[CACHE_CONTROL], "no-store");
    let claims = claims_of(answer);
    assert_eq!(claims["sub"], connector);
    assert_eq!(claims["client_id"], connector);
    assert_eq!(claims["iss"], ISSUER);
    claims
}

/// A refusal with RFC 6749 `error`, whose description holds nothing of
/// the token.
fn assert_refused(answer: &Answer, error: &str, token: &str) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body["error"], error, "{}", answer.body);
    assert_eq!(answer.headers[CACHE_CONTROL], "no-store");
    let description = answer.body["error_description"].as_str().unwrap();
    for part in token.split('.') {
        assert!(part.len() < 8 || !description.contains(part), "{description}");
    }
    assert!(!description.contains(ROLE), "{description}");
}

/// The `reason` of the audit event of one request.
async fn reason_of(app: &TestApp, token: &str) -> (Answer, Value) {
    let (answer, events) = audited(exchange(app, token, &[])).await;
    assert_eq!(events.len(), 1, "{events:?}");
    (answer, events[0].clone())
}

// ---------------------------------------------------------------------------
// Accepted
// ---------------------------------------------------------------------------

#[tokio::test]
async fn aws_es384_and_rs256_tokens_are_exchanged_with_aud_a_string_or_an_array() {
    let (app, keys) = app().await;
    for alg in [Algorithm::ES384, Algorithm::RS256] {
        for aud in [json!(ISSUER), json!(["https://elsewhere.example", ISSUER])] {
            let token = keys.aws(alg, &aws_claims(|c| c["aud"] = aud.clone()));
            let answer = exchange(&app, &token, &[]).await;
            let claims = assert_issued(&answer, "aws-poller");
            assert_eq!(claims["aud"], AUDIENCE);
            assert_eq!(answer.body["scope"], Value::Null);
        }
    }
    // audience, resource and scope as client_credentials takes them.
    let token = keys.aws(Algorithm::ES384, &aws_claims(|_| {}));
    let answer = exchange(&app, &token, &[("audience", AUDIENCE), ("scope", "actions:read")]).await;
    assert_issued(&answer, "aws-poller");
    assert_eq!(answer.body["scope"], "actions:read");
    // The discovery document offers the grant.
    let discovery = app.get("/.well-known/openid-configuration").await;
    assert_eq!(
        discovery.body["grant_types_supported"],
        json!(["client_credentials", GRANT])
    );
}

#[tokio::test]
async fn copied_claims_are_attributes_of_the_issued_token() {
    let (app, keys) = app().await;
    let token = keys.aws(Algorithm::ES384, &aws_claims(|_| {}));
    let (answer, events) = audited(exchange(&app, &token, &[])).await;
    let claims = assert_issued(&answer, "aws-poller");
    assert_eq!(claims["account_id"], ACCOUNT);
    // The audit event names the upstream entry and the verified subject.
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["event"], "token_issued");
    assert_eq!(event["connector"], "aws-poller");
    assert_eq!(event["auth_method"], "token_exchange");
    assert_eq!(event["upstream"], "aws");
    assert_eq!(event["upstream_sub"], ROLE);
    assert!(!events[0].to_string().contains(&token[..40]));
    assert_eq!(claims["ou"], json!(["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/"]));
    assert_eq!(claims["tier"], "gold", "the connector's own attributes stay");
    // Nothing else of the upstream token comes along.
    assert!(claims.get(NS).is_none() && claims.get("principal_tags").is_none());

    // A token without a claim the connector's tokens carry is refused.
    let token = keys.aws(
        Algorithm::ES384,
        &aws_claims(|c| {
            c[NS].as_object_mut().unwrap().remove("ou_path");
        }),
    );
    let (answer, event) = reason_of(&app, &token).await;
    assert_refused(&answer, "invalid_grant", &token);
    assert_eq!(event["reason"], "upstream_claim_missing");
}

#[tokio::test]
async fn a_20_kb_aws_token_passes_the_default_body_limit() {
    let (app, keys) = app().await;
    // Session tags fill a token up to about 20 KB encoded.
    let tags: Map<String, Value> = (0..56)
        .map(|i| (format!("tag-{i:02}-{}", "k".repeat(100)), json!("v".repeat(150))))
        .collect();
    let token = keys.aws(
        Algorithm::RS256,
        &aws_claims(|c| c[NS]["principal_tags"] = Value::Object(tags)),
    );
    assert!((19_000..22_000).contains(&token.len()), "{} bytes", token.len());
    let request = form_request(
        "/token",
        None,
        &[
            ("grant_type", GRANT),
            ("subject_token", &token),
            ("subject_token_type", JWT),
            ("audience", AUDIENCE),
        ],
    );
    let length: usize = request.headers()[CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 16 * 1024, "over the former default limit: {length}");
    assert_eq!(app.state.config().http.body_limit_bytes, 25 * 1024);
    assert_issued(&app.send(request).await, "aws-poller");
}

#[tokio::test]
async fn a_kubernetes_token_is_reusable_within_its_maximum_age() {
    let (app, keys) = app().await;
    let header = Map::from_iter([("kid".to_owned(), json!("k8s-1"))]);
    let token = keys.sign(Algorithm::RS256, header.clone(), &k8s_claims(now() - 60));
    // one_time_use = false: the pod presents the same token again.
    for _ in 0..3 {
        assert_issued(&exchange(&app, &token, &[]).await, "k8s-poller");
    }
    // Older than max_token_age_secs (1800), though not expired.
    let old = keys.sign(Algorithm::RS256, header.clone(), &k8s_claims(now() - 2000));
    let (answer, event) = reason_of(&app, &old).await;
    assert_refused(&answer, "invalid_grant", &old);
    assert_eq!(event["reason"], "upstream_too_old");
    // Another namespace's service account of the same name.
    let mut other = k8s_claims(now() - 60);
    other["kubernetes.io"]["namespace"] = json!("default");
    let other = keys.sign(Algorithm::RS256, header, &other);
    let (answer, event) = reason_of(&app, &other).await;
    assert_refused(&answer, "invalid_grant", &other);
    assert_eq!(event["reason"], "upstream_not_bound");
}

#[tokio::test]
async fn a_spiffe_jwt_svid_is_exchanged() {
    let (app, keys) = app().await;
    let token = keys.sign(Algorithm::ES256, Map::new(), &spiffe_claims());
    let answer = exchange(&app, &token, &[("resource", AUDIENCE)]).await;
    assert_issued(&answer, "spiffe-poller");
    // Under the subject's path only.
    let mut claims = spiffe_claims();
    claims["sub"] = json!("spiffe://example.org/ns/other/sa/poller");
    let other = keys.sign(Algorithm::ES256, Map::new(), &claims);
    assert_refused(&exchange(&app, &other, &[]).await, "invalid_grant", &other);
}

#[tokio::test]
async fn an_upstream_token_authenticates_as_a_jwt_bearer_client_assertion() {
    let (app, keys) = app().await;
    let assertion = |keys: &Keys| keys.aws(Algorithm::ES384, &aws_claims(|_| {}));
    let credentials = |token: &str, client_id: Option<&str>| {
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_assertion_type", JWT_BEARER.to_owned()),
            ("client_assertion", token.to_owned()),
        ];
        if let Some(id) = client_id {
            form.push(("client_id", id.to_owned()));
        }
        form
    };
    for client_id in [None, Some("aws-poller")] {
        let form = credentials(&assertion(&keys), client_id);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = app.post_form(None, &form).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.body.get("issued_token_type"),
            None,
            "a client_credentials answer"
        );
        let claims = claims_of(&answer);
        assert_eq!(claims["sub"], "aws-poller");
        assert_eq!(claims["account_id"], ACCOUNT);
    }
    // Another client's id, a replay, another subject: invalid_client.
    let token = assertion(&keys);
    let form = credentials(&token, Some("spiffe-poller"));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let answer = app.post_form(None, &form).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let form = credentials(&token, None);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        app.post_form(None, &form).await.status,
        200,
        "not consumed by the refusal"
    );
    assert_eq!(app.post_form(None, &form).await.status, 401, "used once");
}

// ---------------------------------------------------------------------------
// Refused
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unregistered_issuer_is_refused_with_no_request_made_to_it() {
    let (app, keys) = app().await;
    // An issuer that would answer, if anything asked it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let iss = format!("http://{}", listener.local_addr().unwrap());
    let token = keys.aws(Algorithm::ES384, &aws_claims(|c| c["iss"] = json!(iss)));
    let (answer, event) = reason_of(&app, &token).await;
    assert_refused(&answer, "invalid_grant", &token);
    assert_eq!(event["reason"], "upstream_unknown_issuer");
    assert_eq!(event["upstream"], "");
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "nothing connected to the unregistered issuer"
    );
}

#[tokio::test]
async fn the_right_issuer_with_another_subject_is_refused() {
    let (app, keys) = app().await;
    let token = keys.aws(
        Algorithm::ES384,
        &aws_claims(|c| c["sub"] = json!("arn:aws:iam::123456789012:role/connectors/other")),
    );
    let (answer, event) = reason_of(&app, &token).await;
    assert_refused(&answer, "invalid_grant", &token);
    assert_eq!(event["reason"], "upstream_not_bound");
    // Verified: the audit event names the entry and the subject.
    assert_eq!(event["upstream"], "aws");
    assert_eq!(
        event["upstream_sub"],
        "arn:aws:iam::123456789012:role/connectors/other"
    );
}

#[tokio::test]
async fn an_aud_not_ours_is_refused_as_a_string_and_as_an_array() {
    let (app, keys) = app().await;
    for aud in [
        json!("https://tokens.other.example"),
        json!(["https://tokens.other.example", AUDIENCE]),
    ] {
        let token = keys.aws(Algorithm::ES384, &aws_claims(|c| c["aud"] = aud.clone()));
        let (answer, event) = reason_of(&app, &token).await;
        assert_refused(&answer, "invalid_grant", &token);
        assert_eq!(event["reason"], "upstream_wrong_audience");
        assert_eq!(event["upstream"], "aws");
        assert_eq!(event["upstream_sub"], "", "not verified: no subject logged");
    }
}

#[tokio::test]
async fn another_token_services_access_token_is_not_an_upstream_token() {
    let (app, _keys) = app().await;
    // Another customer's token service: an at+jwt access token for us,
    // from an issuer that is no upstream entry.
    let (signer, _) = LocalSigner::generate(Algorithm::ES256).unwrap();
    let other = oidc_core::Issuer::new(
        "https://tokens.other-customer.example",
        std::sync::Arc::new(oidc_core::KeySet::single(std::sync::Arc::new(signer))),
        oidc_core::Lifetime::default(),
    )
    .unwrap();
    let issued = other
        .issue(&oidc_core::TokenRequest::new("aws-poller", ISSUER))
        .await
        .unwrap();
    let token = issued.token.as_str();
    for token_type in [JWT, ACCESS_TOKEN] {
        let answer = app
            .post_form(
                None,
                &[
                    ("grant_type", GRANT),
                    ("subject_token", token),
                    ("subject_token_type", token_type),
                ],
            )
            .await;
        assert_refused(&answer, "invalid_grant", token);
    }
    // Nor is one of this service's own tokens.
    let ours = app
        .post_form(
            Some(&basic(SECRET_CLIENT, SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let ours = ours.body["access_token"].as_str().unwrap().to_owned();
    let (answer, event) = reason_of(&app, &ours).await;
    assert_refused(&answer, "invalid_grant", &ours);
    assert_eq!(event["reason"], "upstream_unknown_issuer");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (app, keys) = app().await;
    let token = keys.aws(
        Algorithm::ES384,
        &aws_claims(|c| {
            c["iat"] = json!(now() - 400);
            c["exp"] = json!(now() - 100);
        }),
    );
    let (answer, event) = reason_of(&app, &token).await;
    assert_refused(&answer, "invalid_grant", &token);
    assert_eq!(event["reason"], "upstream_expired");
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let (app, keys) = app().await;
    let token = keys.aws(
        Algorithm::ES384,
        &aws_claims(|c| {
            c["iat"] = json!(now() + 120);
            c["exp"] = json!(now() + 420);
        }),
    );
    let (answer, event) = reason_of(&app, &token).await;
    assert_refused(&answer, "invalid_grant", &token);
    assert_eq!(event["reason"], "upstream_not_yet_valid");
}

#[tokio::test]
async fn rs256_is_refused_on_an_es384_only_entry() {
    let (app, keys) = app().await;
    let claims = aws_claims(|c| c["iss"] = json!(AWS_ES384_ISS));
    assert_issued(
        &exchange(&app, &keys.aws(Algorithm::ES384, &claims), &[]).await,
        "aws-es384-only",
    );
    let token = keys.aws(Algorithm::RS256, &aws_claims(|c| c["iss"] = json!(AWS_ES384_ISS)));
    let (answer, event) = reason_of(&app, &token).await;
    assert_refused(&answer, "invalid_grant", &token);
    assert_eq!(event["reason"], "upstream_wrong_algorithm");
}

#[tokio::test]
async fn hs256_keyed_with_the_rsa_public_key_is_refused() {
    let (app, keys) = app().await;
    let claims = aws_claims(|_| {});
    let header = json!({ "kid": "RSA_0", "typ": "JWT", "alg": "HS256" });
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string()),
        base64url::encode(claims.to_string())
    );
    // The public key's bytes, as the classic attack uses them: its JWK
    // and its modulus.
    let jwk = keys.aws_jwks()["keys"][0].to_string();
    let n = base64url::decode(keys.aws_jwks()["keys"][0]["n"].as_str().unwrap()).unwrap();
    for secret in [jwk.as_bytes(), &n[..]] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&key, input.as_bytes());
        let token = format!("{input}.{}", base64url::encode(tag.as_ref()));
        let (answer, event) = reason_of(&app, &token).await;
        assert_refused(&answer, "invalid_grant", &token);
        assert_eq!(event["reason"], "upstream_wrong_algorithm");
    }
}

#[tokio::test]
async fn request_tags_cannot_impersonate() {
    let (app, keys) = app().await;
    // The blue team's binding needs principal_tags.team = blue; the caller
    // of GetWebIdentityToken set request_tags.team = blue on a red role.
    let role = "arn:aws:iam::123456789012:role/connectors/team-red";
    let token = keys.aws(
        Algorithm::ES384,
        &aws_claims(|c| {
            c["sub"] = json!(role);
            c[NS]["principal_tags"] = json!({ "team": "red" });
            c[NS]["request_tags"] = json!({ "team": "blue" });
        }),
    );
    let (answer, event) = reason_of(&app, &token).await;
    assert_refused(&answer, "invalid_grant", &token);
    assert_eq!(event["reason"], "upstream_not_bound");
    // The tag the account set on the role is what binds.
    let token = keys.aws(
        Algorithm::ES384,
        &aws_claims(|c| {
            c["sub"] = json!(role);
            c[NS]["principal_tags"] = json!({ "team": "blue" });
        }),
    );
    assert_issued(&exchange(&app, &token, &[]).await, "aws-blue-team");
    // And a configuration cannot bind request_tags at all.
    let refused = config(&format!(
        r#"
[[upstream_issuers]]
name = "aws"
issuer = "{AWS_ISS}"
typ = ["JWT"]
algorithms = ["ES384"]

[[connectors]]
id = "a"
audiences = ["{AUDIENCE}"]
federated = [{{ issuer = "aws", subject = "*", claims = {{ "/https:~1~1sts.amazonaws.com~1/request_tags/team" = "blue" }} }}]
copy_claims = {{ team = "/https:~1~1sts.amazonaws.com~1/request_tags/team" }}
"#
    ))
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("connectors[0].federated[0].claims")
            && refused.contains("connectors[0].copy_claims"),
        "{refused}"
    );
    assert!(refused.contains("request_tags"), "{refused}");
}

#[tokio::test]
async fn the_same_token_exchanged_twice_is_refused_the_second_time() {
    let (app, keys) = app().await;
    let token = keys.aws(Algorithm::ES384, &aws_claims(|_| {}));
    assert_issued(&exchange(&app, &token, &[]).await, "aws-poller");
    let (answer, event) = reason_of(&app, &token).await;
    assert_refused(&answer, "invalid_grant", &token);
    assert_eq!(event["reason"], "upstream_replayed");
    assert_eq!(event["upstream"], "aws");
    assert_eq!(event["upstream_sub"], ROLE);
    // A token without jti is recorded by its digest.
    let token = keys.aws(
        Algorithm::RS256,
        &aws_claims(|c| {
            c.as_object_mut().unwrap().remove("jti");
        }),
    );
    assert_issued(&exchange(&app, &token, &[]).await, "aws-poller");
    assert_refused(&exchange(&app, &token, &[]).await, "invalid_grant", &token);
}

#[tokio::test]
async fn a_64_kb_body_is_refused_cleanly() {
    let (app, keys) = app().await;
    let token = keys.aws(Algorithm::ES384, &aws_claims(|_| {}));
    let padding = "x".repeat(64 * 1024);
    let answer = exchange(&app, &token, &[("scope", &padding)]).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(answer.body["error"], "invalid_request");
    // Without a Content-Length too.
    let body = format!("grant_type={GRANT}&subject_token_type={JWT}&subject_token={token}{padding}");
    let request = Request::post("/token")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(app.send(request).await.status, 413);
}

#[tokio::test]
async fn malformed_exchange_requests_are_invalid_request() {
    let (app, keys) = app().await;
    let token = keys.aws(Algorithm::ES384, &aws_claims(|_| {}));
    let base = [("grant_type", GRANT), ("subject_token", token.as_str())];
    let cases: Vec<Vec<(&str, &str)>> = vec![
        // subject_token_type missing, unknown, twice.
        base.to_vec(),
        [
            &base[..],
            &[("subject_token_type", "urn:ietf:params:oauth:token-type:saml2")],
        ]
        .concat(),
        [
            &base[..],
            &[("subject_token_type", JWT), ("subject_token_type", JWT)],
        ]
        .concat(),
        // subject_token missing, twice.
        vec![("grant_type", GRANT), ("subject_token_type", JWT)],
        [
            &base[..],
            &[("subject_token_type", JWT), ("subject_token", "x.y.z")],
        ]
        .concat(),
        // Client credentials sent along.
        [
            &base[..],
            &[("subject_token_type", JWT), ("client_secret", SECRET)],
        ]
        .concat(),
        // Delegation, another requested type.
        [
            &base[..],
            &[("subject_token_type", JWT), ("actor_token", "a.b.c")],
        ]
        .concat(),
        [
            &base[..],
            &[
                ("subject_token_type", JWT),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                ),
            ],
        ]
        .concat(),
    ];
    for form in cases {
        let answer = app.post_form(None, &form).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (400, Some("invalid_request")),
            "{form:?}: {}",
            answer.body
        );
    }
    let with_basic = app
        .post_form(
            Some(&basic(SECRET_CLIENT, SECRET)),
            &[&base[..], &[("subject_token_type", JWT)]].concat(),
        )
        .await;
    assert_eq!(with_basic.body["error"], "invalid_request");
    // None of these consumed the token.
    assert_issued(&exchange(&app, &token, &[]).await, "aws-poller");
}

#[tokio::test]
async fn an_audience_or_scope_the_connector_may_not_ask_for_is_refused() {
    let (app, keys) = app().await;
    let answer = exchange(
        &app,
        &keys.aws(Algorithm::ES384, &aws_claims(|_| {})),
        &[("audience", "https://not-allowed.example")],
    )
    .await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    let answer = exchange(
        &app,
        &keys.aws(Algorithm::ES384, &aws_claims(|_| {})),
        &[("scope", "actions:write")],
    )
    .await;
    assert_eq!(answer.body["error"], "invalid_scope");
}

#[tokio::test]
async fn refusals_count_against_the_peer_and_label_metrics_from_a_fixed_set() {
    let (app, keys) = app().await;
    // failure_limit = 5 in the test configuration.
    for i in 0..5 {
        let token = keys.aws(
            Algorithm::ES384,
            &aws_claims(|c| c["sub"] = json!(format!("arn:aws:iam::123456789012:role/x-{i}"))),
        );
        assert_eq!(exchange(&app, &token, &[]).await.status, 400);
    }
    let good = keys.aws(Algorithm::ES384, &aws_claims(|_| {}));
    let answer = exchange(&app, &good, &[]).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    let metrics = app.metrics().await.body.as_str().unwrap().to_owned();
    assert!(metrics.contains("reason=\"upstream_not_bound\""), "{metrics}");
    assert!(
        !metrics.contains("arn:aws") && !metrics.contains("sts.global"),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_upstream_issuers_the_grant_is_unsupported() {
    let app = TestApp::new().await;
    let answer = exchange(&app, "a.b.c", &[]).await;
    assert_eq!(answer.body["error"], "unsupported_grant_type");
    let discovery = app.get("/.well-known/openid-configuration").await;
    assert_eq!(
        discovery.body["grant_types_supported"],
        json!(["client_credentials"])
    );
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// The test's minimal configuration with `extra` sections.
fn config(extra: &str) -> Result<Config, oidc_server::config::ConfigError> {
    let toml = format!("issuer = \"{ISSUER}\"\n[signing]\nkind = \"local\"\ngenerate = \"ES256\"\n{extra}");
    Config::from_toml(
        &toml,
        Origin::File("/nonexistent/config.toml".into()),
        std::iter::empty(),
        &Overrides::default(),
    )
}

const AWS_ENTRY: &str = r#"
[[upstream_issuers]]
name = "aws"
issuer = "https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tokens.sts.global.api.aws"
typ = ["JWT"]
algorithms = ["RS256", "ES384"]
"#;

fn two_connectors(first: &str, second: &str) -> String {
    format!(
        "{AWS_ENTRY}\n[[connectors]]\nid = \"a\"\naudiences = [\"{AUDIENCE}\"]\nfederated = [{first}]\n\
         [[connectors]]\nid = \"b\"\naudiences = [\"{AUDIENCE}\"]\nfederated = [{second}]\n"
    )
}

#[test]
fn an_ambiguous_configuration_is_refused_at_start() {
    let ambiguous = [
        // The same subject.
        (
            r#"{ issuer = "aws", subject = "arn:aws:iam::1:role/x" }"#,
            r#"{ issuer = "aws", subject = "arn:aws:iam::1:role/x" }"#,
        ),
        // Globs that some sub matches both.
        (
            r#"{ issuer = "aws", subject = "arn:aws:iam::1:role/team-*" }"#,
            r#"{ issuer = "aws", subject = "arn:aws:iam::1:role/*-poller" }"#,
        ),
        // A claim on one side only does not separate them.
        (
            r#"{ issuer = "aws", subject = "arn:aws:iam::1:role/*", claims = { "/https:~1~1sts.amazonaws.com~1/principal_tags/team" = "blue" } }"#,
            r#"{ issuer = "aws", subject = "arn:aws:iam::1:role/x" }"#,
        ),
    ];
    for (first, second) in ambiguous {
        let error = config(&two_connectors(first, second)).unwrap_err().to_string();
        assert!(
            error.contains("connectors[1].federated[0]") && error.contains("connectors[0].federated[0]"),
            "{error}"
        );
        assert!(
            error.contains("Exactly one connector may match a token"),
            "{error}"
        );
    }
    let distinct = [
        (
            r#"{ issuer = "aws", subject = "arn:aws:iam::1:role/a-*" }"#,
            r#"{ issuer = "aws", subject = "arn:aws:iam::1:role/b-*" }"#,
        ),
        // One claim, two values.
        (
            r#"{ issuer = "aws", subject = "arn:aws:iam::1:role/*", claims = { "/https:~1~1sts.amazonaws.com~1/principal_tags/team" = "blue" } }"#,
            r#"{ issuer = "aws", subject = "arn:aws:iam::1:role/x", claims = { "/https:~1~1sts.amazonaws.com~1/principal_tags/team" = "red" } }"#,
        ),
    ];
    for (first, second) in distinct {
        config(&two_connectors(first, second)).unwrap();
    }
    // Two bindings of one connector may overlap: they name one connector.
    config(&format!(
        "{AWS_ENTRY}\n[[connectors]]\nid = \"a\"\naudiences = [\"{AUDIENCE}\"]\n\
         federated = [{{ issuer = \"aws\", subject = \"*\" }}, {{ issuer = \"aws\", subject = \"x\" }}]\n"
    ))
    .unwrap();
}

#[test]
fn upstream_entries_are_read_by_the_trust_file_rules_and_name_the_key() {
    // A federated-only connector needs no secret; audiences default to
    // the issuer; one_time_use defaults to true.
    let ok = config(&format!(
        "{AWS_ENTRY}\n[[connectors]]\nid = \"a\"\naudiences = [\"{AUDIENCE}\"]\n\
         federated = [{{ issuer = \"aws\", subject = \"x\" }}]\n"
    ))
    .unwrap();
    let upstream = &ok.upstream_issuers[0];
    assert!(upstream.one_time_use);
    assert_eq!(upstream.entry.policy().audiences(), [ISSUER]);
    assert_eq!(upstream.entry.policy().max_token_len(), 24 * 1024);
    assert_eq!(ok.connectors[0].secret_sha256, None);

    let cases = [
        ("algorithms = [\"HS256\"]", "upstream_issuers[0].algorithms"),
        ("one_time_use = \"yes\"", "upstream_issuers[0].one_time_use"),
        ("audience = \"x\"", "unknown field `audience`"),
        ("max_token_bytes = 100000", "upstream_issuers[0].max_token_bytes"),
        (
            "jwks_uri = \"http://example.com/keys\"",
            "upstream_issuers[0].jwks_uri",
        ),
        ("issuer_url = \"x\"", "upstream_issuers[0]:"),
    ];
    for (line, expected) in cases {
        let text = match line.strip_prefix("algorithms") {
            Some(_) => AWS_ENTRY.replace("algorithms = [\"RS256\", \"ES384\"]", line),
            None => AWS_ENTRY.replace("typ = [\"JWT\"]", &format!("typ = [\"JWT\"]\n{line}")),
        };
        let error = config(&text).unwrap_err().to_string();
        assert!(error.contains(expected), "{line}: {error}");
    }
    // Our own issuer, a duplicate name, a binding to no entry, a
    // copy_claims without bindings, a reserved attribute.
    let own = AWS_ENTRY.replace(
        "https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tokens.sts.global.api.aws",
        ISSUER,
    );
    assert!(config(&own)
        .unwrap_err()
        .to_string()
        .contains("upstream_issuers[0].issuer: is this token service's own issuer"));
    let twice = format!("{AWS_ENTRY}{}", AWS_ENTRY.replace("0f1e", "1f1e"));
    assert!(config(&twice)
        .unwrap_err()
        .to_string()
        .contains("upstream_issuers[1].name"));
    let errors = config(&format!(
        "{AWS_ENTRY}\n[[connectors]]\nid = \"a\"\naudiences = [\"{AUDIENCE}\"]\n\
         federated = [{{ issuer = \"gcp\", subject = \"x\" }}, {{ issuer = \"aws\", subject = \"\" }}]\n\
         copy_claims = {{ sub = \"/x\", account = \"/a~2\" }}\n\
         [[connectors]]\nid = \"b\"\naudiences = [\"{AUDIENCE}\"]\nsecret_sha256 = \"{}\"\ncopy_claims = {{ x = \"y\" }}\n",
        "0".repeat(64)
    ))
    .unwrap_err()
    .to_string();
    for expected in [
        "connectors[0].federated[0].issuer: \"gcp\" is not the name of an [[upstream_issuers]] entry (known: aws)",
        "connectors[0].federated[1].subject",
        "connectors[0].copy_claims: \"sub\" would shadow a registered claim",
        "connectors[0].copy_claims: \"/a~2\" starts with / but is not a JSON Pointer",
        "connectors[1].copy_claims: copies claims of an exchanged upstream token",
    ] {
        assert!(errors.contains(expected), "{expected}\nin {errors}");
    }
}

#[test]
fn a_memory_replay_store_is_no_fleet_store_for_one_time_upstream_tokens() {
    let binding = format!(
        "{AWS_ENTRY}\n[[connectors]]\nid = \"a\"\naudiences = [\"{AUDIENCE}\"]\n\
         federated = [{{ issuer = \"aws\", subject = \"x\" }}]\n"
    );
    let problem = config(&binding).unwrap().fleet_replay_problem().unwrap();
    assert!(problem.message.contains("one-time upstream tokens"), "{problem}");
    let reusable = binding.replace("typ = [\"JWT\"]", "typ = [\"JWT\"]\none_time_use = false");
    assert!(config(&reusable).unwrap().fleet_replay_problem().is_none());
}
