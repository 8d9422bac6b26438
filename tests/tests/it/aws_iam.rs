//! AWS IAM client authentication end to end: connector-client signs
//! `sts:GetCallerIdentity` with IAM credentials, oidc-server forwards it to
//! moto's STS with signature checking on (`INITIAL_NO_AUTH_ACTION_COUNT`),
//! and tokens name the bound connector. Every tampering is refused with
//! `invalid_client`, and nothing is ever sent to a host other than the
//! configured STS endpoint.

use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use connector_client::aws_iam::AwsIam;
use connector_client::{ClientAuth, ClientCredentials, Endpoint, TokenSource};
use e2e::moto::{free_port, Moto, REGION};
use e2e::tools::run_python;
use e2e::{TestServer, AUDIENCE, JWT_CLIENT};
use oidc_core::keys::LocalSigner;
use serde_json::Value;
use tokio::sync::OnceCell;

const ASSERTION_TYPE: &str = connector_client::aws_iam::ASSERTION_TYPE;

/// Users, a role and credentials made in a moto of its own, whose SigV4 and
/// IAM checks start right after these six setup calls.
const SETUP: &str = r#"
import json, sys, boto3
ep = sys.argv[1]
kw = dict(endpoint_url=ep, region_name="us-east-1")
iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **kw)
out = {}
for user in ["alice", "bob"]:
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    out[user] = [key["AccessKeyId"], key["SecretAccessKey"], None]
iam.create_role(RoleName="connector-eu", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/alice"}, "Action": "sts:AssumeRole"}]}))
iam.put_user_policy(UserName="alice", PolicyName="assume", PolicyDocument=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
# From here on, moto checks signatures: alice assumes the role with her own keys.
sts = boto3.client("sts", aws_access_key_id=out["alice"][0], aws_secret_access_key=out["alice"][1], **kw)
role = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/connector-eu", RoleSessionName="task-1")["Credentials"]
out["role"] = [role["AccessKeyId"], role["SecretAccessKey"], role["SessionToken"]]
print(json.dumps(out))
"#;

struct Iam {
    moto: Moto,
    creds: Value,
}

async fn iam() -> &'static Iam {
    static IAM: OnceCell<Iam> = OnceCell::const_new();
    IAM.get_or_init(|| async {
        let moto = Moto::start_with_env(free_port(), &[("INITIAL_NO_AUTH_ACTION_COUNT", "6")]);
        let out = run_python(SETUP, &[&moto.endpoint]).await;
        assert_eq!(out.code, 0, "IAM setup in moto failed: {}", out.stderr);
        let creds = serde_json::from_str(&out.stdout).unwrap();
        Iam { moto, creds }
    })
    .await
}

fn credentials(iam: &Iam, who: &str) -> SharedCredentialsProvider {
    let c = &iam.creds[who];
    SharedCredentialsProvider::new(Credentials::new(
        c[0].as_str().unwrap(),
        c[1].as_str().unwrap(),
        c[2].as_str().map(str::to_owned),
        None,
        "e2e",
    ))
}

fn config(sts_endpoint: &str) -> String {
    format!(
        r#"
issuer = "http://placeholder.invalid"
[signing]
kind = "local"
generate = "ES256"
[auth]
failure_limit = 1000
[aws_iam]
sts_endpoint = "{sts_endpoint}"
[[connectors]]
id = "connector-user"
audiences = ["{AUDIENCE}"]
aws_principals = ["arn:aws:iam::123456789012:user/alice"]
[[connectors]]
id = "connector-role"
audiences = ["{AUDIENCE}"]
aws_principals = ["arn:aws:iam::123456789012:role/connector-*"]
"#
    )
}

fn aws(iam: &Iam, who: &str, endpoint: &str) -> AwsIam {
    AwsIam::new(credentials(iam, who), REGION, endpoint).unwrap()
}

/// Posts a raw assertion; returns status, body and headers.
async fn post(
    server: &TestServer,
    client_id: &str,
    assertion: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = e2e::http()
        .post(server.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap(), headers)
}

fn decode(assertion: &str) -> Value {
    serde_json::from_slice(&oidc_core::base64url::decode(assertion).unwrap()).unwrap()
}

fn encode(request: &Value) -> String {
    oidc_core::base64url::encode(request.to_string())
}

async fn refused(server: &TestServer, client_id: &str, assertion: &str) {
    let (status, body, _) = post(server, client_id, assertion).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn an_iam_user_and_an_assumed_role_get_tokens_for_their_connectors() {
    let iam = iam().await;
    let server = TestServer::start(&config(&iam.moto.endpoint)).await;
    for (who, connector) in [("alice", "connector-user"), ("role", "connector-role")] {
        let source = ClientCredentials::builder(
            Endpoint::TokenUrl(server.token_url()),
            connector,
            ClientAuth::AwsIam(aws(iam, who, &iam.moto.endpoint)),
        )
        .build()
        .unwrap();
        let token = source.token().await.unwrap_or_else(|e| panic!("{who}: {e}"));
        let claims = server.verify(token.secret().as_str()).await;
        assert_eq!(claims.sub, connector);
    }
    // Discovery advertises the method and its assertion type.
    let doc: Value = server.get_json("/.well-known/openid-configuration").await;
    assert!(doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "aws_iam"));
    assert_eq!(doc["aws_iam_client_assertion_type"], ASSERTION_TYPE);
}

#[tokio::test]
async fn tampered_requests_are_refused() {
    let iam = iam().await;
    let server = TestServer::start(&config(&iam.moto.endpoint)).await;
    let alice = aws(iam, "alice", &iam.moto.endpoint);
    let good = decode(&alice.assertion(&server.url).await.unwrap());

    // Tampered signature: STS refuses it.
    let mut request = good.clone();
    let auth = request["headers"]["authorization"].as_str().unwrap().to_owned();
    let flipped = if auth.ends_with('0') { "1" } else { "0" };
    request["headers"]["authorization"] = Value::String(format!("{}{flipped}", &auth[..auth.len() - 1]));
    refused(&server, "connector-user", &encode(&request)).await;

    // Missing and wrong issuer header.
    let mut request = good.clone();
    request["headers"]
        .as_object_mut()
        .unwrap()
        .remove("x-connector-token-issuer");
    refused(&server, "connector-user", &encode(&request)).await;
    refused(
        &server,
        "connector-user",
        &alice
            .assertion("https://another-token-service.example")
            .await
            .unwrap(),
    )
    .await;

    // The issuer header not among the signed headers.
    let mut request = good.clone();
    let unsigned = auth.replace(";x-connector-token-issuer", "");
    assert_ne!(unsigned, auth);
    request["headers"]["authorization"] = Value::String(unsigned);
    refused(&server, "connector-user", &encode(&request)).await;

    // The nonce missing, or not among the signed headers.
    let mut request = good.clone();
    request["headers"]
        .as_object_mut()
        .unwrap()
        .remove("x-connector-token-nonce");
    refused(&server, "connector-user", &encode(&request)).await;
    let mut request = good.clone();
    let unsigned = auth.replace(";x-connector-token-nonce", "");
    assert_ne!(unsigned, auth);
    request["headers"]["authorization"] = Value::String(unsigned);
    refused(&server, "connector-user", &encode(&request)).await;

    // A stale date (20 minutes ago).
    let mut request = good.clone();
    let stale = time_text(std::time::SystemTime::now() - std::time::Duration::from_secs(1200));
    request["headers"]["x-amz-date"] = Value::String(stale);
    refused(&server, "connector-user", &encode(&request)).await;

    // A body other than GetCallerIdentity, and another method.
    let mut request = good.clone();
    request["body"] = Value::String("Action=AssumeRole&Version=2011-06-15".into());
    refused(&server, "connector-user", &encode(&request)).await;
    let mut request = good.clone();
    request["method"] = Value::String("GET".into());
    refused(&server, "connector-user", &encode(&request)).await;

    // An unexpected header.
    let mut request = good.clone();
    request["headers"]["x-forwarded-host"] = Value::String("evil.example".into());
    refused(&server, "connector-user", &encode(&request)).await;

    // The untouched request still works (once: it is then a replay).
    let (status, body, _) = post(&server, "connector-user", &encode(&good)).await;
    assert_eq!(status, 200, "{body}");
    refused(&server, "connector-user", &encode(&good)).await;
}

#[tokio::test]
async fn wrong_secret_key_and_unbound_principals_are_refused() {
    let iam = iam().await;
    let server = TestServer::start(&config(&iam.moto.endpoint)).await;
    let c = &iam.creds["alice"];
    let wrong = SharedCredentialsProvider::new(Credentials::new(
        c[0].as_str().unwrap(),
        "not-the-secret",
        None,
        None,
        "e2e",
    ));
    let wrong = AwsIam::new(wrong, REGION, &iam.moto.endpoint).unwrap();
    refused(
        &server,
        "connector-user",
        &wrong.assertion(&server.url).await.unwrap(),
    )
    .await;

    // bob is a real user, but bound to no connector; alice is not the role connector.
    let bob = aws(iam, "bob", &iam.moto.endpoint);
    refused(
        &server,
        "connector-user",
        &bob.assertion(&server.url).await.unwrap(),
    )
    .await;
    let alice = aws(iam, "alice", &iam.moto.endpoint);
    refused(
        &server,
        "connector-role",
        &alice.assertion(&server.url).await.unwrap(),
    )
    .await;
    // An unknown client id looks the same.
    refused(
        &server,
        "no-such-connector",
        &alice.assertion(&server.url).await.unwrap(),
    )
    .await;
}

#[tokio::test]
async fn nothing_is_sent_anywhere_but_the_configured_sts_endpoint() {
    let iam = iam().await;
    // A decoy that counts every connection made to it.
    let decoy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let decoy_addr = decoy.local_addr().unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = decoy.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let server = TestServer::start(&config(&iam.moto.endpoint)).await;

    // Signed for the decoy: the host does not match the configured endpoint.
    let for_decoy = aws(iam, "alice", &format!("http://{decoy_addr}"));
    refused(
        &server,
        "connector-user",
        &for_decoy.assertion(&server.url).await.unwrap(),
    )
    .await;
    // A URL inside the request is not part of the format, let alone followed.
    let mut request = decode(
        &aws(iam, "alice", &iam.moto.endpoint)
            .assertion(&server.url)
            .await
            .unwrap(),
    );
    request["url"] = Value::String(format!("http://{decoy_addr}/"));
    refused(&server, "connector-user", &encode(&request)).await;
    let mut request = decode(
        &aws(iam, "alice", &iam.moto.endpoint)
            .assertion(&server.url)
            .await
            .unwrap(),
    );
    request["headers"]["host"] = Value::String(decoy_addr.to_string());
    refused(&server, "connector-user", &encode(&request)).await;

    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a request reached the decoy"
    );
}

