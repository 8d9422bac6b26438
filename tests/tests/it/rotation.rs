//! Rotation with two server replicas sharing one key-set secret in moto, and
//! verifiers that cache the JWKS of either replica: tokens are issued and
//! verified in a loop while a KMS key (active) hands over to an envelope key
//! (next → active) and is then retired and removed. Zero failures; early
//! promotion and early retirement are refused by the rules.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::moto::{self, Moto};
use e2e::{TestServer, AUDIENCE};
use oidc_core::internal::{SystemClock, WallClock};
use oidc_core::keys::{kms_envelope, KmsOptions, KmsSigner, Signer};
use oidc_core::keyset::aws::KeySetSecret;
use oidc_core::keyset::rotation::{KeyBackend, KeyRecord, RotationError, RotationTimings};
use oidc_core::verify::RemoteJwks;
use oidc_core::{AccessTokenClaims, Algorithm, Policy, Verifier};
use oidc_server::ServiceContext;

const ISSUER: &str = "http://127.0.0.1:1";

async fn replica(config: &aws_config::SdkConfig, secret: &str) -> TestServer {
    let toml = e2e::test_config_with_signing(&format!(
        "[signing]\nkind = \"kms\"\nkey_set_secret = \"{secret}\"\npoll_interval_secs = 1\nleeway_secs = 1\n"
    )) + "\n[tokens]\ndefault_ttl_secs = 12\nmax_ttl_secs = 12\n\n[http]\njwks_max_age_secs = 1\n";
    let context = ServiceContext {
        sdk_config: Some(config.clone()),
        ..Default::default()
    };
    // Both replicas are one issuer: the same `iss` and envelope context.
    TestServer::builder(&toml)
        .context(context)
        .issuer(ISSUER)
        .start()
        .await
}

fn timings() -> RotationTimings {
    RotationTimings {
        poll_interval: Duration::from_secs(1),
        jwks_max_age: Duration::from_secs(1),
        max_ttl: Duration::from_secs(12),
        leeway: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn two_replicas_rotate_next_active_retiring_removed_with_zero_failures() {
    let moto = Moto::shared();
    let config = moto.sdk_config().await;
    let kms = aws_sdk_kms::Client::new(&config);
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let secret_name = moto::unique("rotation");
    let set = KeySetSecret::new(&secrets, &secret_name, KmsOptions::default());
    let clock = SystemClock;

    // K1: a KMS key, active from the start.
    let alias = moto::create_signing_key(&config, "ECC_NIST_P256").await;
    let k1 = KmsSigner::connect(&kms, &alias, KmsOptions::default())
        .await
        .unwrap();
    let k1_kid = k1.kid().to_owned();
    eprintln!("K1 {k1_kid}");
    set.stage(
        KeyRecord {
            backend: KeyBackend::Kms {
                key_id: k1.key_arn().to_owned(),
            },
            verifying_key: k1.verifying_key().clone(),
            published_at: 0,
            activated_at: None,
        },
        clock.now(),
    )
    .await
    .unwrap();

    // Replicas with their issuer fixed to one URL for both (see `replica`).
    let a = replica(&config, &secret_name).await;
    let b = replica(&config, &secret_name).await;

    let failures = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let kids_seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let servers = Arc::new([a, b]);
    let verifiers: Vec<Arc<Verifier<Arc<RemoteJwks>>>> = servers
        .iter()
        .map(|s| {
            let jwks = RemoteJwks::builder(format!("http://{}/.well-known/jwks.json", s.addr))
                .cache_min(Duration::from_secs(1))
                .cache_max(Duration::from_secs(1))
                // The rules assume a verifier refreshes within the JWKS max-age
                // (here 1 s); its cooldown must not hold refreshes back longer.
                .refetch_cooldown(Duration::from_secs(1))
                .build()
                .unwrap();
            Arc::new(Verifier::new(
                Policy::builder(ISSUER, [AUDIENCE]).build().unwrap(),
                Arc::new(jwks),
            ))
        })
        .collect();
    let looping = {
        let (servers, verifiers, failures, issued, kids_seen, stop) = (
            servers.clone(),
            verifiers.clone(),
            failures.clone(),
            issued.clone(),
            kids_seen.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let server = &servers[round % 2];
                let verifier = &verifiers[(round / 2) % 2];
                round += 1;
                let (status, body, _) = server.request_token().await;
                if status != 200 {
                    eprintln!("token request failed: {status} {body}");
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                issued.fetch_add(1, Ordering::Relaxed);
                let token = body["access_token"].as_str().unwrap().to_owned();
                match verifier.verify::<AccessTokenClaims>(&token).await {
                    Ok(verified) => {
                        let kid = verified.kid().to_owned();
                        let mut seen = kids_seen.lock().unwrap();
                        if seen.last() != Some(&kid) {
                            seen.push(kid);
                        }
                    }
                    Err(e) => {
                        eprintln!("verification failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // K2: an envelope key, staged as next.
    let sym = moto::create_symmetric_key(&config).await;
    let sealed = kms_envelope::create(&kms, &sym, ISSUER, Algorithm::ES256, &KmsOptions::default())
        .await
        .unwrap();
    let k2_kid = sealed.verifying_key.kid().to_owned();
    eprintln!("K2 {k2_kid} staged");
    set.stage(
        KeyRecord {
            backend: KeyBackend::KmsEnvelope {
                kms_key_id: sealed.kms_key_id.clone(),
                ciphertext: sealed.ciphertext.clone(),
            },
            verifying_key: sealed.verifying_key.clone(),
            published_at: 0,
            activated_at: None,
        },
        clock.now(),
    )
    .await
    .unwrap();
    // Too early: not every replica and verifier cache has it yet.
    let early = set.promote(&timings(), clock.now()).await.unwrap_err();
    assert!(
        matches!(
            early,
            oidc_core::keyset::aws::KeySetError::Rotation(RotationError::NotMature { .. })
        ),
        "{early}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    set.promote(&timings(), clock.now()).await.unwrap();
    eprintln!("promoted");

    // K1 is retiring: it may only go once its last token is dead.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let early = set.retire(&timings(), clock.now()).await.unwrap_err();
    assert!(
        matches!(
            early,
            oidc_core::keyset::aws::KeySetError::Rotation(RotationError::RetiringStillLive { .. })
        ),
        "{early}"
    );
    let keys = set.read().await.unwrap();
    let retire_at = timings().retirable_at(&keys.active.as_ref().unwrap().record);
    while clock.now() < retire_at {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    set.retire(&timings(), clock.now()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    looping.await.unwrap();

    assert_eq!(failures.load(Ordering::Relaxed), 0, "failures during rotation");
    assert!(issued.load(Ordering::Relaxed) > 50);
    let seen = kids_seen.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&k1_kid), "{seen:?}");
    assert_eq!(seen.last(), Some(&k2_kid), "{seen:?}");
    // Removed: neither replica publishes K1 any more.
    for server in servers.iter() {
        let jwks = server.get_text("/.well-known/jwks.json").await;
        assert!(!jwks.contains(&k1_kid) && jwks.contains(&k2_kid), "{jwks}");
    }
}
