//! KMS-envelope keys against moto_server: a key generated here, encrypted
//! under a symmetric KMS key with the issuer and kid as encryption context,
//! kept in the key-set secret (made by its first rotation), decrypted once at start; tokens then cost zero
//! KMS calls. A ciphertext opened for another issuer or kid fails clearly.

use e2e::fault_proxy::FaultProxy;
use e2e::moto::{self, Moto};
use std::time::Duration;

use e2e::TestServer;
use oidc_core::keys::kms_envelope::{self, EnvelopeError};
use oidc_core::keys::{KmsOptions, Signer};
use oidc_core::Algorithm;
use oidc_server::keyset::document::{KeySetTemplate, SetKind, Timings};
use oidc_server::keyset::{KeySetSecret, Rotation};
use oidc_server::ServiceContext;

#[tokio::test]
async fn envelope_keys_round_trip_and_refuse_another_context() {
    let moto = Moto::shared();
    let config = moto.sdk_config().await;
    let kms = aws_sdk_kms::Client::new(&config);
    let key = moto::create_symmetric_key(&config).await;
    let options = KmsOptions::default();
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let sealed = kms_envelope::create(&kms, &key, "https://issuer.test", alg, &options)
            .await
            .unwrap();
        assert!(!format!("{sealed:?}").contains("PRIVATE"), "{sealed:?}");
        let signer = kms_envelope::open(&kms, &sealed, "https://issuer.test", &options)
            .await
            .unwrap();
        assert_eq!(signer.kid(), sealed.verifying_key.kid());
        assert_eq!(signer.algorithm(), alg);
        let signature = signer.sign(b"header.payload").await.unwrap();
        sealed
            .verifying_key
            .verify(alg, b"header.payload", &signature)
            .unwrap();

        // Another issuer: KMS refuses, and the error says why.
        let error = kms_envelope::open(&kms, &sealed, "https://other.test", &options)
            .await
            .unwrap_err();
        assert!(matches!(error, EnvelopeError::WrongContext { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("encryption context") && message.contains("https://other.test"),
            "{message}"
        );

        // A record whose kid was changed names another context too.
        let mut altered = sealed.clone();
        let (_other, _) = oidc_core::keys::LocalSigner::generate(alg).unwrap();
        altered.verifying_key = _other.verifying_key().clone();
        let error = kms_envelope::open(&kms, &altered, "https://issuer.test", &options)
            .await
            .unwrap_err();
        assert!(matches!(error, EnvelopeError::WrongContext { .. }), "{error:?}");
    }
}

#[tokio::test]
async fn an_envelope_key_set_signs_with_zero_kms_calls_per_token() {
    let moto = Moto::shared();
    let config = moto.sdk_config().await;
    let key = moto::create_symmetric_key(&config).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let secret_name = moto::unique("envelope-set");
    let issuer = "https://issuer.envelope.test";

    // A set with no keys yet (what the stack creates before its first
    // rotation): the server starts, has no key, and says so.
    let template = KeySetTemplate {
        issuer: issuer.into(),
        kind: SetKind::KmsEnvelope {
            kms_key_id: key.clone(),
            alg: Algorithm::ES256,
        },
        timings: Timings {
            max_token_lifetime: Duration::from_secs(900),
            jwks_max_age: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            leeway: Duration::from_secs(60),
            rotation_window: Duration::from_secs(60),
        },
        first_key_id: None,
    };
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    KeySetSecret::new(&secrets, &secret_name, Default::default())
        .create(&template.to_json(), "test", None)
        .await
        .unwrap();
    let server = TestServer::builder(&e2e::test_config_with_signing(&format!(
        "[signing]\nkind = \"kms-envelope\"\nkey_set_secret = \"{secret_name}\"\npoll_interval_secs = 1\n"
    )))
    .context(ServiceContext {
        sdk_config: Some(moto::sdk_config_for(&proxy.endpoint).await),
        ..Default::default()
    })
    .issuer(issuer)
    .start()
    .await;
    let (status, body, _) = server.request_token().await;
    assert_eq!(status, 503, "{body}");

    // The first rotation makes the keys; the stored document holds
    // ciphertext only.
    Rotation::connect(&config, &secret_name, KmsOptions::default())
        .rotate()
        .await
        .unwrap();
    let stored = secrets
        .get_secret_value()
        .secret_id(&secret_name)
        .send()
        .await
        .unwrap();
    assert!(!stored.secret_string().unwrap().contains("PRIVATE KEY"));

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.request_token().await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never picked up the key set"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.reset_counts();
    for _ in 0..20 {
        let token = server.token().await;
        server.verify(&token).await;
    }
    let kms_calls: u64 = proxy
        .counts()
        .iter()
        .filter(|(target, _)| target.starts_with("TrentService."))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(kms_calls, 0, "{:?}", proxy.counts());
    server.stop().await;
}
