//! One-time use across the fleet (`[replay] store = "dynamodb"`): two
//! replicas of one issuer share a table in moto's DynamoDB, through the real
//! AWS SDK. An assertion used at one is refused at the other; of concurrent
//! uses across both exactly one wins; expired items do not block (moto, like
//! DynamoDB, deletes nothing promptly, so this exercises the condition
//! itself); DynamoDB hung, refusing or stopped fails closed with a 503 in
//! bounded time while client-secret logins go on, and the server recovers by
//! itself; a missing table or another schema stops the server from starting;
//! Lambda mode refuses a memory store.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use e2e::capture::{traced, Captured};
use e2e::fault_proxy::{FaultProxy, Mode, DYNAMODB};
use e2e::moto::{self, Moto};
use e2e::{assertion, client_key, good_claims, test_config, TestServer, JWT_BEARER, JWT_CLIENT};
use oidc_core::keys::LocalSigner;
use oidc_core::Algorithm;
use oidc_server::replay::ReplayKey;
use oidc_server::ServiceContext;
use serde_json::{json, Value};

/// A fresh replay table in the shared emulator, and the test configuration
/// (with its `private_key_jwt` client's key) recording uses there.
async fn fleet_config() -> (LocalSigner, String, String) {
    let sdk = Moto::shared().sdk_config().await;
    let table = moto::create_replay_table(&sdk).await;
    let (signer, jwks) = client_key(Algorithm::ES256);
    let toml = format!("{}{}", test_config(&jwks), moto::replay_section(&table));
    (signer, toml, table)
}

/// A context reaching `endpoint` (the emulator or a proxy), with metrics of its own.
async fn context(endpoint: &str) -> ServiceContext {
    ServiceContext {
        sdk_config: Some(moto::sdk_config_for(endpoint).await),
        ..Default::default()
    }
}

/// Two replicas of one issuer (B serves A's issuer), both recording in `toml`'s table.
async fn replicas(toml: &str) -> (TestServer, TestServer) {
    let endpoint = &Moto::shared().endpoint;
    let a = TestServer::builder(toml)
        .context(context(endpoint).await)
        .start()
        .await;
    let b = TestServer::builder(toml)
        .context(context(endpoint).await)
        .issuer(&a.url)
        .start()
        .await;
    (a, b)
}

/// Posts a `private_key_jwt` login; returns status, body and `Retry-After`.
async fn login(server: &TestServer, assertion: &str) -> (u16, Value, Option<u64>) {
    let response = e2e::http()
        .post(server.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, response.json().await.unwrap_or(Value::Null), retry_after)
}

async fn fresh_assertion(signer: &LocalSigner, issuer: &str) -> String {
    assertion(signer, "JWT", good_claims(issuer)).await
}

#[tokio::test]
async fn an_assertion_used_at_one_replica_is_refused_at_the_other() {
    let (signer, toml, table) = fleet_config().await;
    let (a, b) = replicas(&toml).await;
    let one = fresh_assertion(&signer, &a.url).await;
    let (status, body, _) = login(&a, &one).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = login(&b, &one).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, _, _) = login(&a, &one).await;
    assert_eq!(status, 401, "refused at its first replica too");

    // One item, namespaced and hashed: no client text is a key.
    let items = moto::replay_items(&Moto::shared().sdk_config().await, &table).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(
        items[0].0.starts_with("jti#") && items[0].0.len() == 4 + 64,
        "{items:?}"
    );
    assert!(!items[0].0.contains(JWT_CLIENT));
    // Remembered until the assertion's exp plus the leeway.
    let claims = good_claims(&a.url);
    let exp = claims["exp"].as_u64().unwrap();
    assert!((exp + 30).abs_diff(items[0].1) <= 2, "{items:?} vs exp {exp}");
}

#[tokio::test]
async fn concurrent_uses_across_replicas_have_exactly_one_winner() {
    let (signer, toml, _) = fleet_config().await;
    // 32 writes at once queue in the emulator: on a busy machine the last
    // ones take longer than the other tests' 500 ms (a 503 is right then,
    // but not what this test is about).
    let toml = toml.replace("call_timeout_ms = 500", "call_timeout_ms = 2000");
    let (a, b) = replicas(&toml).await;
    let one = fresh_assertion(&signer, &a.url).await;
    let servers = [&a, &b];
    let attempts = (0..32).map(|i| login(servers[i % 2], &one));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|(status, _, _)| status)
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 31, "{statuses:?}");
}

