//! Keys that rotate themselves, against moto_server: Secrets Manager's
//! four rotation steps with real events, each retried; two server replicas
//! sharing one key set while `oidc-server keys rotate` rotates it three
//! times and verifiers that cache either replica's JWKS (oidc-core's
//! `RemoteJwks`, PyJWT's `PyJWKClient`, jose's `createRemoteJWKSet`) verify
//! every token; a server configured beyond the set's rules refuses to start;
//! a thawed Lambda environment reads the set before answering; `kms` sets
//! create one KMS key per rotation and delete the one that left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use e2e::cli::{binary, envelope_init_args, run, text};
use e2e::fault_proxy::{FaultProxy, Mode};
use e2e::moto::{self, Moto};
use e2e::tools::CachingVerifier;
use e2e::{TestServer, AUDIENCE, SECRET};
use oidc_core::keys::KmsOptions;
use oidc_core::verify::RemoteJwks;
use oidc_core::{AccessTokenClaims, Algorithm, Policy, Verifier};
use oidc_server::config::{Config, Origin, Overrides};
use oidc_server::keyset::document::{KeySetTemplate, KeySetValue, SetKind, Timings};
use oidc_server::keyset::SigningSetupError;
use oidc_server::keyset::{KeySetError, KeySetSecret, Rotation, RotationStep};
use oidc_server::KeySetPolling;
use oidc_server::{lambda, AppState, ServiceContext};
use serde_json::{json, Value};

const ISSUER: &str = "http://127.0.0.1:1";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Second-scale rules: `t` longest token lifetime, `a` JWKS max-age, `p`
/// poll interval, `l` verifier leeway, in seconds; a rotation's steps must
/// all run within [`WINDOW`] seconds.
fn timings(t: u64, a: u64, p: u64, l: u64) -> Timings {
    Timings {
        max_token_lifetime: secs(t),
        jwks_max_age: secs(a),
        poll_interval: secs(p),
        leeway: secs(l),
        rotation_window: secs(WINDOW),
    }
}

/// The rotation window of second-scale sets: a kms rotation on moto takes
/// about a second, and `CreatedDate` has whole seconds.
const WINDOW: u64 = 3;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A key set of `kind` with `timings`, for [`ISSUER`].
fn template(kind: SetKind, timings: Timings) -> KeySetTemplate {
    KeySetTemplate {
        issuer: ISSUER.into(),
        kind,
        timings,
        first_key_id: None,
    }
}

fn envelope(sym: &str) -> SetKind {
    SetKind::KmsEnvelope {
        kms_key_id: sym.into(),
        alg: Algorithm::ES256,
    }
}

/// Creates the secret holding `template` (no keys yet) and returns its ARN,
/// which is what Secrets Manager puts in a rotation event.
pub(crate) async fn create_set(sdk: &SdkConfig, name: &str, template: &KeySetTemplate) -> String {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    KeySetSecret::new(&secrets, name, Default::default())
        .create(&template.to_json(), "test key set", None)
        .await
        .unwrap();
    let described = secrets.describe_secret().secret_id(name).send().await.unwrap();
    described.arn().unwrap().to_owned()
}

fn rotation(sdk: &SdkConfig, secret: &str) -> Rotation {
    Rotation::connect(sdk, secret, KmsOptions::default())
}

async fn stages(sdk: &SdkConfig, secret: &str) -> HashMap<String, Vec<String>> {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    KeySetSecret::new(&secrets, secret, Default::default())
        .stages()
        .await
        .unwrap()
}

fn labelled<'a>(stages: &'a HashMap<String, Vec<String>>, label: &str) -> Vec<&'a str> {
    stages
        .iter()
        .filter(|(_, labels)| labels.iter().any(|l| l == label))
        .map(|(id, _)| id.as_str())
        .collect()
}

fn event(step: &str, secret: &str, token: &str) -> Value {
    // What Secrets Manager sends (RotationToken appears in newer events).
    json!({"Step": step, "SecretId": secret, "ClientRequestToken": token, "RotationToken": "rt-0123456789"})
}

fn token() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    hex::encode(bytes)
}

async fn current(sdk: &SdkConfig, secret: &str) -> (String, u64, KeySetValue) {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let stored = KeySetSecret::new(&secrets, secret, Default::default())
        .current()
        .await
        .unwrap()
        .expect("a version in force");
    (stored.version_id, stored.created_at, stored.value)
}

fn document(value: KeySetValue) -> oidc_server::keyset::document::KeySetDocument {
    match value {
        KeySetValue::Document(document) => *document,
        KeySetValue::Template(_) => panic!("the set has no keys"),
    }
}

