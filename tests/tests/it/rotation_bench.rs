//! Benchmark (ignored by default; run with
//! `cargo test --release -p e2e --test it rotation_bench -- --ignored --nocapture`,
//! or `bench/run.sh rotation`): the wall time of one whole rotation (the
//! four steps, as `oidc-server keys rotate` runs them) against moto_server
//! for a `kms-envelope` and a `kms` set, the KMS and Secrets Manager calls
//! each makes (counted by the proxy in front of the emulator), and the
//! Secrets Manager reads of one server replica while it polls.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::fault_proxy::FaultProxy;
use e2e::moto::{self, Moto};
use e2e::TestServer;
use oidc_core::keys::KmsOptions;
use oidc_core::Algorithm;
use oidc_server::keyset::document::{KeySetTemplate, SetKind, Timings};
use oidc_server::keyset::Rotation;
use oidc_server::ServiceContext;

const ROTATIONS: usize = 5;
const ISSUER: &str = "http://127.0.0.1:1";

// P = 1, A = 1, T = 1, L = 0: rotations 2 s apart.
const TIMINGS: Timings = Timings {
    max_token_lifetime: Duration::from_secs(1),
    jwks_max_age: Duration::from_secs(1),
    poll_interval: Duration::from_secs(1),
    leeway: Duration::ZERO,
    rotation_window: Duration::from_secs(2),
};

fn calls(proxy: &FaultProxy) -> BTreeMap<String, u64> {
    proxy.counts().into_iter().collect()
}

async fn rotations(label: &str, kind: SetKind) {
    let moto = Moto::shared();
    let direct = moto.sdk_config().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let sdk = moto::sdk_config_for(&proxy.endpoint).await;
    let name = moto::unique("rotation-bench");
    let template = KeySetTemplate {
        issuer: ISSUER.into(),
        kind,
        timings: TIMINGS,
        first_key_id: None,
    };
    crate::rotation::create_set(&direct, &name, &template).await;
    let rotation = Rotation::connect(&sdk, &name, KmsOptions::default());
    // The first document (two new keys) is not a steady-state rotation.
    rotation.rotate().await.unwrap();
    let mut times = Vec::new();
    let mut per_rotation = BTreeMap::<String, u64>::new();
    for _ in 0..ROTATIONS {
        tokio::time::sleep(TIMINGS.min_rotation_interval() + Duration::from_millis(1_100)).await;
        proxy.reset_counts();
        let started = Instant::now();
        rotation.rotate().await.unwrap();
        times.push(started.elapsed());
        for (target, n) in calls(&proxy) {
            *per_rotation.entry(target).or_default() += n;
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    let total: u64 = per_rotation.values().sum();
    println!(
        "rotation {label}: median {:.1} ms (min {:.1}, max {:.1}) over {ROTATIONS} rotations; {:.1} calls per rotation",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        total as f64 / ROTATIONS as f64
    );
    for (target, n) in per_rotation {
        println!("rotation {label}:   {target} {:.1}", n as f64 / ROTATIONS as f64);
    }
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture (bench/run.sh rotation)"]
async fn rotation_bench() {
    let moto = Moto::shared();
    let direct = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&direct).await;
    rotations(
        "kms-envelope",
        SetKind::KmsEnvelope {
            kms_key_id: sym.clone(),
            alg: Algorithm::ES256,
        },
    )
    .await;
    rotations(
        "kms",
        SetKind::Kms {
            key_spec: "ECC_NIST_P256".into(),
            alg: Algorithm::ES256,
            signers: Vec::new(),
            administrators: Vec::new(),
            deletion_window_days: 7,
        },
    )
    .await;

    // One replica polling for 10 s at P = 1 s.
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let name = moto::unique("poll-bench");
    let template = KeySetTemplate {
        issuer: ISSUER.into(),
        kind: SetKind::KmsEnvelope {
            kms_key_id: sym,
            alg: Algorithm::ES256,
        },
        timings: TIMINGS,
        first_key_id: None,
    };
    crate::rotation::create_set(&direct, &name, &template).await;
    Rotation::connect(&direct, &name, KmsOptions::default())
        .rotate()
        .await
        .unwrap();
    let toml = e2e::test_config_with_signing(&format!(
        "[signing]\nkind = \"kms-envelope\"\nkey_set_secret = \"{name}\"\npoll_interval_secs = 1\n"
    )) + "\n[tokens]\ndefault_ttl_secs = 1\nmax_ttl_secs = 1\n\n[http]\njwks_max_age_secs = 1\n";
    let server = TestServer::builder(&toml)
        .context(ServiceContext {
            sdk_config: Some(moto::sdk_config_for(&proxy.endpoint).await),
            ..Default::default()
        })
        .issuer(ISSUER)
        .start()
        .await;
    proxy.reset_counts();
    let seconds = 10;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let reads = proxy.count("secretsmanager.GetSecretValue");
    let kms: u64 = calls(&proxy)
        .iter()
        .filter(|(t, _)| t.starts_with("TrentService."))
        .map(|(_, n)| n)
        .sum();
    println!(
        "replica poll: {reads} GetSecretValue and {kms} KMS calls in {seconds} s at a 1 s poll interval \
         (per hour at the default 30 s: {:.0})",
        reads as f64 / seconds as f64 * 3600.0 / 30.0
    );
    server.stop().await;
}
