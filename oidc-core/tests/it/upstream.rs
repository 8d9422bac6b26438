//! Upstream identity tokens (`remote` feature): AWS STS web identity tokens
//! (IAM outbound identity federation) verified by a [`TrustedIssuers`]
//! registry whose entries come from a trust file, against the loopback
//! server of `tenants.rs` publishing AWS-shaped discovery and JWKS
//! documents (the RSA key without `alg`, no `authorization_endpoint`).
//!
//! Run with `cargo test --workspace --all-features --tests -- upstream`.

#![cfg(feature = "remote")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use oidc_core::claims::{AwsWebIdentityClaims, AWS_STS_NAMESPACE};
use oidc_core::clock::ManualWallClock;
use oidc_core::jws::JwsError;
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::verify::trust::{file, Trusted, TrustedIssuers};
use oidc_core::{Algorithm, AlgorithmError, JwkSet, VerifyError};
use serde_json::{json, Value};

use crate::helpers::{b64, key_pem, NOW};
use crate::tenants::{TenantServer, TestKey, AUDIENCE};

const ACCOUNT: &str = "123456789012";
const ROLE: &str = "arn:aws:iam::123456789012:role/connectors/poller";
/// `"https://sts.amazonaws.com/"` as the first token of a JSON Pointer.
const NS: &str = "/https:~1~1sts.amazonaws.com~1";

/// The two keys AWS STS signs an account's tokens with, under AWS's kids.
struct AwsKeys {
    es384: LocalSigner,
    rsa: LocalSigner,
}

impl AwsKeys {
    fn new() -> Self {
        Self {
            es384: LocalSigner::generate(Algorithm::ES384).unwrap().0,
            rsa: LocalSigner::from_pem_with_algorithm(&key_pem("rsa2048"), Some(Algorithm::RS256)).unwrap(),
        }
    }

    /// The JWKS as AWS publishes it: the RSA-2048 key without `alg`, the
    /// P-384 key with `alg: ES384`.
    fn jwks(&self) -> String {
        let mut rsa = self.rsa.verifying_key().to_jwk();
        rsa.remove("alg");
        rsa.insert("kid".into(), json!("RSA_0"));
        let mut ec = self.es384.verifying_key().to_jwk();
        ec.insert("kid".into(), json!("EC384_0"));
        json!({ "keys": [rsa, ec] }).to_string()
    }

    fn signer(&self, alg: Algorithm) -> (&LocalSigner, &'static str) {
        match alg {
            Algorithm::ES384 => (&self.es384, "EC384_0"),
            Algorithm::RS256 => (&self.rsa, "RSA_0"),
            other => panic!("AWS STS does not sign {other}"),
        }
    }

    /// AWS's header: `{"kid":"EC384_0","typ":"JWT","alg":"ES384"}`.
    fn header(&self, alg: Algorithm) -> Value {
        json!({ "kid": self.signer(alg).1, "typ": "JWT", "alg": alg.name() })
    }

    /// Signs exactly `header` and `claims` with the key of `alg`.
    fn sign(&self, alg: Algorithm, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = self.signer(alg).0.sign_now(input.as_bytes()).unwrap();
        format!("{input}.{}", b64(signature))
    }

    fn token(&self, alg: Algorithm, claims: &Value) -> String {
        self.sign(alg, &self.header(alg), claims)
    }
}

/// The claims of a token of [`ROLE`] for [`AUDIENCE`], issued at [`NOW`]
/// for 5 minutes (`GetWebIdentityToken`'s default), from a Lambda function.
fn claims(iss: &str) -> Value {
    json!({
        "iss": iss,
        "sub": ROLE,
        "aud": AUDIENCE,
        "iat": NOW,
        "exp": NOW + 300,
        "jti": "5b6f0a1e-7c1d-4c1e-9d38-2f1e0c9a8b7d",
        AWS_STS_NAMESPACE: {
            "aws_account": ACCOUNT,
            "source_region": "us-east-1",
            "org_id": "o-a1b2c3d4e5",
            "ou_path": ["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/"],
            "principal_id": "AROAEXAMPLEROLEID",
            "principal_tags": { "team": "connectors" },
            "lambda_source_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:poller",
        }
    })
}

