//! Benchmark (ignored by default; run with
//! `cargo test -p e2e --test it kms_bench -- --ignored --nocapture`):
//! tokens per second through the KMS signer beside a bare SDK `Sign` loop at
//! the same concurrency against the same moto_server, and KMS calls per
//! token counted by the proxy (kms: 1, kms-envelope: 0).

use std::sync::Arc;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use e2e::fault_proxy::FaultProxy;
use e2e::moto::{self, Moto};
use oidc_core::keys::{kms_envelope, KmsOptions, KmsSigner};
use oidc_core::{Algorithm, Issuer, KeySet, Lifetime, TokenRequest};

const CONCURRENCY: usize = 8;
const SECONDS: u64 = 5;

/// Runs `work` on CONCURRENCY tasks for SECONDS.
async fn run<F, Fut>(work: F) -> (f64, u64)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    e2e::load::run(CONCURRENCY, SECONDS, move || {
        let done = work();
        async move {
            done.await;
            true
        }
    })
    .await
}

/// Issues tokens with `keys` as fast as CONCURRENCY tasks can.
async fn issue_rate(keys: KeySet) -> (f64, u64) {
    let issuer = Arc::new(Issuer::new("https://issuer.test", Arc::new(keys), Lifetime::default()).unwrap());
    run(move || {
        let issuer = issuer.clone();
        async move {
            issuer
                .issue(&TokenRequest::new("connector-1", "https://api.test"))
                .await
                .unwrap();
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn kms_bench() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let config = moto::sdk_config_for(&proxy.endpoint).await;
    let alias = moto::create_signing_key(&moto.sdk_config().await, "ECC_NIST_P256").await;
    let client = aws_sdk_kms::Client::new(&config);
    let input =
        b"eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IngifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0In0";

    let (bare, _) = {
        let (client, alias) = (client.clone(), alias.clone());
        run(move || {
            let (client, alias) = (client.clone(), alias.clone());
            async move {
                client
                    .sign()
                    .key_id(alias)
                    .message(Blob::new(&input[..]))
                    .message_type(MessageType::Raw)
                    .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await
    };

    let signer = KmsSigner::connect(&client, &alias, KmsOptions::default())
        .await
        .unwrap();
    proxy.reset_counts();
    let (kms_rate, tokens) = issue_rate(KeySet::single(Arc::new(signer))).await;
    let kms_calls = proxy.count("TrentService.Sign") as f64 / tokens as f64;

    let sym = moto::create_symmetric_key(&moto.sdk_config().await).await;
    let sealed = kms_envelope::create(
        &client,
        &sym,
        "https://issuer.test",
        Algorithm::ES256,
        &KmsOptions::default(),
    )
    .await
    .unwrap();
    let local = kms_envelope::open(&client, &sealed, "https://issuer.test", &KmsOptions::default())
        .await
        .unwrap();
    proxy.reset_counts();
    let (envelope_rate, envelope_tokens) = issue_rate(KeySet::single(Arc::new(local))).await;
    let envelope_calls: u64 = proxy.counts().values().sum();

    println!("concurrency {CONCURRENCY}, {SECONDS} s each, moto_server behind the counting proxy");
    println!("bare SDK Sign loop:      {bare:>8.1} signatures/s");
    println!("KmsSigner tokens:        {kms_rate:>8.1} tokens/s ({:.1}% of bare), {kms_calls:.3} KMS Sign calls/token", 100.0 * kms_rate / bare);
    println!(
        "kms-envelope tokens:     {envelope_rate:>8.1} tokens/s, {envelope_calls} KMS calls for {} tokens",
        envelope_tokens
    );
    assert!((kms_calls - 1.0).abs() < 1e-9);
    assert_eq!(envelope_calls, 0);
}
