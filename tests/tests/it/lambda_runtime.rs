//! The shipped `bootstrap` binary under a Lambda Runtime API (cargo-lambda's
//! emulator, see `e2e::lambda_runtime`), driven over HTTP as clients drive a
//! function URL: discovery, JWKS, tokens (verified through discovery), an
//! error path, a 6 KB form body, `/readyz`; the rotation handler stepping a
//! key set on moto through the Lambda `Invoke` API; a bad configuration
//! reported as the environment's init error, not a hang; a frozen
//! environment that answers from the set in force when it thaws.

use std::collections::HashMap;
use std::time::Duration;

use e2e::lambda_runtime::{LambdaEmulator, LambdaFunction};
use e2e::moto::{self, Moto};
use e2e::{client_key, test_config, test_config_with_signing, AUDIENCE, SECRET, SECRET_CLIENT};
use oidc_core::verify::RemoteJwks;
use oidc_core::{AccessTokenClaims, Algorithm, Policy, Verifier};
use oidc_server::keyset::KeySetSecret;
use serde_json::{json, Value};

/// How long the emulator lets an invocation wait for the function: far
/// longer than any answer here, so that a hang shows as one.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);

/// The test configuration with its issuer at the emulator's function URL,
/// without its `private_key_jwt` connector (one-time assertions need the
/// fleet's replay table in Lambda: every environment has a memory of its own).
fn config_at(emulator: &LambdaEmulator, toml: &str) -> String {
    let toml = toml.replace(
        "issuer = \"http://placeholder.invalid\"",
        &format!("issuer = \"{}\"", emulator.function_url()),
    );
    let assertion_connector = format!("[[connectors]]\nid = \"{}\"", e2e::JWT_CLIENT);
    match toml.find(&assertion_connector) {
        Some(at) => toml[..at].to_owned(),
        None => toml,
    }
}

fn function_env(toml: String) -> Vec<(String, String)> {
    vec![
        ("OIDC_SERVER_CONFIG_TOML".into(), toml),
        ("RUST_LOG".into(), "info".into()),
    ]
}

async fn get(url: &str) -> reqwest::Response {
    e2e::http().get(url).send().await.unwrap()
}

async fn token_request(emulator: &LambdaEmulator, form: &[(&str, &str)]) -> (u16, Value) {
    let response = e2e::http()
        .post(format!("{}/token", emulator.function_url()))
        .basic_auth(SECRET_CLIENT, Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bootstrap_serves_a_function_url_under_the_runtime_api() {
    let emulator = LambdaEmulator::start(INVOKE_TIMEOUT);
    let (_, jwks) = client_key(Algorithm::ES256);
    let function = emulator.start_function(
        &e2e::workspace_path(""),
        &function_env(config_at(&emulator, &test_config(&jwks))),
    );
    let base = emulator.function_url();

    let discovery = get(&format!("{base}/.well-known/openid-configuration")).await;
    assert_eq!(discovery.status(), 200, "{}", function.output());
    let discovery: Value = discovery.json().await.unwrap();
    assert_eq!(discovery["issuer"], base.as_str());
    assert_eq!(discovery["token_endpoint"], format!("{base}/token"));

    let jwks = get(&format!("{base}/.well-known/jwks.json")).await;
    assert_eq!(jwks.status(), 200);
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = jwks.json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");

    // A token, verified as a control plane would: through discovery.
    let (status, body) = token_request(&emulator, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let verifier = Verifier::new(
        Policy::builder(base.clone(), [AUDIENCE]).build().unwrap(),
        RemoteJwks::discovery(base.clone()).build().unwrap(),
    );
    let verified = verifier.verify::<AccessTokenClaims>(token).await.unwrap();
    assert_eq!(verified.claims().sub, SECRET_CLIENT);

    // A 6 KB form body (an unknown parameter is ignored) arrives whole.
    let padding = "x".repeat(6 * 1024);
    let (status, body) = token_request(
        &emulator,
        &[("grant_type", "client_credentials"), ("padding", &padding)],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A function URL event with a base64-encoded form body (what Lambda
    // delivers for form posts), through the Invoke API.
    let event = {
        use base64::Engine as _;
        let text = std::fs::read_to_string(e2e::workspace_path(
            "oidc-server/tests/fixtures/lambda/function-url-token.json",
        ))
        .unwrap();
        let mut event: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(event["isBase64Encoded"], true);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SECRET_CLIENT}:{SECRET}"));
        event["headers"]["authorization"] = json!(format!("Basic {basic}"));
        event
    };
    let invoked: Value = e2e::http()
        .post(emulator.invoke_url())
        .json(&event)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(invoked["statusCode"], 200, "{invoked}");
    let body: Value = serde_json::from_str(invoked["body"].as_str().unwrap_or_default()).unwrap_or_default();
    assert!(body["access_token"].is_string(), "{invoked}");

    // A binary body (function URLs base64-encode it): refused as not a form.
    let binary = e2e::http()
        .post(format!("{base}/token"))
        .basic_auth(SECRET_CLIENT, Some(SECRET))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 159, 146, 150, 255, 1, 2, 3])
        .send()
        .await
        .unwrap();
    let status = binary.status().as_u16();
    let body: Value = binary.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("invalid_request")),
        "{body}"
    );

    // An error path: a wrong secret is 401 with the challenge, never a 500.
    let wrong = e2e::http()
        .post(format!("{base}/token"))
        .basic_auth(SECRET_CLIENT, Some("not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let ready = get(&format!("{base}/readyz")).await;
    assert_eq!(ready.status(), 200);
    // The audit events reached the environment's log (what CloudWatch gets).
    let output = function.output();
    assert!(
        output.contains("token_issued") && output.contains("token_refused"),
        "{output}"
    );
}

#[tokio::test]
async fn a_bad_configuration_is_the_environments_init_error_not_a_hang() {
    let emulator = LambdaEmulator::start(INVOKE_TIMEOUT);
    // Built (if it must be) before the clock starts.
    let _ = e2e::lambda_runtime::bootstrap();
    // As in Lambda, the invocation comes first and the environment starts
    // for it; it fails as soon as init does (without the init-error call it
    // would wait INVOKE_TIMEOUT).
    let started = std::time::Instant::now();
    let invocation = tokio::spawn(
        e2e::http()
            .get(format!("{}/healthz", emulator.function_url()))
            .timeout(INVOKE_TIMEOUT / 4)
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut function = emulator.start_function(
        &e2e::workspace_path(""),
        &function_env("issuer = \"https://tokens.example.com\"\n[signing]\nkind = \"hsm\"\n".into()),
    );
    let response = invocation.await.unwrap().expect("an answer, not a timeout");
    assert_eq!(response.status(), 500);
    assert!(started.elapsed() < INVOKE_TIMEOUT / 4);
    assert!(
        function.wait_for_exit(Duration::from_secs(10)),
        "bootstrap exited"
    );
    let output = function.output();
    assert!(output.contains("error:") && output.contains("hsm"), "{output}");
}

fn template(issuer: &str, sym: &str) -> String {
    json!({
        "format": "connector-identity key set v2", "issuer": issuer, "kind": "kms-envelope",
        "alg": "ES256", "kms_key_id": sym, "max_token_lifetime_secs": 3, "jwks_max_age_secs": 2,
        "poll_interval_secs": 1, "leeway_secs": 1, "rotation_window_secs": 3,
    })
    .to_string()
}

async fn stages(sdk: &aws_config::SdkConfig, secret: &str) -> HashMap<String, Vec<String>> {
    KeySetSecret::new(
        &aws_sdk_secretsmanager::Client::new(sdk),
        secret,
        Default::default(),
    )
    .stages()
    .await
    .unwrap()
}

/// The four rotation steps as Secrets Manager invokes the function.
async fn rotate_through(emulator: &LambdaEmulator, secret_arn: &str, token: &str) {
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let event = json!({"Step": step, "SecretId": secret_arn, "ClientRequestToken": token});
        let response = e2e::http()
            .post(emulator.invoke_url())
            .json(&event)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success() && !body.contains("errorMessage"),
            "{step}: {status} {body}"
        );
    }
}

fn token() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    hex::encode(bytes)
}