/// AWS's claims in `claims`, to edit.
fn aws(claims: &mut Value) -> &mut Value {
    &mut claims[AWS_STS_NAMESPACE]
}

/// The trust entry of the account: `typ = ["JWT"]`, both algorithms, the
/// account and the role path bound, then `extra` lines.
fn entry_toml(iss: &str, extra: &str) -> String {
    format!(
        r#"
        [[issuers]]
        name = "acme-aws"
        issuer = "{iss}"
        audiences = ["{AUDIENCE}"]
        typ = ["JWT"]
        max_lifetime_secs = 3600
        {extra}
        "#
    )
}

/// The usual rules: the algorithms, the account, the role path.
const RULES: &str = r#"
        algorithms = ["RS256", "ES384"]
        required_claims = { "/https:~1~1sts.amazonaws.com~1/aws_account" = "123456789012" }
        claim_patterns = { sub = "arn:aws:iam::123456789012:role/connectors/*" }
"#;

/// One AWS account's token service on the loopback server.
struct Aws {
    server: TenantServer,
    keys: AwsKeys,
    iss: String,
}

impl Aws {
    async fn new() -> Self {
        let server = TenantServer::start().await;
        let keys = AwsKeys::new();
        let tenant = server.add("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", &JwkSet::default());
        tenant.serve_text(&keys.jwks());
        // AWS's discovery document: no authorization_endpoint, no
        // response_types_supported.
        tenant.extend_discovery(json!({
            "id_token_signing_alg_values_supported": ["RS256", "ES384"],
            "subject_types_supported": ["public"],
            "claims_supported": ["aud", "exp", "iat", "iss", "jti", "sub", AWS_STS_NAMESPACE],
        }));
        let iss = server.issuer("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        Self { server, keys, iss }
    }

    /// A registry of the entries of this trust file, on a clock at [`NOW`].
    fn registry(&self, toml: &str) -> TrustedIssuers {
        let entries = file::parse(toml, Path::new(".")).unwrap();
        TrustedIssuers::builder()
            .issuers(entries)
            .wall_clock(Arc::new(ManualWallClock::new(NOW)))
            .build()
            .unwrap()
    }

    /// The registry of [`entry_toml`] with [`RULES`].
    fn trusted(&self) -> TrustedIssuers {
        self.registry(&entry_toml(&self.iss, RULES))
    }

    fn claims(&self) -> Value {
        claims(&self.iss)
    }

    fn token(&self, alg: Algorithm, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims();
        edit(&mut claims);
        self.keys.token(alg, &claims)
    }
}

async fn verify(trusted: &TrustedIssuers, token: &str) -> Result<Trusted<Value>, VerifyError> {
    trusted.verify::<Value>(token).await
}

async fn refusal(trusted: &TrustedIssuers, token: &str) -> VerifyError {
    match verify(trusted, token).await {
        Ok(_) => panic!("accepted: {token}"),
        Err(error) => error,
    }
}

/// The form error a token is refused with.
async fn malformed(trusted: &TrustedIssuers, token: &str) -> JwsError {
    match refusal(trusted, token).await {
        VerifyError::Malformed(error) => error,
        other => panic!("{other:?}"),
    }
}

/// `n` tags of `len`-byte values, as AWS writes them in `principal_tags`.
fn tags(prefix: &str, n: usize, len: usize) -> Value {
    let tags: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            (
                format!("{prefix}-{i:03}-{}", "k".repeat(120)),
                json!("v".repeat(len)),
            )
        })
        .collect();
    Value::Object(tags)
}

// ---------------------------------------------------------------------------
// Accepted
// ---------------------------------------------------------------------------