/// Sleeps until the rotation of the set in force is allowed (by the
/// document's rules, from its CreatedDate), plus a margin for the emulator.
async fn until_rotation_allowed(sdk: &SdkConfig, secret: &str) {
    let (_, created_at, value) = current(sdk, secret).await;
    let earliest = document(value).timings.earliest_rotation(created_at);
    let wait = (earliest + 1).saturating_sub(unix_now());
    tokio::time::sleep(secs(wait)).await;
}

#[tokio::test]
async fn the_four_steps_on_real_events_each_retried_and_a_failed_test_retried() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let name = moto::unique("steps");
    // P = 1, A = 1, T = 1, L = 0: rotations at least 2 s apart.
    let timings = timings(1, 1, 1, 0);
    let arn = create_set(&sdk, &name, &template(envelope(&sym), timings)).await;
    let (template_version, _, value) = current(&sdk, &name).await;
    assert!(matches!(value, KeySetValue::Template(_)));

    // The first rotation makes the first document; every step runs twice,
    // as Secrets Manager may retry it.
    let first = token();
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        for attempt in 0..2 {
            lambda::rotation::handle(&sdk, None, &event(step, &arn, &first))
                .await
                .unwrap_or_else(|e| panic!("{step} (attempt {attempt}): {e}"));
        }
    }
    let now = stages(&sdk, &name).await;
    assert_eq!(labelled(&now, "AWSCURRENT"), [first.as_str()], "{now:?}");
    assert_eq!(
        labelled(&now, "AWSPREVIOUS"),
        [template_version.as_str()],
        "{now:?}"
    );
    assert!(labelled(&now, "AWSPENDING").is_empty(), "{now:?}");
    let first_doc = document(current(&sdk, &name).await.2);
    assert!(first_doc.previous.is_none());

    // At once again: the rules refuse, and leave nothing pending.
    let early = token();
    let error = lambda::rotation::handle(&sdk, None, &event("createSecret", &arn, &early))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("may rotate at"), "{error}");
    let now = stages(&sdk, &name).await;
    assert!(labelled(&now, "AWSPENDING").is_empty(), "{now:?}");
    assert_eq!(labelled(&now, "AWSCURRENT"), [first.as_str()]);
    // A retry of that refused rotation does not go on from it.
    let again = lambda::rotation::handle(&sdk, None, &event("createSecret", &arn, &early))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("start another rotation"), "{again}");

    // The snake_case spelling; testSecret fails (KMS refuses to open the
    // new current key) and is retried.
    until_rotation_allowed(&sdk, &name).await;
    let second = token();
    lambda::rotation::handle(&sdk, None, &event("create_secret", &arn, &second))
        .await
        .unwrap();
    lambda::rotation::handle(&sdk, None, &event("set_secret", &arn, &second))
        .await
        .unwrap();
    // KMS answers DisabledException to the step's Decrypt.
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let through_proxy = moto::sdk_config_for(&proxy.endpoint).await;
    proxy.set_for("TrentService.Decrypt", Mode::Disabled);
    let failed = lambda::rotation::handle(&through_proxy, None, &event("test_secret", &arn, &second))
        .await
        .unwrap_err();
    assert!(
        failed.to_string().contains("test_secret") || failed.to_string().contains("testSecret"),
        "{failed}"
    );
    let now = stages(&sdk, &name).await;
    assert_eq!(
        labelled(&now, "AWSPENDING"),
        [second.as_str()],
        "still pending: {now:?}"
    );
    assert_eq!(
        labelled(&now, "AWSCURRENT"),
        [first.as_str()],
        "still in force: {now:?}"
    );
    proxy.set(Mode::Pass);
    for step in ["test_secret", "finish_secret", "finish_secret"] {
        lambda::rotation::handle(&through_proxy, None, &event(step, &arn, &second))
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
    }
    let now = stages(&sdk, &name).await;
    assert_eq!(labelled(&now, "AWSCURRENT"), [second.as_str()], "{now:?}");
    assert_eq!(labelled(&now, "AWSPREVIOUS"), [first.as_str()], "{now:?}");
    assert!(labelled(&now, "AWSPENDING").is_empty(), "{now:?}");
    let second_doc = document(current(&sdk, &name).await.2);
    assert_eq!(
        second_doc.previous.as_ref().map(|k| k.kid()),
        Some(first_doc.current.kid())
    );
    assert_eq!(second_doc.current.kid(), first_doc.next.kid());

    // Not a rotation event: refused with the reason.
    let error = lambda::rotation::handle(&sdk, None, &json!({"Step": "createSecret", "SecretId": arn}))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("ClientRequestToken"), "{error}");
}