#[tokio::test]
async fn an_expired_entry_does_not_block_a_new_use() {
    let (signer, toml, table) = fleet_config().await;
    let (a, _b) = replicas(&toml).await;
    let sdk = Moto::shared().sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let now = e2e::now();
    let put = |jti: &str, until: u64| {
        dynamodb
            .put_item()
            .table_name(&table)
            .item(
                "pk",
                AttributeValue::S(ReplayKey::assertion(&a.url, JWT_CLIENT, jti).partition_key()),
            )
            .item("expires_at", AttributeValue::N(until.to_string()))
            .send()
    };
    // An item TTL has not deleted yet, past its time: the use goes through
    // and the item is written anew.
    let mut claims = good_claims(&a.url);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    put(&jti, now - 5).await.unwrap();
    let (status, body, _) = login(&a, &assertion(&signer, "JWT", claims.clone()).await).await;
    assert_eq!(status, 200, "{body}");
    let items = moto::replay_items(&sdk, &table).await;
    assert!(items.iter().all(|(_, until)| *until > now), "{items:?}");

    // A live item blocks, whoever wrote it.
    claims["jti"] = json!("a-live-one");
    put("a-live-one", now + 100).await.unwrap();
    let (status, body, _) = login(&a, &assertion(&signer, "JWT", claims).await).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn dynamodb_faults_fail_closed_in_bounded_time_and_recover() {
    let proxy = FaultProxy::start(&Moto::shared().endpoint).await;
    let (signer, toml, _) = fleet_config().await;
    let server = TestServer::builder(&toml)
        .context(context(&proxy.endpoint).await)
        .start()
        .await;
    let (status, body, _) = login(&server, &fresh_assertion(&signer, &server.url).await).await;
    assert_eq!(status, 200, "{body}");

    for mode in [Mode::Hang, Mode::Refuse, Mode::Throttle, Mode::InternalError] {
        proxy.set_for(DYNAMODB, mode);
        let started = Instant::now();
        let (status, body, retry_after) = login(&server, &fresh_assertion(&signer, &server.url).await).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable");
        assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        // Client secrets never touch the store.
        assert_eq!(server.request_token().await.0, 200);
        assert_eq!(ready(&server).await, 503);
    }

    proxy.set(Mode::Pass);
    let (status, body, _) = login(&server, &fresh_assertion(&signer, &server.url).await).await;
    assert_eq!(status, 200, "recovered by itself: {body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&server).await != 200 {
        assert!(Instant::now() < deadline, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn dynamodb_stopped_fails_closed_and_the_server_recovers_when_it_is_back() {
    let moto = Moto::start();
    let port = moto.port;
    let sdk = moto.sdk_config().await;
    let table = moto::create_replay_table(&sdk).await;
    let (signer, jwks) = client_key(Algorithm::ES256);
    let toml = format!("{}{}", test_config(&jwks), moto::replay_section(&table));
    let server = TestServer::builder(&toml)
        .context(context(&moto.endpoint).await)
        .start()
        .await;
    moto.stop();
    let started = Instant::now();
    let (status, body, retry_after) = login(&server, &fresh_assertion(&signer, &server.url).await).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some());
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(server.request_token().await.0, 200);

    // The emulator back on its port (empty: it keeps nothing), the table made again.
    let moto = Moto::start_on(port);
    let sdk = moto.sdk_config().await;
    aws_sdk_dynamodb::Client::new(&sdk)
        .create_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (status, body, _) = login(&server, &fresh_assertion(&signer, &server.url).await).await;
    assert_eq!(status, 200, "{body}");
}

async fn ready(server: &TestServer) -> u16 {
    e2e::http()
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_missing_table_or_another_schema_stops_the_server_from_starting() {
    let sdk = Moto::shared().sdk_config().await;
    let (_, jwks) = client_key(Algorithm::ES256);
    // What a table check finds, given time to find it: a DescribeTable that
    // times out is DynamoDB unavailable, which does not stop a start (logins
    // fail closed until it answers), and a loaded machine can take more than
    // the section's 500 ms (4000 is the most a 10 s request timeout allows).
    let section =
        |table: &str| moto::replay_section(table).replace("call_timeout_ms = 500", "call_timeout_ms = 4000");
    let start = |table: String| {
        let toml = format!("{}{}", test_config(&jwks), section(&table));
        async move {
            let config = oidc_server::Config::from_toml(
                &toml,
                oidc_server::config::Origin::Environment,
                std::iter::empty(),
                &oidc_server::config::Overrides {
                    listen: None,
                    issuer: Some("http://127.0.0.1:1".into()),
                },
            )
            .unwrap();
            let context = context(&Moto::shared().endpoint).await;
            oidc_server::AppState::start(std::sync::Arc::new(config), &context)
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string()
        }
    };
    let missing = moto::unique("no-such-table");
    let message = start(missing.clone()).await;
    assert!(
        message.contains(&missing) && message.contains("does not exist"),
        "{message}"
    );

    let numeric = moto::create_table(&sdk, &[("pk", "N", "HASH")]).await;
    let message = start(numeric.clone()).await;
    assert!(
        message.contains(&numeric) && message.contains("not String"),
        "{message}"
    );

    let sorted = moto::create_table(&sdk, &[("pk", "S", "HASH"), ("sk", "S", "RANGE")]).await;
    let message = start(sorted.clone()).await;
    assert!(
        message.contains(&sorted) && message.contains("key schema"),
        "{message}"
    );

    let other = moto::create_table(&sdk, &[("id", "S", "HASH")]).await;
    let message = start(other.clone()).await;
    assert!(
        message.contains(&other) && message.contains("key schema"),
        "{message}"
    );

    // The binary says the same and exits 2, before it listens.
    let bin = tokio::task::spawn_blocking(|| e2e::built_executable(&["--bin", "oidc-server"], "oidc-server"))
        .await
        .unwrap();
    let toml = format!("{}{}", test_config(&jwks), section(&missing));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .envs(Moto::shared().env())
            .env_remove("OIDC_SERVER_CONFIG")
            .env("OIDC_SERVER_CONFIG_TOML", toml)
            .env("OIDC_SERVER__ISSUER", "http://127.0.0.1:1")
            .env("OIDC_SERVER__LISTEN", "127.0.0.1:0")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[tokio::test]
async fn lambda_mode_refuses_to_keep_one_time_use_in_memory() {
    let (_, jwks) = client_key(Algorithm::ES256);
    let toml = test_config(&jwks);
    let run = |bin: std::path::PathBuf, args: &'static [&'static str], toml: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .args(args)
                .env_remove("OIDC_SERVER_CONFIG")
                .env("OIDC_SERVER_CONFIG_TOML", toml)
                .env("OIDC_SERVER__ISSUER", "http://127.0.0.1:1")
                .output()
                .unwrap()
        })
    };
    let bootstrap =
        tokio::task::spawn_blocking(|| e2e::built_executable(&["--bin", "bootstrap"], "bootstrap"))
            .await
            .unwrap();
    let output = run(bootstrap, &[], toml.clone()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("Lambda mode cannot start"), "{stderr}");
    assert!(stderr.contains("store = \"dynamodb\""), "{stderr}");
    assert!(stderr.contains(JWT_CLIENT), "names the connector: {stderr}");

    // check-config says the same, as a note: the file is valid for one process.
    let server =
        tokio::task::spawn_blocking(|| e2e::built_executable(&["--bin", "oidc-server"], "oidc-server"))
            .await
            .unwrap();
    let output = run(server, &["check-config"], toml).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("note: in Lambda mode"), "{stdout}");
    assert!(stdout.contains("store = \"dynamodb\""), "{stdout}");
}