#[tokio::test]
async fn es384_and_rs256_tokens_verify_with_rules_on_the_nested_claims() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    for alg in [Algorithm::ES384, Algorithm::RS256] {
        let token = a.token(alg, |_| {});
        let verified = trusted.verify::<AwsWebIdentityClaims>(&token).await.unwrap();
        assert_eq!(verified.issuer_name(), "acme-aws");
        assert_eq!(verified.verified().algorithm(), alg);
        let claims = verified.claims();
        assert_eq!((claims.sub.as_str(), claims.iat), (ROLE, NOW));
        assert_eq!(claims.aws.aws_account, ACCOUNT);
        assert_eq!(claims.aws.principal_tags["team"], "connectors");
        assert_eq!(claims.aws.ou_path, ["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/"]);
        assert!(claims.aws.session.contains_key("lambda_source_function_arn"));

        // The same token as plain JSON: every nested member is there.
        let value = verify(&trusted, &token).await.unwrap();
        assert_eq!(value.claims()[AWS_STS_NAMESPACE]["source_region"], "us-east-1");
    }
    // The RSA key has no alg: it verified RS256 because the entry pins it.
    let rsa = trusted
        .verify::<Value>(&a.token(Algorithm::RS256, |_| {}))
        .await
        .unwrap();
    assert_eq!(rsa.verified().kid(), "RSA_0");
    assert!(!rsa.verified().key().algorithm_stated());
    // One discovery (AWS's shape) and one JWKS fetch for everything.
    assert_eq!(
        a.server.tenant("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").hits(),
        (1, 1)
    );
}

#[tokio::test]
async fn aud_may_be_a_string_or_an_array() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    for aud in [
        json!(AUDIENCE),
        json!([AUDIENCE]),
        json!(["https://other.example.com", AUDIENCE]),
        json!((0..9)
            .map(|i| format!("https://a{i}.example.com"))
            .chain([AUDIENCE.to_owned()])
            .collect::<Vec<_>>()),
    ] {
        let token = a.token(Algorithm::ES384, |c| c["aud"] = aud.clone());
        verify(&trusted, &token)
            .await
            .unwrap_or_else(|e| panic!("{aud}: {e}"));
    }
}

#[tokio::test]
async fn a_20_kb_token_verifies() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    // 50 principal tags and 50 request tags: AWS's largest payloads.
    let token = a.token(Algorithm::RS256, |c| {
        aws(c)["principal_tags"] = tags("p", 50, 8);
        aws(c)["request_tags"] = tags("r", 50, 8);
    });
    let payload_len = token.split('.').nth(1).unwrap().len() * 3 / 4;
    assert!((14_000..=15_000).contains(&payload_len), "{payload_len}");
    assert!((19_000..24 * 1024).contains(&token.len()), "{}", token.len());
    let verified = trusted.verify::<AwsWebIdentityClaims>(&token).await.unwrap();
    assert_eq!(verified.claims().aws.principal_tags.len(), 50);
    assert_eq!(verified.claims().aws.request_tags.len(), 50);
}

#[tokio::test]
async fn ou_path_arrays_match_by_membership() {
    let a = Aws::new().await;
    let ou = "o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/ou-ab12-22222222/";
    let trusted = a.registry(&entry_toml(
        &a.iss,
        &format!(
            "algorithms = [\"ES384\"]\nrequired_claims = {{ \"{NS}/ou_path\" = \"{ou}\" }}\n\
             claim_patterns = {{ \"{NS}/ou_path\" = \"o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/*\" }}"
        ),
    ));
    let token = a.token(Algorithm::ES384, |c| {
        aws(c)["ou_path"] = json!(["o-a1b2c3d4e5/r-ab12/", ou]);
    });
    verify(&trusted, &token).await.unwrap();
    let elsewhere = a.token(Algorithm::ES384, |c| {
        aws(c)["ou_path"] = json!(["o-a1b2c3d4e5/r-ab12/ou-ab12-33333333/"]);
    });
    assert_eq!(
        refusal(&trusted, &elsewhere).await,
        VerifyError::RequiredClaim {
            claim: format!("{NS}/ou_path"),
            present: true
        }
    );
}