async fn kids(url: &str) -> Vec<String> {
    let jwks: Value = get(url).await.json().await.unwrap();
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_rotation_handler_and_a_frozen_environment_under_the_runtime_api() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let secret = moto::unique("lambda-runtime");
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    // The stack's shape: the secret starts empty; the rotation function's
    // template makes the first set.
    let arn = secrets
        .create_secret()
        .name(&secret)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();

    let rotation = LambdaEmulator::start(INVOKE_TIMEOUT);
    let service = LambdaEmulator::start(INVOKE_TIMEOUT);
    let issuer = service.function_url();
    let mut env = moto.env();
    env.push((
        oidc_server::lambda::rotation::HANDLER_ENV.into(),
        "rotation".into(),
    ));
    env.push(("OIDC_SERVER_KEY_SET_TEMPLATE".into(), template(&issuer, &sym)));
    let _rotation_function = rotation.start_function(&e2e::workspace_path(""), &env);
    let first = token();
    rotate_through(&rotation, &arn, &first).await;
    let labels = stages(&sdk, &secret).await;
    assert!(labels[&first].iter().any(|l| l == "AWSCURRENT"), "{labels:?}");

    // The token service on that set.
    let toml = config_at(
        &service,
        &test_config_with_signing(&format!(
            "[signing]\nkind = \"kms-envelope\"\nkey_set_secret = \"{secret}\"\npoll_interval_secs = 1\nleeway_secs = 1\n"
        )),
    ) + "\n[tokens]\ndefault_ttl_secs = 3\nmax_ttl_secs = 3\n\n[http]\njwks_max_age_secs = 2\n";
    let mut env = moto.env();
    env.extend(function_env(toml));
    let function: LambdaFunction = service.start_function(&e2e::workspace_path(""), &env);
    let jwks_url = format!("{issuer}/.well-known/jwks.json");
    let before = kids(&jwks_url).await;
    assert_eq!(
        before.len(),
        2,
        "current and next: {before:?} {}",
        function.output()
    );
    let (status, body) = token_request(&service, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");

    // Frozen for longer than the poll interval while the set rotates (as
    // soon as the rules allow: R = max(1 + 2, 1 + 3 + 1) + 3 = 8 s).
    function.freeze();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let second = token();
    rotate_through(&rotation, &arn, &second).await;
    function.thaw();
    // The first answer after the thaw is the set in force.
    let after = kids(&jwks_url).await;
    assert_eq!(after.len(), 3, "previous, current, next: {after:?}");
    assert!(
        after.iter().any(|k| !before.contains(k)),
        "{before:?} -> {after:?}"
    );
    let (status, body) = token_request(&service, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    let header = oidc_core::jws::UnverifiedJws::decode(body["access_token"].as_str().unwrap(), 8192)
        .unwrap()
        .header()
        .kid
        .clone()
        .unwrap();
    assert_eq!(header, before[1], "the old next key signs: {before:?}");
}