#[tokio::test]
async fn an_empty_secret_gets_its_first_set_from_the_functions_template_and_later_its_settings() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let name = moto::unique("stack-set");
    // What the stack creates: a secret with no version.
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let created = secrets.create_secret().name(&name).send().await.unwrap();
    let arn = created.arn().unwrap().to_owned();
    let timings = timings(1, 1, 1, 0);
    // A server started before the first rotation: no keys, nothing cacheable.
    let server = replica(&sdk, &name).await;
    let (status, body, _) = server.request_token().await;
    assert_eq!(status, 503, "{body}");
    let jwks = e2e::http().get(server.jwks_url()).send().await.unwrap();
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=0");
    server.stop().await;

    // The function's template (its environment) makes the first set.
    let env = template(envelope(&sym), timings).to_json();
    let from_env = lambda::rotation::template_from(&env).unwrap();
    let rotate = async |template: &KeySetTemplate| {
        let token = token();
        for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
            lambda::rotation::handle(&sdk, Some(template), &event(step, &arn, &token)).await?;
        }
        Ok::<_, lambda::rotation::RotationError>(())
    };
    rotate(&from_env).await.unwrap();
    let first = document(current(&sdk, &name).await.2);
    assert_eq!(first.timings, timings);

    // A stack update changed a parameter: the next set has the new value,
    // and keeps its keys.
    until_rotation_allowed(&sdk, &name).await;
    let mut longer = from_env.clone();
    longer.timings.max_token_lifetime = secs(2);
    rotate(&longer).await.unwrap();
    let second = document(current(&sdk, &name).await.2);
    assert_eq!(second.timings.max_token_lifetime, secs(2));
    assert_eq!(second.current.kid(), first.next.kid());

    // Another issuer is refused: a key set keeps its issuer.
    until_rotation_allowed(&sdk, &name).await;
    let other = KeySetTemplate {
        issuer: "https://another-issuer.test".into(),
        ..longer.clone()
    };
    let error = rotate(&other).await.unwrap_err();
    assert!(error.to_string().contains("keeps its issuer"), "{error}");
    // Not a template at all: refused with the reason.
    assert!(lambda::rotation::template_from("{}").is_err());
}

/// What the loop saw of one kid: when each replica first published it.
#[derive(Default)]
struct Published(HashMap<(usize, String), Instant>);

fn replica_toml(secret: &str) -> String {
    e2e::test_config_with_signing(&format!(
        "[signing]\nkind = \"kms-envelope\"\nkey_set_secret = \"{secret}\"\npoll_interval_secs = 1\nleeway_secs = 1\n"
    )) + "\n[tokens]\ndefault_ttl_secs = 3\nmax_ttl_secs = 3\n\n[http]\njwks_max_age_secs = 2\n"
}

/// A replica's validated config from its TOML text, with [`ISSUER`].
fn replica_config(toml: &str) -> Config {
    let overrides = Overrides {
        issuer: Some(ISSUER.into()),
        ..Default::default()
    };
    Config::from_toml(toml, Origin::Environment, std::iter::empty(), &overrides).unwrap()
}

async fn replica(sdk: &SdkConfig, secret: &str) -> TestServer {
    let context = ServiceContext {
        sdk_config: Some(sdk.clone()),
        ..Default::default()
    };
    // Both replicas are one issuer: the same `iss` and envelope context.
    TestServer::builder(&replica_toml(secret))
        .context(context)
        .issuer(ISSUER)
        .start()
        .await
}

enum AnyVerifier {
    Ours(Verifier<RemoteJwks>),
    Third(Box<CachingVerifier>),
}

impl AnyVerifier {
    async fn verify(&mut self, token: &str) -> Result<String, String> {
        match self {
            Self::Ours(v) => v
                .verify::<AccessTokenClaims>(token)
                .await
                .map(|v| v.kid().to_owned())
                .map_err(|e| e.to_string()),
            Self::Third(v) => v.verify(token).await,
        }
    }
}