// ---------------------------------------------------------------------------
// Refused
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unregistered_issuer_is_refused_without_a_request() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    // Another account's token service, on the same (answering) server.
    a.server.add("another-account", &JwkSet::default());
    for iss in [a.server.issuer("another-account"), format!("{}/", a.iss)] {
        let token = a.token(Algorithm::ES384, |c| c["iss"] = json!(iss));
        assert_eq!(
            refusal(&trusted, &token).await,
            VerifyError::UnknownIssuer { issuer: iss.clone() }
        );
    }
    assert_eq!(a.server.requests(), 0, "nothing is fetched for an unknown issuer");
}

#[tokio::test]
async fn another_role_of_the_account_is_refused() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    for sub in [
        "arn:aws:iam::123456789012:role/admin",
        "arn:aws:iam::123456789012:role/other/connectors/poller",
        "arn:aws:iam::210987654321:role/connectors/poller",
        "arn:aws:iam::123456789012:user/connectors/poller",
    ] {
        let token = a.token(Algorithm::ES384, |c| c["sub"] = json!(sub));
        assert_eq!(
            refusal(&trusted, &token).await,
            VerifyError::RequiredClaim {
                claim: "sub".into(),
                present: true
            },
            "{sub}"
        );
    }
}

#[tokio::test]
async fn an_audience_that_is_not_ours_is_refused() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    let token = a.token(Algorithm::ES384, |c| {
        c["aud"] = json!("https://other.example.com")
    });
    assert_eq!(
        refusal(&trusted, &token).await,
        VerifyError::WrongAudience {
            found: vec!["https://other.example.com".into()]
        }
    );
}

#[tokio::test]
async fn an_audience_array_without_ours_is_refused() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    let others = ["https://a.example.com", "https://api.example.com/"];
    let token = a.token(Algorithm::RS256, |c| c["aud"] = json!(others));
    assert_eq!(
        refusal(&trusted, &token).await,
        VerifyError::WrongAudience {
            found: others.map(String::from).to_vec()
        }
    );
}

#[tokio::test]
async fn another_customers_access_token_is_refused_where_only_jwt_entries_apply() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    // A token of another customer's token service (ours: at+jwt) is from
    // an issuer this registry does not have.
    let customer = TestKey::new(Algorithm::ES256);
    let their_issuer = a.server.issuer("customer-token-service");
    a.server.add("customer-token-service", &customer.jwks);
    let theirs = customer.token(&their_issuer, AUDIENCE, Some("org-1")).await;
    assert_eq!(
        refusal(&trusted, &theirs).await,
        VerifyError::UnknownIssuer { issuer: their_issuer }
    );
    // An at+jwt token under the account's issuer and key is not an AWS
    // token either: the entry accepts typ JWT only.
    let mut header = a.keys.header(Algorithm::ES384);
    header["typ"] = json!("at+jwt");
    let typed = a.keys.sign(Algorithm::ES384, &header, &a.claims());
    assert_eq!(
        refusal(&trusted, &typed).await,
        VerifyError::WrongType {
            found: Some("at+jwt".into()),
            expected: "JWT".into()
        }
    );
    assert_eq!(a.server.requests(), 0, "refused before any fetch");
}