#[tokio::test]
async fn sts_down_is_503_with_retry_after() {
    let iam = iam().await;
    // Nothing listens on this port: STS is unreachable.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let server = TestServer::start(&config(&dead)).await;
    let alice = aws(iam, "alice", &dead);
    let (status, body, headers) = post(
        &server,
        "connector-user",
        &alice.assertion(&server.url).await.unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
}

/// `YYYYMMDDTHHMMSSZ`.
fn time_text(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let t = oidc_core::calendar::Utc::from_unix_seconds(secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

// ---------------------------------------------------------------------------
// One-time use across the fleet
// ---------------------------------------------------------------------------

/// Two replicas of one issuer whose replay table is in the shared emulator
/// (this module's own emulator checks signatures for STS), with a
/// `private_key_jwt` connector beside the IAM ones.
async fn fleet(iam: &Iam) -> (TestServer, TestServer, LocalSigner, String) {
    let sdk = Moto::shared().sdk_config().await;
    let table = e2e::moto::create_replay_table(&sdk).await;
    let (signer, jwks) = e2e::client_key(oidc_core::Algorithm::ES256);
    let jwks = toml::Value::try_from(&jwks).unwrap();
    let toml = format!(
        "{}{}\n[[connectors]]\nid = \"{JWT_CLIENT}\"\naudiences = [\"{AUDIENCE}\"]\njwks = {jwks}\n",
        config(&iam.moto.endpoint),
        // Concurrent logins queue in the emulator (STS, then DynamoDB): on a
        // busy machine the last ones outlast the usual 500 ms.
        e2e::moto::replay_section(&table).replace("call_timeout_ms = 500", "call_timeout_ms = 2000")
    );
    let (a, b) = TestServer::replicas(&toml, &sdk).await;
    (a, b, signer, table)
}

#[tokio::test]
async fn a_signed_request_is_accepted_once_across_replicas() {
    let iam = iam().await;
    let (a, b, _, _) = fleet(iam).await;
    let alice = aws(iam, "alice", &iam.moto.endpoint);

    let one = alice.assertion(&a.url).await.unwrap();
    let (status, body, _) = post(&a, "connector-user", &one).await;
    assert_eq!(status, 200, "{body}");
    refused(&b, "connector-user", &one).await;

    let one = alice.assertion(&a.url).await.unwrap();
    let servers = [&a, &b];
    let attempts = (0..32).map(|i| post(servers[i % 2], "connector-user", &one));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|(status, _, _)| status)
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 31, "{statuses:?}");
}

#[tokio::test]
async fn forged_signatures_never_reach_the_store_nor_stop_assertion_logins() {
    let iam = iam().await;
    let (a, _b, signer, table) = fleet(iam).await;
    let alice = aws(iam, "alice", &iam.moto.endpoint);
    let template = decode(&alice.assertion(&a.url).await.unwrap());
    // Well-formed, fresh, for this issuer, with a nonce: only the signature
    // is made up (what anyone can send without credentials).
    for n in 0..50u32 {
        let mut forged = template.clone();
        let auth = forged["headers"]["authorization"].as_str().unwrap().to_owned();
        let (head, _) = auth.rsplit_once("Signature=").unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, &n.to_be_bytes());
        forged["headers"]["authorization"] =
            Value::String(format!("{head}Signature={}", hex::encode(digest)));
        refused(&a, "connector-user", &encode(&forged)).await;
    }
    let sdk = Moto::shared().sdk_config().await;
    assert!(e2e::moto::replay_items(&sdk, &table).await.is_empty());

    let claims = e2e::good_claims(&a.url);
    let (status, body) = jwt_login(&a, &e2e::assertion(&signer, "JWT", claims).await).await;
    assert_eq!(status, 200, "{body}");
    let items = e2e::moto::replay_items(&sdk, &table).await;
    assert_eq!(items.len(), 1);
    assert!(items[0].0.starts_with("jti#"), "{items:?}");
}