#[tokio::test]
async fn two_replicas_and_caching_verifiers_across_three_rotations_with_zero_failures() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let secret = moto::unique("replicas");
    let bin = binary().await;
    // P = 1, A = 2, T = 3, L = 1, W = 3: a key is published 3 s before it
    // may sign, rotations at least 8 s apart. The CLI runs on the embedded
    // default config (T = 900 s): the document's values rule.
    let init = envelope_init_args(&secret, &sym, ISSUER, [3, 2, 1, 1, WINDOW]);
    let out = run(&bin, moto, &init.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first_current = document(current(&sdk, &secret).await.2).current.kid().to_owned();

    let servers = Arc::new([replica(&sdk, &secret).await, replica(&sdk, &secret).await]);
    let max_age = secs(2);
    let ours = |i: usize| {
        let jwks = RemoteJwks::builder(servers[i].jwks_url())
            .cache_min(Duration::from_secs(1))
            .cache_max(max_age)
            // The rules assume a verifier refreshes within the JWKS max-age.
            .refetch_cooldown(max_age)
            .build()
            .unwrap();
        AnyVerifier::Ours(Verifier::new(
            Policy::builder(ISSUER, [AUDIENCE]).build().unwrap(),
            jwks,
        ))
    };
    let mut verifiers = vec![
        ours(0),
        ours(1),
        AnyVerifier::Third(Box::new(
            CachingVerifier::pyjwt(&servers[0].jwks_url(), ISSUER, AUDIENCE, max_age).await,
        )),
        AnyVerifier::Third(Box::new(
            CachingVerifier::jose(&servers[1].jwks_url(), ISSUER, AUDIENCE, max_age).await,
        )),
    ];

    // Watches both replicas' JWKS: when each first published each kid.
    let published = Arc::new(Mutex::new(Published::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (servers, published, stop) = (servers.clone(), published.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for (i, server) in servers.iter().enumerate() {
                    let jwks = server.get_json("/.well-known/jwks.json").await;
                    let seen = Instant::now();
                    for key in jwks["keys"].as_array().into_iter().flatten() {
                        let kid = key["kid"].as_str().unwrap_or_default().to_owned();
                        published.lock().unwrap().0.entry((i, kid)).or_insert(seen);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Issues and verifies in a loop while the CLI rotates.
    let looping = {
        let (servers, published, stop) = (servers.clone(), published.clone(), stop.clone());
        let first_current = first_current.clone();
        tokio::spawn(async move {
            // Per replica, the kids it signed with, in order (replicas poll the
            // secret independently, so they switch at slightly different times).
            let (mut issued, mut failures) = (0u64, Vec::<String>::new());
            let mut kids: [Vec<String>; 2] = Default::default();
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let server = round % 2;
                let verifier = (round / 2) % verifiers.len();
                round += 1;
                let asked = Instant::now();
                let (status, body, _) = servers[server].request_token().await;
                if status != 200 {
                    failures.push(format!("replica {server}: token request {status} {body}"));
                    continue;
                }
                issued += 1;
                let token = body["access_token"].as_str().unwrap().to_owned();
                match verifiers[verifier].verify(&token).await {
                    Ok(kid) => {
                        if kid != first_current {
                            // Published by both replicas at least max-age before it signed.
                            let published = published.lock().unwrap();
                            for replica in 0..2 {
                                let since = published.0.get(&(replica, kid.clone())).copied();
                                if since.is_none_or(|t| asked.saturating_duration_since(t) < max_age) {
                                    failures.push(format!(
                                        "kid {kid} signed {:?} after replica {replica} published it",
                                        since.map(|t| asked.saturating_duration_since(t))
                                    ));
                                }
                            }
                        }
                        if kids[server].last() != Some(&kid) {
                            kids[server].push(kid);
                        }
                    }
                    Err(e) => failures.push(format!("verifier {verifier}: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for verifier in verifiers {
                if let AnyVerifier::Third(v) = verifier {
                    v.stop().await;
                }
            }
            (issued, failures, kids)
        })
    };

    // Three rotations, each as soon as the rules allow; asked again at
    // once, each is refused with the earliest allowed time.
    let mut refused = 0;
    for _ in 0..3 {
        loop {
            let out = run(&bin, moto, &["keys", "rotate", "--secret", &secret]).await;
            if out.status.success() {
                break;
            }
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains("rotation refused") && stderr.contains("earliest allowed"),
                "{stderr}"
            );
            refused += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(refused >= 3, "each rotation was asked for too early first");
    // The last key that signs is then used for a while.
    tokio::time::sleep(secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (issued, failures, kids) = looping.await.unwrap();
    watcher.await.unwrap();

    assert!(failures.is_empty(), "{} failures: {failures:#?}", failures.len());
    // Enough tokens for every verifier to see every key (how many more a
    // second depends on the machine).
    assert!(issued > 30, "{issued} tokens");
    // Each replica moved forward only: the first key, then three rotated in,
    // never back to a key it had left; both through the same keys.
    for replica in &kids {
        assert_eq!(replica.first(), Some(&first_current), "{kids:?}");
        assert_eq!(replica.len(), 4, "the first key and three rotated in: {kids:?}");
    }
    assert_eq!(kids[0], kids[1], "both replicas sign with the same keys");
    for server in servers.iter() {
        let jwks = server.get_text("/.well-known/jwks.json").await;
        assert!(
            !jwks.contains(&first_current),
            "the first key left the set: {jwks}"
        );
    }
}

#[tokio::test]
async fn a_server_configured_beyond_the_documents_rules_refuses_to_start() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let secret = moto::unique("refuses");
    let timings = timings(3, 2, 1, 1);
    create_set(&sdk, &secret, &template(envelope(&sym), timings)).await;
    rotation(&sdk, &secret).rotate().await.unwrap();
    let context = ServiceContext {
        sdk_config: Some(sdk.clone()),
        ..Default::default()
    };
    let start = |extra: &str| replica_config(&replica_toml(&secret).replace("max_ttl_secs = 3\n", extra));
    // Within the rules: starts.
    oidc_server::keyset::signing_keys(&start("max_ttl_secs = 3\n"), &context)
        .await
        .unwrap();
    // A longer token lifetime than the set allows.
    let error = oidc_server::keyset::signing_keys(&start("max_ttl_secs = 3600\n"), &context)
        .await
        .unwrap_err();
    assert!(matches!(error, SigningSetupError::Timings { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("tokens.max_ttl_secs")
            && message.contains("3600")
            && message.contains("max_token_lifetime_secs"),
        "{message}"
    );
}

fn jwks_event() -> String {
    std::fs::read_to_string(e2e::workspace_path(
        "oidc-server/tests/fixtures/lambda/function-url-jwks.json",
    ))
    .unwrap()
}

#[tokio::test]
async fn a_thawed_lambda_environment_reads_the_key_set_before_answering() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let secret = moto::unique("thaw");
    let timings = timings(3, 2, 1, 1);
    create_set(&sdk, &secret, &template(envelope(&sym), timings)).await;
    rotation(&sdk, &secret).rotate().await.unwrap();
    let config = replica_config(&replica_toml(&secret));
    // As `bootstrap` starts it: no background polling (an environment
    // runs only during invocations).
    let context = ServiceContext {
        sdk_config: Some(sdk.clone()),
        key_set_polling: KeySetPolling::OnInvocation,
        ..Default::default()
    };
    let state = AppState::start(Arc::new(config), &context).await.unwrap();
    let router = lambda::router(state);
    let kids = |response: &Value| -> Vec<String> {
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = lambda::invoke(router.clone(), &jwks_event()).await.unwrap();
    let before_kids = kids(&before);
    assert_eq!(before_kids.len(), 2, "{before}");

    // "Frozen": the set rotates while nothing runs.
    until_rotation_allowed(&sdk, &secret).await;
    let rotated = rotation(&sdk, &secret).rotate().await.unwrap();
    assert!(!before_kids.contains(&rotated.next));

    // The first invocation after the thaw answers with the new set, and a
    // max-age no longer than the set's.
    let after = lambda::invoke(router.clone(), &jwks_event()).await.unwrap();
    let after_kids = kids(&after);
    assert!(
        after_kids.contains(&rotated.next),
        "{after_kids:?} lacks {}",
        rotated.next
    );
    assert_eq!(after_kids.len(), 3, "{after_kids:?}");
    let cache_control = after["headers"]["cache-control"].as_str().unwrap_or_default();
    let max_age: u64 = cache_control
        .rsplit("max-age=")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(max_age <= 2, "{cache_control}");
}

/// A function-URL token request for the test connector, as Lambda delivers it.
fn token_event() -> String {
    use base64::Engine as _;
    let text = std::fs::read_to_string(e2e::workspace_path(
        "oidc-server/tests/fixtures/lambda/function-url-token.json",
    ))
    .unwrap();
    let mut event: Value = serde_json::from_str(&text).unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{SECRET}", e2e::SECRET_CLIENT));
    event["headers"]["authorization"] = json!(format!("Basic {basic}"));
    event.to_string()
}

/// Requests tokens from both replicas and from a Lambda environment (each
/// invocation a thaw: the environment is frozen between them) for `length`,
/// verifying each through a JWKS-caching verifier; returns the number of
/// tokens and the kids they were signed with, in order, or the failures.
async fn serve_quietly(
    servers: &[TestServer; 2],
    environment: &axum::Router,
    verifier: &mut Verifier<RemoteJwks>,
    length: Duration,
) -> Result<(u64, Vec<String>), Vec<String>> {
    let (mut issued, mut kids, mut failures) = (0u64, Vec::<String>::new(), Vec::new());
    let started = Instant::now();
    while started.elapsed() < length {
        let mut tokens = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            match server.request_token().await {
                (200, body, _) => tokens.push(body["access_token"].as_str().unwrap().to_owned()),
                (status, body, _) => {
                    failures.push(format!("replica {i} at {:?}: {status} {body}", started.elapsed()))
                }
            }
        }
        let response = lambda::invoke(environment.clone(), &token_event()).await.unwrap();
        let body: Value =
            serde_json::from_str(response["body"].as_str().unwrap_or_default()).unwrap_or_default();
        match (response["statusCode"].as_u64(), body["access_token"].as_str()) {
            (Some(200), Some(token)) => tokens.push(token.to_owned()),
            _ => failures.push(format!("lambda at {:?}: {response}", started.elapsed())),
        }
        for token in tokens {
            issued += 1;
            match verifier.verify::<AccessTokenClaims>(&token).await {
                Ok(verified) => {
                    if kids.last().map(String::as_str) != Some(verified.kid()) {
                        kids.push(verified.kid().to_owned());
                    }
                }
                Err(e) => failures.push(format!("verification at {:?}: {e}", started.elapsed())),
            }
        }
        // Longer than the poll interval now and then: the environment thaws stale.
        tokio::time::sleep(Duration::from_millis(if issued % 4 == 0 { 1_200 } else { 250 })).await;
    }
    match failures.is_empty() {
        true => Ok((issued, kids)),
        false => Err(failures),
    }
}

#[tokio::test]
async fn a_set_left_alone_for_many_r_keeps_serving_on_every_replica_and_thawed_environment() {
    // The shipped stack rotates weekly against R of about 20 minutes: most
    // of a key's life is the quiet between rotations. Here R = 9 s and the
    // set is left alone for 4R, rotated (a period of many R), left alone
    // for 3R more; two replicas and a Lambda environment serve throughout.
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let secret = moto::unique("quiet");
    // P = 1, A = 6, T = 3, L = 1, W = 2 (the replicas serve A = 2, within
    // the set's): R = max(7, 5) + 2 = 9 s.
    let timings = Timings {
        rotation_window: secs(2),
        ..timings(3, 6, 1, 1)
    };
    let r = timings.min_rotation_interval();
    create_set(&sdk, &secret, &template(envelope(&sym), timings)).await;
    rotation(&sdk, &secret).rotate().await.unwrap();
    let first = document(current(&sdk, &secret).await.2);

    let servers = [replica(&sdk, &secret).await, replica(&sdk, &secret).await];
    let context = ServiceContext {
        sdk_config: Some(sdk.clone()),
        key_set_polling: KeySetPolling::OnInvocation,
        ..Default::default()
    };
    let state = AppState::start(Arc::new(replica_config(&replica_toml(&secret))), &context)
        .await
        .unwrap();
    let environment = lambda::router(state);
    let jwks = RemoteJwks::builder(servers[0].jwks_url())
        .cache_min(secs(1))
        .cache_max(secs(2))
        .refetch_cooldown(secs(2))
        .build()
        .unwrap();
    let mut verifier = Verifier::new(Policy::builder(ISSUER, [AUDIENCE]).build().unwrap(), jwks);

    let (quiet, kids) = serve_quietly(&servers, &environment, &mut verifier, 4 * r)
        .await
        .unwrap_or_else(|failures| panic!("{} failures over 4R: {failures:#?}", failures.len()));
    assert_eq!(kids, [first.current.kid()], "one key all along");
    assert!(quiet > 60, "{quiet} tokens");

    rotation(&sdk, &secret).rotate().await.unwrap();
    let (after, kids) = serve_quietly(&servers, &environment, &mut verifier, 3 * r)
        .await
        .unwrap_or_else(|failures| panic!("{} failures after the rotation: {failures:#?}", failures.len()));
    assert_eq!(
        kids.last().map(String::as_str),
        Some(first.next.kid()),
        "{kids:?}"
    );
    assert!(after > 45, "{after} tokens");
}

#[tokio::test]
async fn a_rotation_whose_last_steps_come_too_late_or_on_a_changed_set_is_abandoned() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let secret = moto::unique("late");
    // R = max(2, 3) + 3 = 6 s; a rotation's steps must run within 3 s.
    let timings = timings(2, 1, 1, 0);
    create_set(&sdk, &secret, &template(envelope(&sym), timings)).await;
    let arn = {
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        let described = secrets.describe_secret().secret_id(&secret).send().await.unwrap();
        described.arn().unwrap().to_owned()
    };
    let rotate = rotation(&sdk, &secret);
    rotate.rotate().await.unwrap();
    until_rotation_allowed(&sdk, &secret).await;
    let (in_force, _, _) = current(&sdk, &secret).await;

    // createSecret and setSecret run; Secrets Manager retries the last steps
    // later than the window.
    let late = token();
    for step in [
        RotationStep::CreateSecret,
        RotationStep::SetSecret,
        RotationStep::TestSecret,
    ] {
        rotate.step(step, &late).await.unwrap();
    }
    tokio::time::sleep(secs(WINDOW + 2)).await;
    let error = rotate.step(RotationStep::FinishSecret, &late).await.unwrap_err();
    assert!(matches!(error, KeySetError::TooLate(_)), "{error}");
    assert!(error.to_string().contains("start another rotation"), "{error}");
    let after = stages(&sdk, &secret).await;
    assert_eq!(
        labelled(&after, "AWSCURRENT"),
        [in_force.as_str()],
        "not promoted"
    );
    assert!(labelled(&after, "AWSPENDING").is_empty(), "abandoned: {after:?}");
    // Retried again, each step refuses; so does the Lambda handler.
    for step in RotationStep::ALL {
        assert!(rotate.step(step, &late).await.is_err(), "{step:?}");
    }
    assert!(
        lambda::rotation::handle(&sdk, None, &event("finishSecret", &arn, &late))
            .await
            .is_err()
    );

    // A retried createSecret is checked the same way.
    let slow = token();
    rotate.step(RotationStep::CreateSecret, &slow).await.unwrap();
    tokio::time::sleep(secs(WINDOW + 2)).await;
    let error = rotate.step(RotationStep::CreateSecret, &slow).await.unwrap_err();
    assert!(matches!(error, KeySetError::TooLate(_)), "{error}");
    assert!(labelled(&stages(&sdk, &secret).await, "AWSPENDING").is_empty());

    // A pending set made from a set that is no longer in force (another
    // rotation finished meanwhile) is not promoted either.
    let stale = token();
    rotate.step(RotationStep::CreateSecret, &stale).await.unwrap();
    // The operator clears it by hand and rotates.
    KeySetSecret::new(
        &aws_sdk_secretsmanager::Client::new(&sdk),
        &secret,
        Default::default(),
    )
    .clear_pending(&stale)
    .await
    .unwrap();
    rotate.rotate().await.unwrap();
    let (newer, _, _) = current(&sdk, &secret).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    secrets
        .update_secret_version_stage()
        .secret_id(&secret)
        .version_stage("AWSPENDING")
        .move_to_version_id(&stale)
        .send()
        .await
        .unwrap();
    let error = rotate.step(RotationStep::FinishSecret, &stale).await.unwrap_err();
    assert!(error.to_string().contains("changed since"), "{error}");
    assert_eq!(
        labelled(&stages(&sdk, &secret).await, "AWSCURRENT"),
        [newer.as_str()]
    );

    // A new rotation starts from the set in force and completes.
    until_rotation_allowed(&sdk, &secret).await;
    let rotated = rotate.rotate().await.unwrap();
    assert_ne!(rotated.version_id, newer);
}

/// A KMS key's id, given its id or ARN.
fn bare(key: &str) -> String {
    key.rsplit("key/").next().unwrap_or(key).to_owned()
}

/// The KMS keys tagged with the key set `name` (by id), and whether each is
/// pending deletion.
async fn set_keys(sdk: &SdkConfig, name: &str) -> HashMap<String, bool> {
    let kms = aws_sdk_kms::Client::new(sdk);
    let mut out = HashMap::new();
    let listed = kms.list_keys().limit(1000).send().await.unwrap();
    for key in listed.keys() {
        let id = key.key_arn().unwrap().to_owned();
        let tags = kms.list_resource_tags().key_id(&id).send().await.unwrap();
        if tags
            .tags()
            .iter()
            .any(|t| t.tag_key() == oidc_server::keyset::KEY_SET_TAG && t.tag_value() == name)
        {
            let described = kms.describe_key().key_id(&id).send().await.unwrap();
            let state = described.key_metadata().and_then(|m| m.key_state().cloned());
            out.insert(
                bare(&id),
                state == Some(aws_sdk_kms::types::KeyState::PendingDeletion),
            );
        }
    }
    out
}

#[tokio::test]
async fn kms_sets_create_one_key_per_rotation_and_delete_the_key_that_left_once_its_tokens_expired() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let name = moto::unique("kms-set");
    // P = 1, A = 1, T = 2, L = 1, W = 6 (a kms rotation searches every
    // key of the emulator for its tags: slow on a busy machine): rotations
    // at least 10 s apart.
    let timings = Timings {
        rotation_window: secs(6),
        ..timings(2, 1, 1, 1)
    };
    let kind = SetKind::Kms {
        key_spec: "ECC_NIST_P256".into(),
        alg: Algorithm::ES256,
        signers: Vec::new(),
        administrators: Vec::new(),
        deletion_window_days: 7,
    };
    create_set(&sdk, &name, &template(kind, timings)).await;
    let rotation = rotation(&sdk, &name);

    // The first document: a current and a next key; a retried createSecret
    // finds them by their tags instead of creating two more.
    let first = token();
    rotation.step(RotationStep::CreateSecret, &first).await.unwrap();
    rotation.step(RotationStep::CreateSecret, &first).await.unwrap();
    assert_eq!(set_keys(&sdk, &name).await.len(), 2);
    for step in [
        RotationStep::SetSecret,
        RotationStep::TestSecret,
        RotationStep::FinishSecret,
    ] {
        rotation.step(step, &first).await.unwrap();
    }
    let first_doc = document(current(&sdk, &name).await.2);
    let key_of = |kid: &str, doc: &oidc_server::keyset::document::KeySetDocument| {
        doc.keys()
            .find(|k| k.kid() == kid)
            .map(|k| match &k.material {
                oidc_server::keyset::document::KeyMaterial::Kms { key_id } => bare(key_id),
                other => panic!("{other:?}"),
            })
            .unwrap()
    };
    let k1 = key_of(first_doc.current.kid(), &first_doc);

    let toml = e2e::test_config_with_signing(&format!(
        "[signing]\nkind = \"kms\"\nkey_set_secret = \"{name}\"\npoll_interval_secs = 1\n"
    )) + "\n[tokens]\ndefault_ttl_secs = 2\nmax_ttl_secs = 2\n\n[http]\njwks_max_age_secs = 1\n";
    let server = TestServer::builder(&toml)
        .context(ServiceContext {
            sdk_config: Some(sdk.clone()),
            ..Default::default()
        })
        .issuer(ISSUER)
        .start()
        .await;
    // Tokens of each key in force verify through the JWKS; the last
    // expiry of the first key's tokens is kept.
    let mut k1_last_exp = 0;
    let mut signed_by = Vec::new();
    let sign = async |signed_by: &mut Vec<String>, k1_last_exp: &mut u64, kid_k1: &str| {
        let token = server.token().await;
        let claims = server.verify(&token).await;
        let header: Value =
            serde_json::from_slice(&oidc_core::base64url::decode(token.split('.').next().unwrap()).unwrap())
                .unwrap();
        let kid = header["kid"].as_str().unwrap().to_owned();
        if kid == kid_k1 {
            *k1_last_exp = (*k1_last_exp).max(claims.exp);
        }
        if signed_by.last() != Some(&kid) {
            signed_by.push(kid);
        }
    };
    let kid_k1 = first_doc.current.kid().to_owned();
    for _ in 0..3 {
        sign(&mut signed_by, &mut k1_last_exp, &kid_k1).await;
    }

    for n in 2..=4 {
        until_rotation_allowed(&sdk, &name).await;
        let before = set_keys(&sdk, &name).await;
        let rotated = rotation.rotate().await.unwrap();
        let after = set_keys(&sdk, &name).await;
        let rotated_at = unix_now();
        assert_eq!(after.len(), before.len() + 1, "rotation {n} creates one key");
        match n {
            2 => {
                assert_eq!(rotated.deleted, None);
                assert_eq!(
                    after.get(&k1),
                    Some(&false),
                    "K1 {k1} is previous: published, not deleted: {after:?}"
                );
            }
            3 => {
                // K1 left the set: scheduled for deletion only now, after its
                // last token expired (+ leeway).
                assert_eq!(rotated.deleted.as_deref().map(bare), Some(k1.clone()));
                assert_eq!(after.get(&k1), Some(&true));
                // exp + leeway (1 s) <= now
                assert!(
                    k1_last_exp < rotated_at,
                    "K1's last token expires at {k1_last_exp}"
                );
            }
            _ => assert!(rotated.deleted.is_some()),
        }
        // The replica follows (poll 1 s); the new current key signs.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        for _ in 0..3 {
            sign(&mut signed_by, &mut k1_last_exp, &kid_k1).await;
        }
    }
    assert_eq!(
        signed_by.len(),
        4,
        "K1, then the key each rotation put in force: {signed_by:?}"
    );
    let pending: Vec<bool> = set_keys(&sdk, &name).await.into_values().collect();
    assert_eq!(
        pending.iter().filter(|p| **p).count(),
        2,
        "K1 and K2 left: {pending:?}"
    );
    server.stop().await;

    // The refusal of a premature rotation on a kms set leaves no unused key
    // behind: the key made for it is scheduled for deletion. Asked right
    // after a rotation, so that no machine is slow enough for it to be
    // allowed; then the only live keys are the three the set publishes.
    until_rotation_allowed(&sdk, &name).await;
    rotation.rotate().await.unwrap();
    let error = rotation.rotate().await.unwrap_err();
    assert!(matches!(error, KeySetError::TooEarly(_)), "{error}");
    let in_force = document(current(&sdk, &name).await.2);
    let published: std::collections::BTreeSet<String> =
        in_force.keys().map(|k| key_of(k.kid(), &in_force)).collect();
    let live: std::collections::BTreeSet<String> = set_keys(&sdk, &name)
        .await
        .into_iter()
        .filter(|(_, pending)| !pending)
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        live, published,
        "the refused rotation's key is scheduled for deletion"
    );
}