/// An upstream token need not name itself (a SPIFFE JWT-SVID has no
/// `jti`); if it does, the `jti` must be a non-empty string. An access
/// token (`at+jwt`) still needs one.
#[tokio::test]
async fn jti_is_optional_in_upstream_tokens_only() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    let without = a.token(Algorithm::ES384, |c| {
        c.as_object_mut().unwrap().remove("jti");
    });
    verify(&trusted, &without).await.unwrap();
    for bad in [json!(""), json!(42)] {
        let token = a.token(Algorithm::ES384, |c| c["jti"] = bad.clone());
        assert!(
            matches!(
                refusal(&trusted, &token).await,
                VerifyError::ClaimType { claim: "jti", .. }
            ),
            "{bad}"
        );
    }
    let customer = TestKey::new(Algorithm::ES256);
    let issuer = a.server.issuer("customer-token-service");
    let claims = json!({"iss": issuer, "sub": "c", "aud": AUDIENCE, "client_id": "c",
        "iat": NOW, "exp": NOW + 60});
    let header = oidc_core::jws::Header::encode(Algorithm::ES256, "at+jwt", customer.signer.kid());
    let access = oidc_core::jws::sign(&header, claims.to_string().as_bytes(), &*customer.signer)
        .await
        .unwrap();
    let registry = TrustedIssuers::builder()
        .issuer(
            oidc_core::verify::trust::IssuerEntry::builder("customer", &issuer, [AUDIENCE])
                .pinned_jwks(customer.jwks.clone())
                .build()
                .unwrap(),
        )
        .wall_clock(Arc::new(ManualWallClock::new(NOW)))
        .build()
        .unwrap();
    assert_eq!(
        refusal(&registry, &access).await,
        VerifyError::MissingClaim("jti")
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let a = Aws::new().await;
    let token = a.token(Algorithm::ES384, |c| {
        c["iat"] = json!(NOW - 400);
        c["exp"] = json!(NOW - 100);
    });
    assert_eq!(
        refusal(&a.trusted(), &token).await,
        VerifyError::Expired {
            exp: NOW - 100,
            now: NOW,
            leeway: 30
        }
    );
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let a = Aws::new().await;
    let token = a.token(Algorithm::RS256, |c| {
        c["iat"] = json!(NOW + 100);
        c["exp"] = json!(NOW + 400);
    });
    assert_eq!(
        refusal(&a.trusted(), &token).await,
        VerifyError::IssuedInFuture {
            iat: NOW + 100,
            now: NOW,
            leeway: 30
        }
    );
}

#[tokio::test]
async fn an_rs256_token_is_refused_by_an_es384_only_entry() {
    let a = Aws::new().await;
    let trusted = a.registry(&entry_toml(&a.iss, "algorithms = [\"ES384\"]"));
    verify(&trusted, &a.token(Algorithm::ES384, |_| {}))
        .await
        .unwrap();
    assert_eq!(
        refusal(&trusted, &a.token(Algorithm::RS256, |_| {})).await,
        VerifyError::AlgorithmNotAllowed(Algorithm::RS256)
    );
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_keys_bytes_is_refused() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    let oidc_core::keys::PublicKey::Rsa { n, .. } = a.keys.rsa.verifying_key().public_key().clone() else {
        panic!("an RSA key")
    };
    let jwks = a.keys.jwks();
    let mut rsa_jwk: Value = serde_json::from_str(&jwks).unwrap();
    let rsa_jwk = rsa_jwk["keys"][0].take().to_string();
    let header = json!({ "kid": "RSA_0", "typ": "JWT", "alg": "HS256" });
    let input = format!("{}.{}", b64(header.to_string()), b64(a.claims().to_string()));
    for secret in [&n[..], rsa_jwk.as_bytes(), jwks.as_bytes()] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let token = format!("{input}.{}", b64(ring::hmac::sign(&key, input.as_bytes())));
        let error = refusal(&trusted, &token).await;
        assert_eq!(
            error,
            VerifyError::Malformed(JwsError::Algorithm(AlgorithmError::Symmetric("HS256".into())))
        );
        assert_eq!(error.reason(), "bad_algorithm");
    }
    assert_eq!(a.server.requests(), 0, "refused before any fetch");
}

