//! Token exchange across the fleet (`[replay] store = "dynamodb"`): one
//! AWS-shaped upstream token (ES384, AWS's kid and claims, the entry's keys
//! pinned) presented 16 times at once to two replicas of one issuer that
//! share a table in moto's DynamoDB, through the real AWS SDK: exactly one
//! exchange wins, whichever replica each attempt reaches, and the table
//! holds one item for it, namespaced and hashed.
//!
//! The replicas are set up as in `replay.rs` (whose helpers are private to
//! it, so the few lines are repeated here); the harness in `tests/src/` is
//! used as it is.

use e2e::moto::{self, Moto};
use e2e::{test_config, TestServer};
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::{base64url, Algorithm};
use serde_json::{json, Value};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AWS_ISS: &str = "https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tokens.sts.global.api.aws";
const ROLE: &str = "arn:aws:iam::123456789012:role/connectors/poller";

/// The test configuration with the AWS account's upstream entry (its
/// ES384 key pinned; `audiences` left to default to the issuer) and a
/// connector bound to the role, recording uses in `table`.
fn exchange_config(key: &LocalSigner, table: &str) -> String {
    let mut jwk = key.verifying_key().to_jwk();
    jwk.insert("kid".into(), json!("EC384_0"));
    let jwks = toml::Value::try_from(json!({ "keys": [jwk] })).unwrap();
    let (_, client_jwks) = e2e::client_key(Algorithm::ES256);
    format!(
        r#"{}{}
[[upstream_issuers]]
name = "aws"
issuer = "{AWS_ISS}"
typ = ["JWT"]
algorithms = ["ES384"]
max_lifetime_secs = 3600
jwks = {jwks}

[[connectors]]
id = "aws-poller"
audiences = ["{}"]
federated = [{{ issuer = "aws", subject = "{ROLE}" }}]
"#,
        // Every loser counts as a failure of the one peer (loopback): a
        // limit above them keeps the answers invalid_grant, not 429.
        test_config(&client_jwks).replace("failure_limit = 5", "failure_limit = 100"),
        // 16 writes at once queue in the emulator; a 503 would be right on
        // a slow machine, but is not what this test is about.
        moto::replay_section(table).replace("call_timeout_ms = 500", "call_timeout_ms = 3000"),
        e2e::AUDIENCE
    )
}

/// An AWS STS web identity token of [`ROLE`] for `audience`.
fn aws_token(key: &LocalSigner, audience: &str) -> String {
    let now = e2e::now();
    let header = json!({ "kid": "EC384_0", "typ": "JWT", "alg": "ES384" });
    let claims = json!({
        "iss": AWS_ISS, "sub": ROLE, "aud": audience, "iat": now, "exp": now + 300,
        "jti": oidc_core::Jti::random().unwrap().as_str(),
        "https://sts.amazonaws.com/": { "aws_account": "123456789012", "principal_tags": { "team": "connectors" } },
    });
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string()),
        base64url::encode(claims.to_string())
    );
    let signature = key.sign_now(input.as_bytes()).unwrap();
    format!("{input}.{}", base64url::encode(signature))
}

async fn exchange(server: &TestServer, token: &str) -> (u16, Value) {
    let response = e2e::http()
        .post(server.token_url())
        .form(&[
            ("grant_type", GRANT),
            ("subject_token", token),
            ("subject_token_type", JWT),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn concurrent_exchanges_of_one_token_across_replicas_have_exactly_one_winner() {
    let sdk = Moto::shared().sdk_config().await;
    let table = moto::create_replay_table(&sdk).await;
    let key = LocalSigner::generate(Algorithm::ES384).unwrap().0;
    let toml = exchange_config(&key, &table);
    // Two replicas of one issuer: B serves A's.
    let sdk = moto::sdk_config_for(&Moto::shared().endpoint).await;
    let (a, b) = TestServer::replicas(&toml, &sdk).await;

    let token = aws_token(&key, &a.url);
    let servers = [&a, &b];
    let attempts = (0..16).map(|i| exchange(servers[i % 2], &token));
    let answers = futures_util::future::join_all(attempts).await;
    let won: Vec<&(u16, Value)> = answers.iter().filter(|(status, _)| *status == 200).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert_eq!(
        won[0].1["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(
            (*status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{answers:?}"
        );
    }
    // One item, namespaced per method and hashed: neither the jti nor the
    // role is a key; kept until the token's exp plus the leeway.
    let items = moto::replay_items(&sdk, &table).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(
        items[0].0.starts_with("upstream#") && items[0].0.len() == "upstream#".len() + 64,
        "{items:?}"
    );
    assert!(!items[0].0.contains("poller"));
    let claims: Value =
        serde_json::from_slice(&base64url::decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    assert!((exp + 30).abs_diff(items[0].1) <= 2, "{items:?} vs exp {exp}");

    // A fresh token of the same role goes through at either replica.
    assert_eq!(exchange(&b, &aws_token(&key, &a.url)).await.0, 200);
}
