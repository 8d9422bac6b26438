//! Benchmark (ignored by default; run with
//! `cargo test --release -p e2e --test it replay_bench -- --ignored --nocapture`,
//! or `bench/run.sh replay`): `private_key_jwt` logins per second with the
//! in-memory replay store and with the DynamoDB store against moto_server,
//! at the same concurrency, over real sockets; DynamoDB calls per login
//! counted by the proxy in front of the emulator (target: exactly 1).
//!
//! Assertions are signed before the clock starts, so both runs measure the
//! token endpoint: parse, verify the ES256 assertion, record its id, sign the
//! token.

use std::sync::{Arc, Mutex};

use e2e::fault_proxy::FaultProxy;
use e2e::moto::{self, Moto};
use e2e::{assertion, client_key, good_claims, test_config, TestServer, JWT_BEARER};
use oidc_core::keys::LocalSigner;
use oidc_core::Algorithm;
use oidc_server::ServiceContext;

const CONCURRENCY: usize = 16;
const SECONDS: u64 = 5;
/// Assertions signed ahead for each run (more than either run can use).
const POOL: usize = 30_000;

async fn pool(signer: &LocalSigner, issuer: &str) -> Arc<Mutex<Vec<String>>> {
    let mut assertions = Vec::with_capacity(POOL);
    for _ in 0..POOL {
        assertions.push(assertion(signer, "JWT", good_claims(issuer)).await);
    }
    Arc::new(Mutex::new(assertions))
}

/// Logins per second against `server`, each with a fresh assertion.
async fn login_rate(server: &TestServer, assertions: Arc<Mutex<Vec<String>>>) -> (f64, u64) {
    let client = e2e::http();
    let url = server.token_url();
    e2e::load::run(CONCURRENCY, SECONDS, move || {
        let (client, url, assertions) = (client.clone(), url.clone(), assertions.clone());
        async move {
            let Some(assertion) = assertions.lock().unwrap().pop() else {
                return false;
            };
            let response = client
                .post(&url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{:?}", response.text().await);
            true
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn replay_bench() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let table = moto::create_replay_table(&moto.sdk_config().await).await;
    let (signer, jwks) = client_key(Algorithm::ES256);
    let memory = TestServer::start(&test_config(&jwks)).await;
    let dynamodb = TestServer::builder(&format!("{}{}", test_config(&jwks), moto::replay_section(&table)))
        .context(ServiceContext {
            sdk_config: Some(moto::sdk_config_for(&proxy.endpoint).await),
            ..Default::default()
        })
        .start()
        .await;

    let (memory_rate, memory_logins) = login_rate(&memory, pool(&signer, &memory.url).await).await;
    let assertions = pool(&signer, &dynamodb.url).await;
    proxy.reset_counts();
    let (dynamodb_rate, dynamodb_logins) = login_rate(&dynamodb, assertions).await;
    let put_items = proxy.count("DynamoDB_20120810.PutItem");
    let other_calls: u64 = proxy.counts().values().sum::<u64>() - put_items;
    let per_login = put_items as f64 / dynamodb_logins as f64;

    println!(
        "concurrency {CONCURRENCY}, {SECONDS} s each, private_key_jwt (ES256) logins over loopback sockets"
    );
    println!("memory store:            {memory_rate:>8.1} logins/s ({memory_logins} logins)");
    println!(
        "dynamodb store (moto):   {dynamodb_rate:>8.1} logins/s ({dynamodb_logins} logins, {:.1}% of memory), \
         {per_login:.3} PutItem per login, {other_calls} other DynamoDB calls",
        100.0 * dynamodb_rate / memory_rate
    );
    assert!(
        (per_login - 1.0).abs() < 1e-9,
        "{put_items} PutItem for {dynamodb_logins} logins"
    );
    assert_eq!(other_calls, 0, "{:?}", proxy.counts());
}
