//! Cold start of the Lambda binary as Lambda runs it (a benchmark, ignored
//! by default; `bench/run.sh lambda` runs it in release): `bootstrap` under
//! the Runtime API emulator, with a token invocation waiting from the moment
//! the process is spawned, as a cold invocation waits in Lambda.
//!
//! Per configuration, over [`RUNS`] cold starts: the init duration (process
//! start to ready for the first event, as the environment logs it: what
//! Lambda reports as `Init Duration`), process start to the first token on
//! the client's side, and the AWS calls made at init. Configurations: a
//! `local` key (nothing to read), and the stack's shape on moto: a
//! `kms-envelope` key set (Secrets Manager read, KMS `Decrypt`) and the
//! DynamoDB replay table (`DescribeTable`). Beside node-oidc-provider's start
//! to first token (the same client_credentials request).
//!
//! `bench/run.sh lambda` runs it on the artifact the stack ships
//! (`E2E_BOOTSTRAP` = bootstrap built with `--profile lambda`); without
//! `E2E_BOOTSTRAP` it measures the tests' own build:
//! `cargo test --workspace --all-features --test it lambda_cold_start -- --ignored --nocapture`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::fault_proxy::FaultProxy;
use e2e::lambda_runtime::LambdaEmulator;
use e2e::moto::{self, Moto};
use e2e::stack::DEFAULT_TIMINGS;
use e2e::tools::NodeProcess;
use e2e::{test_config, test_config_with_signing, SECRET, SECRET_CLIENT};
use oidc_core::keys::KmsOptions;
use oidc_core::Algorithm;
use oidc_server::keyset::document::{KeySetTemplate, SetKind};
use oidc_server::keyset::Rotation;
use serde_json::Value;

const RUNS: usize = 7;

/// The test configuration with its issuer at the emulator's function URL,
/// without the `private_key_jwt` connector (Lambda needs the replay table
/// for it; the moto configuration has one and keeps it).
fn config_at(emulator: &LambdaEmulator, toml: &str, keep_assertions: bool) -> String {
    let toml = toml.replace(
        "issuer = \"http://placeholder.invalid\"",
        &format!("issuer = \"{}\"", emulator.function_url()),
    );
    let assertion_connector = format!("[[connectors]]\nid = \"{}\"", e2e::JWT_CLIENT);
    match (keep_assertions, toml.find(&assertion_connector)) {
        (false, Some(at)) => toml[..at].to_owned(),
        _ => toml,
    }
}

fn init_ms(output: &str) -> Option<u64> {
    let at = output.find("init_ms")?;
    output[at + "init_ms".len()..]
        .trim_start_matches(['=', '"', ':'])
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

struct Start {
    init: Duration,
    first_token: Duration,
}

/// One cold start: spawn, and a token request waiting for it.
async fn cold_start(emulator: &LambdaEmulator, env: &[(String, String)]) -> Start {
    let function = emulator.start_function(&e2e::workspace_path(""), env);
    let response = e2e::http()
        .post(format!("{}/token", emulator.function_url()))
        .basic_auth(SECRET_CLIENT, Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let first_token = function.started.elapsed();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success() && body["access_token"].is_string(),
        "{status} {body} {}",
        function.output()
    );
    // The init line is written before the first event is read.
    let init = init_ms(&function.output()).unwrap_or_else(|| panic!("no init_ms in {}", function.output()));
    Start {
        init: Duration::from_millis(init),
        first_token,
    }
}

fn report(label: &str, mut starts: Vec<Start>) {
    let median = |mut v: Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (init, init_min, init_max) = median(starts.iter().map(|s| s.init).collect());
    let (first, first_min, first_max) = median(starts.drain(..).map(|s| s.first_token).collect());
    println!(
        "cold start {label}: init {:.1} ms (min {:.1}, max {:.1}); process start to first token {:.1} ms (min {:.1}, max {:.1}); {RUNS} runs",
        ms(init),
        ms(init_min),
        ms(init_max),
        ms(first),
        ms(first_min),
        ms(first_max)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::test]
#[ignore = "a benchmark: run it with --ignored --nocapture (bench/run.sh lambda)"]
async fn lambda_cold_start() {
    let emulator = LambdaEmulator::start(Duration::from_secs(60));
    // Built before timing (the first call builds it if needed).
    let _ = e2e::lambda_runtime::bootstrap();

    // A local key.
    let (_, jwks) = e2e::client_key(Algorithm::ES256);
    let env = vec![
        (
            "OIDC_SERVER_CONFIG_TOML".to_owned(),
            config_at(&emulator, &test_config(&jwks), false),
        ),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    let mut starts = Vec::new();
    for _ in 0..RUNS {
        starts.push(cold_start(&emulator, &env).await);
    }
    report("local key", starts);

    // The stack's shape on moto, every AWS call counted.
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let table = moto::create_replay_table(&sdk).await;
    let secret = moto::unique("cold-start");
    let template = KeySetTemplate {
        issuer: emulator.function_url(),
        kind: SetKind::KmsEnvelope {
            kms_key_id: sym,
            alg: Algorithm::ES256,
        },
        timings: DEFAULT_TIMINGS,
        first_key_id: None,
    };
    crate::rotation::create_set(&sdk, &secret, &template).await;
    Rotation::connect(&sdk, &secret, KmsOptions::default())
        .rotate()
        .await
        .unwrap();
    let toml = config_at(
        &emulator,
        &test_config_with_signing(&format!(
            "[signing]\nkind = \"kms-envelope\"\nkey_set_secret = \"{secret}\"\n"
        )),
        true,
    ) + &moto::replay_section(&table);
    let mut env = moto::env_for(&proxy.endpoint);
    env.push(("OIDC_SERVER_CONFIG_TOML".into(), toml));
    env.push(("RUST_LOG".into(), "info".into()));
    let mut starts = Vec::new();
    let mut calls = BTreeMap::<String, u64>::new();
    for _ in 0..RUNS {
        proxy.reset_counts();
        starts.push(cold_start(&emulator, &env).await);
        for (target, n) in proxy.counts() {
            *calls.entry(target).or_default() += n;
        }
    }
    report("kms-envelope key set + DynamoDB replay table (moto)", starts);
    let per_start: Vec<String> = calls
        .iter()
        .map(|(target, n)| format!("{target} {:.1}", *n as f64 / RUNS as f64))
        .collect();
    println!(
        "AWS calls per cold start (init and the first token): {}",
        per_start.join(", ")
    );

    // node-oidc-provider, started the same way: process start to first token.
    let script = std::fs::read_to_string(e2e::workspace_path("bench/node-provider.mjs")).unwrap();
    let mut node = Vec::new();
    for _ in 0..RUNS {
        let port = moto::free_port().to_string();
        let started = Instant::now();
        let mut provider = NodeProcess::start(
            "cold-start",
            &script,
            &[&port, SECRET_CLIENT, SECRET, e2e::AUDIENCE],
        );
        provider.line().await;
        let response = e2e::http()
            .post(format!("http://127.0.0.1:{port}/token"))
            .basic_auth(SECRET_CLIENT, Some(SECRET))
            .form(&[("grant_type", "client_credentials"), ("resource", e2e::AUDIENCE)])
            .send()
            .await
            .unwrap();
        let first_token = started.elapsed();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap_or_default()
        );
        node.push(first_token);
        provider.stop().await;
    }
    node.sort();
    println!(
        "node-oidc-provider: process start to first token {:.1} ms (min {:.1}, max {:.1}); {RUNS} runs",
        ms(node[RUNS / 2]),
        ms(node[0]),
        ms(node[RUNS - 1])
    );
}