/// What a server logged while `f` ran (this thread's events: the server's
/// tasks run on the test's current-thread runtime).
async fn logged<F: std::future::Future>(f: F) -> (F::Output, String) {
    let subscriber = |captured: Captured| {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || captured.clone())
            .with_env_filter("oidc_server=warn")
            .finish()
    };
    traced(subscriber, f).await
}

/// Found in the hardening review: `/readyz` answered the replay store's
/// error text, and an AWS error names the account, the role and the table.
/// Its body now says which check failed; the detail goes to the log.
#[tokio::test(flavor = "current_thread")]
async fn readyz_says_which_check_failed_and_logs_the_aws_detail() {
    const ACCOUNT: &str = "123456789012";
    let proxy = FaultProxy::start(&Moto::shared().endpoint).await;
    let (signer, toml, table) = fleet_config().await;
    let ((), log) = logged(async {
        let server = TestServer::builder(&toml)
            .context(context(&proxy.endpoint).await)
            .start()
            .await;
        // What DynamoDB answers a role that lost its permissions.
        let denied = move |target: &str, _: &[u8]| {
            let action = target.strip_prefix(DYNAMODB)?;
            let body = json!({
                "__type": "com.amazon.coral.service#AccessDeniedException",
                "Message": format!(
                    "User: arn:aws:sts::{ACCOUNT}:assumed-role/token-service-role/i-0abc is not authorized \
                     to perform: dynamodb:{action} on resource: arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{table} \
                     because no identity-based policy allows the dynamodb:{action} action"
                ),
            });
            Some((400, body.to_string()))
        };
        proxy.set(Mode::Respond(std::sync::Arc::new(denied)));
        let (status, body, _) = login(&server, &fresh_assertion(&signer, &server.url).await).await;
        assert_eq!(status, 503, "{body}");

        // Until the store is probed again (DescribeTable), then after.
        let probes = || proxy.count("DynamoDB_20120810.DescribeTable");
        let before = probes();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let response = e2e::http()
                .get(format!("{}/readyz", server.url))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 503);
            let text = response.text().await.unwrap();
            assert!(!text.contains("arn:") && !text.contains(ACCOUNT), "{text}");
            assert_eq!(text, "replay store unavailable\n");
            if probes() > before {
                break;
            }
            assert!(Instant::now() < deadline, "/readyz never probed the table");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(
        log.contains("readiness: the replay store probe failed")
            && log.contains("dynamodb:DescribeTable")
            && log.contains(&format!("arn:aws:sts::{ACCOUNT}:assumed-role/token-service-role")),
        "the detail is logged: {log}"
    );
}