#[tokio::test]
async fn two_honest_requests_signed_in_the_same_second_both_get_tokens() {
    let iam = iam().await;
    let (a, b, _, table) = fleet(iam).await;
    let alice = aws(iam, "alice", &iam.moto.endpoint);
    // Two processes sharing one role's credentials, signing in one second.
    let (first, second) = loop {
        let first = alice.assertion(&a.url).await.unwrap();
        let second = alice.assertion(&a.url).await.unwrap();
        if decode(&first)["headers"]["x-amz-date"] == decode(&second)["headers"]["x-amz-date"] {
            break (first, second);
        }
    };
    let (status, body, _) = post(&a, "connector-user", &first).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = post(&b, "connector-user", &second).await;
    assert_eq!(status, 200, "{body}");
    let items = e2e::moto::replay_items(&Moto::shared().sdk_config().await, &table).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items.iter().all(|(pk, _)| pk.starts_with("sigv4#")), "{items:?}");
}

async fn jwt_login(server: &TestServer, assertion: &str) -> (u16, Value) {
    let response = e2e::http()
        .post(server.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", e2e::JWT_BEARER),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Found in the hardening review: a signature STS vouched for was recorded
/// before the binding was checked, so anyone with AWS credentials of their
/// own (an account is free) filled the in-memory store (1M entries: then
/// every `aws_iam` login got 503) or cost the operator a DynamoDB write per
/// request. Unbound principals, principals of another connector and unknown
/// client ids now leave nothing behind; a bound request is still accepted
/// once.
#[tokio::test]
async fn an_unbound_principal_leaves_no_replay_entry() {
    use oidc_server::replay::{MemoryReplayStore, Method};

    let iam = iam().await;
    let alice = aws(iam, "alice", &iam.moto.endpoint);
    // Each refusal comes after STS confirmed the caller: real credentials.
    async fn strangers(iam: &Iam, issuer: &str) -> Vec<(&'static str, String)> {
        let (alice, bob) = (
            aws(iam, "alice", &iam.moto.endpoint),
            aws(iam, "bob", &iam.moto.endpoint),
        );
        vec![
            // bob is a real user bound to no connector.
            ("connector-user", bob.assertion(issuer).await.unwrap()),
            // alice is bound, but not to the role connector.
            ("connector-role", alice.assertion(issuer).await.unwrap()),
            // No such client at all: the same path.
            ("no-such-connector", alice.assertion(issuer).await.unwrap()),
        ]
    }

    // One process, the store in memory.
    let memory = Arc::new(MemoryReplayStore::default());
    let server = TestServer::builder(&config(&iam.moto.endpoint))
        .replay_store(memory.clone())
        .start()
        .await;
    for (client_id, assertion) in strangers(iam, &server.url).await {
        refused(&server, client_id, &assertion).await;
    }
    assert_eq!(
        memory.len(Method::AwsSigV4),
        0,
        "an unbound principal was recorded"
    );
    let one = alice.assertion(&server.url).await.unwrap();
    let (status, body, _) = post(&server, "connector-user", &one).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(memory.len(Method::AwsSigV4), 1);
    refused(&server, "connector-user", &one).await;

    // A fleet, the store in DynamoDB: no item, so no write, per stranger.
    let (a, b, _, table) = fleet(iam).await;
    for (client_id, assertion) in strangers(iam, &a.url).await {
        refused(&a, client_id, &assertion).await;
    }
    let sdk = Moto::shared().sdk_config().await;
    let items = e2e::moto::replay_items(&sdk, &table).await;
    assert!(items.is_empty(), "an unbound principal was recorded: {items:?}");
    let one = alice.assertion(&a.url).await.unwrap();
    let (status, body, _) = post(&a, "connector-user", &one).await;
    assert_eq!(status, 200, "{body}");
    refused(&b, "connector-user", &one).await;
    let items = e2e::moto::replay_items(&sdk, &table).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(items[0].0.starts_with("sigv4#"), "{items:?}");
}
