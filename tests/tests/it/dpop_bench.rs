//! Benchmark (ignored by default; run with
//! `cargo test --release -p e2e --all-features --test it dpop_bench -- --ignored --nocapture`,
//! or `bench/run.sh dpop`): `client_credentials` (client_secret_basic)
//! tokens per second over loopback sockets without and with a DPoP proof,
//! in one run, at the same concurrency, against the same server (memory
//! replay store), for two signing modes: a local ES256 key (as `local` and
//! `kms-envelope` sign) and `kms`, the deployment stack's default, with the
//! key in moto's KMS. wrk cannot sign proofs, so each DPoP round's proofs
//! (ES256, unique) are signed before its clock starts, on every core; the
//! rounds alternate so that a drift of the machine's load hits both.
//! Target (issue 28): with DPoP at least 0.8x of without.

use std::sync::{Arc, Mutex};

use e2e::moto::{self, Moto};
use e2e::{client_key, test_config, test_config_with_signing, TestServer, SECRET, SECRET_CLIENT};
use oidc_core::dpop::{DpopKey, DpopProof};
use oidc_core::Algorithm;
use oidc_server::ServiceContext;

const CONCURRENCY: usize = 16;
const SECONDS: u64 = 5;
const ROUNDS: usize = 3;
/// Proofs signed ahead for one DPoP round (more than a round can use).
const POOL: usize = 150_000;

/// `POOL` fresh proofs of `key` for `url`, signed on every core.
fn proofs(key: &Arc<DpopKey>, url: &str) -> Arc<Mutex<Vec<String>>> {
    let threads = std::thread::available_parallelism().map_or(4, usize::from);
    let per_thread = POOL.div_ceil(threads);
    let all = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    (0..per_thread)
                        .map(|_| DpopProof::builder(key, "POST", url).sign().unwrap().into_string())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    Arc::new(Mutex::new(all))
}

/// Tokens per second against `server`, each request with a proof from
/// `proofs` when given.
async fn rate(server: &TestServer, proofs: Option<Arc<Mutex<Vec<String>>>>) -> (f64, u64) {
    let client = e2e::http();
    let url = server.token_url();
    e2e::load::run(CONCURRENCY, SECONDS, move || {
        let (client, url, proofs) = (client.clone(), url.clone(), proofs.clone());
        async move {
            let mut request = client
                .post(&url)
                .basic_auth(SECRET_CLIENT, Some(SECRET))
                .form(&[("grant_type", "client_credentials")]);
            let expected = match &proofs {
                Some(proofs) => {
                    let Some(proof) = proofs.lock().unwrap().pop() else {
                        return false;
                    };
                    request = request.header("dpop", proof);
                    "DPoP"
                }
                None => "Bearer",
            };
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["token_type"], expected);
            true
        }
    })
    .await
}

/// Bearer and DPoP rounds, alternated, against `server`; prints them under
/// `mode` and returns DPoP's rate over bearer's.
async fn compare(mode: &str, server: &TestServer, rounds: usize) -> f64 {
    let key = Arc::new(DpopKey::generate().unwrap());
    // Warm-up: connections, allocator, caches.
    rate(server, None).await;
    let (mut bearer, mut dpop) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        bearer.push(rate(server, None).await);
        let pool = proofs(&key, &server.token_url());
        dpop.push(rate(server, Some(pool)).await);
    }
    let mean = |runs: &[(f64, u64)]| runs.iter().map(|(r, _)| r).sum::<f64>() / runs.len() as f64;
    let (bearer_rate, dpop_rate) = (mean(&bearer), mean(&dpop));
    println!(
        "{mode}: concurrency {CONCURRENCY}, {rounds} alternating rounds of {SECONDS} s, client_secret_basic, \
         ES256 tokens and ES256 proofs, loopback sockets"
    );
    for (i, (b, d)) in bearer.iter().zip(&dpop).enumerate() {
        println!(
            "{mode} round {}: bearer {:>8.1} tokens/s ({} tokens), DPoP {:>8.1} tokens/s ({} tokens)",
            i + 1,
            b.0,
            b.1,
            d.0,
            d.1
        );
    }
    let ratio = dpop_rate / bearer_rate;
    println!(
        "{mode} mean: bearer {bearer_rate:>8.1} tokens/s, DPoP {dpop_rate:>8.1} tokens/s: DPoP at {ratio:.2}x \
         of bearer (target >= 0.8x)"
    );
    ratio
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn dpop_bench() {
    // A window long enough for a pool signed before its round.
    let dpop = "\n[dpop]\niat_window_secs = 120\n";
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let local = TestServer::start(&format!("{}{dpop}", test_config(&jwks))).await;
    compare("local ES256 key", &local, ROUNDS).await;
    drop(local);

    // The stack's default: every token signed by KMS (here moto's).
    let moto = Moto::start();
    let sdk_config = moto.sdk_config().await;
    let alias = moto::create_signing_key(&sdk_config, "ECC_NIST_P256").await;
    let signing = format!("[signing]\nkind = \"kms\"\nkey_id = \"{alias}\"\n");
    let kms = TestServer::builder(&format!("{}{dpop}", test_config_with_signing(&signing)))
        .context(ServiceContext {
            sdk_config: Some(sdk_config),
            ..Default::default()
        })
        .start()
        .await;
    compare("kms (moto)", &kms, ROUNDS).await;
}