#[tokio::test]
async fn request_tags_cannot_stand_in_for_principal_tags() {
    let a = Aws::new().await;
    let trusted = a.registry(&entry_toml(
        &a.iss,
        &format!(
            "algorithms = [\"ES384\"]\nrequired_claims = {{ \"{NS}/principal_tags/team\" = \"connectors\" }}"
        ),
    ));
    let claim = format!("{NS}/principal_tags/team");
    // The caller chose request_tags.team; the principal's own tag says otherwise.
    let other_team = a.token(Algorithm::ES384, |c| {
        aws(c)["principal_tags"] = json!({ "team": "billing" });
        aws(c)["request_tags"] = json!({ "team": "connectors" });
    });
    assert_eq!(
        refusal(&trusted, &other_team).await,
        VerifyError::RequiredClaim {
            claim: claim.clone(),
            present: true
        }
    );
    // No such principal tag at all: the request tag does not fill in.
    let untagged = a.token(Algorithm::ES384, |c| {
        aws(c).as_object_mut().unwrap().remove("principal_tags");
        aws(c)["request_tags"] = json!({ "team": "connectors" });
    });
    assert_eq!(
        refusal(&trusted, &untagged).await,
        VerifyError::RequiredClaim {
            claim,
            present: false
        }
    );
    // A top-level claim of the same name does not either.
    let top_level = a.token(Algorithm::ES384, |c| {
        aws(c).as_object_mut().unwrap().remove("principal_tags");
        c["principal_tags"] = json!({ "team": "connectors" });
    });
    assert!(verify(&trusted, &top_level).await.is_err());
    // The principal's own tag passes.
    verify(&trusted, &a.token(Algorithm::ES384, |_| {}))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_older_than_max_token_age_is_refused() {
    let a = Aws::new().await;
    let trusted = a.registry(&entry_toml(&a.iss, &format!("{RULES}\nmax_token_age_secs = 600")));
    let issued_at = |iat: u64| {
        a.token(Algorithm::ES384, |c| {
            c["iat"] = json!(iat);
            c["exp"] = json!(iat + 3600);
        })
    };
    // 600 s and the 30 s leeway: still young enough.
    verify(&trusted, &issued_at(NOW - 630)).await.unwrap();
    assert_eq!(
        refusal(&trusted, &issued_at(NOW - 631)).await,
        VerifyError::TooOld {
            iat: NOW - 631,
            now: NOW,
            max_age: 600,
            leeway: 30
        }
    );
}

// ---------------------------------------------------------------------------
// What upstream entries loosen, and what they do not
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_key_without_alg_needs_exactly_one_pinned_algorithm_it_fits() {
    let a = Aws::new().await;
    let key_algorithm = VerifyError::KeyAlgorithm { kid: "RSA_0".into() };
    // No algorithms: the RSA key (no alg) is unusable; the P-384 one (alg
    // ES384) still verifies.
    let unpinned = a.registry(&entry_toml(&a.iss, ""));
    assert_eq!(
        refusal(&unpinned, &a.token(Algorithm::RS256, |_| {})).await,
        key_algorithm
    );
    verify(&unpinned, &a.token(Algorithm::ES384, |_| {}))
        .await
        .unwrap();
    // Two algorithms an RSA key fits: ambiguous, so unusable too.
    let ambiguous = a.registry(&entry_toml(&a.iss, "algorithms = [\"RS256\", \"PS256\"]"));
    assert_eq!(
        refusal(&ambiguous, &a.token(Algorithm::RS256, |_| {})).await,
        key_algorithm
    );
    // Pinned to PS256, the key verifies PS256 only: an RS256 header is refused.
    let ps256 = a.registry(&entry_toml(&a.iss, "algorithms = [\"PS256\", \"ES384\"]"));
    assert_eq!(
        refusal(&ps256, &a.token(Algorithm::RS256, |_| {})).await,
        VerifyError::AlgorithmNotAllowed(Algorithm::RS256)
    );
}

#[tokio::test]
async fn the_strict_jws_layer_still_applies() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    let claims = a.claims().to_string();
    let signed = |header: &str| {
        let input = format!("{}.{}", b64(header), b64(&claims));
        let signature = a.keys.es384.sign_now(input.as_bytes()).unwrap();
        format!("{input}.{}", b64(signature))
    };
    // A duplicate member in the header.
    let duplicate = signed(r#"{"kid":"EC384_0","typ":"JWT","alg":"ES384","alg":"RS256"}"#);
    assert!(matches!(
        malformed(&trusted, &duplicate).await,
        JwsError::Json { .. }
    ));
    // crit, and a key of the token's own choosing.
    for header in [
        r#"{"kid":"EC384_0","typ":"JWT","alg":"ES384","crit":["exp"],"exp":1}"#,
        r#"{"kid":"EC384_0","typ":"JWT","alg":"ES384","jku":"https://attacker.example/jwks"}"#,
    ] {
        assert!(matches!(
            malformed(&trusted, &signed(header)).await,
            JwsError::ForbiddenHeader(_)
        ));
    }
    // Lax base64url: padding, or the standard alphabet.
    let token = a.token(Algorithm::ES384, |_| {});
    let [header, payload, signature]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
    for lax in [
        format!("{header}.{payload}=.{signature}"),
        format!(
            "{header}.{}.{signature}",
            payload.replace('-', "+").replace('_', "/")
        ),
    ] {
        if lax != token {
            assert!(
                matches!(malformed(&trusted, &lax).await, JwsError::Base64 { .. }),
                "{lax}"
            );
        }
    }
}

#[tokio::test]
async fn a_64_kb_token_is_refused_before_decoding() {
    let a = Aws::new().await;
    let trusted = a.trusted();
    // The entry's default cap is 24 KiB, so is the registry's.
    let huge = format!(
        "{}.{}.{}",
        "e".repeat(100),
        "e".repeat(64 * 1024),
        "e".repeat(100)
    );
    assert_eq!(
        refusal(&trusted, &huge).await,
        VerifyError::Malformed(JwsError::TooLarge {
            len: huge.len(),
            max: 24 * 1024
        })
    );
    assert_eq!(a.server.requests(), 0);
}

#[tokio::test]
async fn ordinary_entries_keep_their_8_kib_cap() {
    let a = Aws::new().await;
    // The account's entry and one of this project's token services.
    let customer = TestKey::new(Algorithm::ES256);
    let their_issuer = a.server.issuer("customer");
    a.server.add("customer", &customer.jwks);
    let toml = format!(
        "{}\n[[issuers]]\nname = \"customer\"\nissuer = \"{their_issuer}\"\naudiences = [\"{AUDIENCE}\"]\n",
        entry_toml(&a.iss, RULES)
    );
    let trusted = a.registry(&toml);
    let entries: Vec<(String, usize)> = trusted
        .static_entries()
        .map(|e| (e.name().to_owned(), e.policy().max_token_len()))
        .collect();
    assert!(entries.contains(&("acme-aws".into(), 24 * 1024)), "{entries:?}");
    assert!(entries.contains(&("customer".into(), 8 * 1024)), "{entries:?}");
    // A 10 KB token of the ordinary issuer: refused by its entry's cap
    // before its keys are fetched, though the registry decoded it.
    let mut big = claims(&their_issuer);
    big["padding"] = json!("x".repeat(10_000));
    let token = a.keys.token(Algorithm::ES384, &big);
    assert_eq!(
        refusal(&trusted, &token).await,
        VerifyError::Malformed(JwsError::TooLarge {
            len: token.len(),
            max: 8 * 1024
        })
    );
    assert_eq!(a.server.requests(), 0);
    // The account's 20 KB tokens pass.
    let aws_token = a.token(Algorithm::ES384, |c| {
        aws(c)["principal_tags"] = tags("p", 50, 8);
        aws(c)["request_tags"] = tags("r", 50, 8);
    });
    verify(&trusted, &aws_token).await.unwrap();
}
