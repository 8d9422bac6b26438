//! Benchmark (ignored by default; run with
//! `cargo test --release -p e2e --test it exchange_bench -- --ignored --nocapture`,
//! or `bench/run.sh exchange`): logins per second on one server at one
//! concurrency, over real sockets, for three ways a connector proves itself:
//! - `client_secret_basic` (the baseline: a digest compared);
//! - `aws_iam` (a signed `sts:GetCallerIdentity` the server forwards to
//!   moto_server's STS: one STS call per login);
//! - token exchange (RFC 8693) of an AWS-shaped STS web identity token
//!   (ES384, AWS's kid and nested claims, a fresh `jti` each: the entry is
//!   one-time use, recorded in the in-memory replay store), its issuer's
//!   discovery document and JWKS served by `e2e::upstream_idp` on loopback
//!   with `Cache-Control: max-age=300` and fetched by the server as in
//!   production.
//!
//! The exchange run is exactly [`EXCHANGES`] logins; the requests reaching
//! the upstream JWKS are counted (target: one per key-set lifetime, not one
//! per login). Beside them, bare ring ES384 signature checks per second on
//! one thread: the upstream token's signature is most of an exchange's cost. Upstream tokens and `aws_iam` requests are signed before the
//! clock starts, so every run measures the token endpoint.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use connector_client::aws_iam::{AwsIam, ASSERTION_TYPE};
use e2e::moto::{Moto, REGION};
use e2e::sts_web_identity::{ACCOUNT, AWS_NAMESPACE, ROLE_ARN};
use e2e::upstream_idp::UpstreamIdp;
use e2e::{client_key, now, test_config, TestServer, AUDIENCE, SECRET, SECRET_CLIENT};
use oidc_core::Algorithm;
use serde_json::json;

const CONCURRENCY: usize = 16;
/// Seconds of the client_secret_basic and aws_iam runs.
const SECONDS: u64 = 5;
/// Exchange logins, each with its own upstream token.
const EXCHANGES: usize = 10_000;
/// The upstream JWKS's `max-age`: the key set's lifetime in the server's cache.
const JWKS_MAX_AGE_SECS: u64 = 300;
/// `aws_iam` requests signed ahead (more than a run can use).
const AWS_IAM_POOL: usize = 10_000;

type Pool = Arc<Mutex<Vec<String>>>;

/// Makes an IAM user with an access key in moto; prints its ARN and key.
const IAM_USER: &str = r#"
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
arn = iam.create_user(UserName="bench-connector")["User"]["Arn"]
key = iam.create_access_key(UserName="bench-connector")["AccessKey"]
print(json.dumps({"arn": arn, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#;

/// `form` posted by [`CONCURRENCY`] tasks, one login per pool item (or
/// forever with no pool), until `seconds` or the pool runs out; every
/// answer must be 200.
async fn login_rate(
    server: &TestServer,
    seconds: u64,
    pool: Option<Pool>,
    request: fn(reqwest::RequestBuilder, Option<&str>) -> reqwest::RequestBuilder,
) -> (f64, u64) {
    let client = e2e::http();
    let url = server.token_url();
    e2e::load::run(CONCURRENCY, seconds, move || {
        let (client, url, pool) = (client.clone(), url.clone(), pool.clone());
        async move {
            let item = match &pool {
                Some(pool) => match pool.lock().unwrap().pop() {
                    Some(item) => Some(item),
                    None => return false,
                },
                None => None,
            };
            let response = request(client.post(&url), item.as_deref()).send().await.unwrap();
            let status = response.status();
            assert_eq!(status, 200, "{:?}", response.text().await);
            true
        }
    })
    .await
}

fn basic(request: reqwest::RequestBuilder, _: Option<&str>) -> reqwest::RequestBuilder {
    request
        .basic_auth(SECRET_CLIENT, Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
}

fn aws_iam(request: reqwest::RequestBuilder, assertion: Option<&str>) -> reqwest::RequestBuilder {
    request.form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "iam-poller"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.unwrap_or_default()),
    ])
}

fn exchange(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    request.form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", token.unwrap_or_default()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
    ])
}

/// Bare ring ES384 signature checks per second on one thread, of a
/// signature over `message` (what bounds an exchange login: the upstream
/// token's signature).
fn ring_es384_verifications(message: &[u8]) -> f64 {
    use ring::signature::{
        EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P384_SHA384_FIXED,
        ECDSA_P384_SHA384_FIXED_SIGNING,
    };
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let signature = key.sign(&rng, message).unwrap();
    let public = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key.public_key().as_ref().to_vec());
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < std::time::Duration::from_secs(2) {
        public.verify(message, signature.as_ref()).unwrap();
        done += 1;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// An AWS STS web identity token of [`ROLE_ARN`] for `audience`.
fn aws_token(idp: &UpstreamIdp, audience: &str, iat: u64) -> String {
    idp.sign(
        Some("JWT"),
        &json!({
            "iss": idp.issuer, "sub": ROLE_ARN, "aud": audience, "iat": iat, "exp": iat + 900,
            "jti": oidc_core::Jti::random().unwrap().as_str(),
            AWS_NAMESPACE: {
                "aws_account": ACCOUNT, "source_region": REGION, "org_id": "o-a1b2c3d4e5",
                "ou_path": ["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/"], "principal_id": "AROAEXAMPLEROLEID",
                "principal_tags": { "team": "connectors" },
                "ec2_source_instance_arn": "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0",
            },
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn exchange_bench() {
    let moto = Moto::start();
    // An IAM user and its access key: moto's STS names that user as the
    // caller of requests signed with it.
    let setup = e2e::tools::run_python(IAM_USER, &[&moto.endpoint]).await;
    assert_eq!(setup.code, 0, "{}", setup.stderr);
    let user: serde_json::Value = serde_json::from_str(&setup.stdout).unwrap();
    let principal = user["arn"].as_str().unwrap().to_owned();
    let idp = UpstreamIdp::aws(JWKS_MAX_AGE_SECS).await;
    let (_, jwks) = client_key(Algorithm::ES256);
    let config = format!(
        r#"{}
[aws_iam]
sts_endpoint = "{sts}"

# Connections live through the run: at the default 60 s lifetime the server
# closes a keep-alive connection while the client may be reusing it (a
# request lost to that race is a failed login here).
[http]
max_connection_lifetime_secs = 3600

[[upstream_issuers]]
name = "aws"
issuer = "{issuer}"
typ = ["JWT"]
algorithms = ["ES384"]
max_lifetime_secs = 3600
required_claims = {{ "/https:~1~1sts.amazonaws.com~1/aws_account" = "{ACCOUNT}" }}

[[connectors]]
id = "iam-poller"
audiences = ["{AUDIENCE}"]
aws_principals = ["{principal}"]

[[connectors]]
id = "aws-poller"
audiences = ["{AUDIENCE}"]
federated = [{{ issuer = "aws", subject = "{ROLE_ARN}" }}]
"#,
        test_config(&jwks),
        sts = moto.endpoint,
        issuer = idp.issuer,
    );
    let server = TestServer::start(&config).await;

    let iam = AwsIam::new(
        SharedCredentialsProvider::new(Credentials::new(
            user["key"].as_str().unwrap(),
            user["secret"].as_str().unwrap(),
            None,
            None,
            "bench",
        )),
        REGION,
        &moto.endpoint,
    )
    .unwrap();
    let mut assertions = Vec::with_capacity(AWS_IAM_POOL);
    for _ in 0..AWS_IAM_POOL {
        assertions.push(iam.assertion(&server.url).await.unwrap());
    }
    let iat = now();
    let tokens: Vec<String> = (0..EXCHANGES)
        .map(|_| aws_token(&idp, &server.url, iat))
        .collect();

    let signing_input = tokens[0].rsplit_once('.').unwrap().0.as_bytes().to_vec();
    let ring_rate = tokio::task::spawn_blocking(move || ring_es384_verifications(&signing_input))
        .await
        .unwrap();

    let (basic_rate, basic_logins) = login_rate(&server, SECONDS, None, basic).await;
    let (iam_rate, iam_logins) =
        login_rate(&server, SECONDS, Some(Arc::new(Mutex::new(assertions))), aws_iam).await;
    let started = Instant::now();
    let (exchange_rate, exchange_logins) =
        login_rate(&server, 600, Some(Arc::new(Mutex::new(tokens))), exchange).await;
    let elapsed = started.elapsed();
    let (discovery, jwks_fetches) = (idp.discovery_requests(), idp.jwks_requests());

    println!("concurrency {CONCURRENCY}, one server, logins over loopback sockets (ES256 access tokens)");
    println!("client_secret_basic:      {basic_rate:>8.1} logins/s ({basic_logins} logins in {SECONDS} s)");
    println!(
        "aws_iam (moto STS):       {iam_rate:>8.1} logins/s ({iam_logins} logins in {SECONDS} s, {:.1}% of client_secret_basic)",
        100.0 * iam_rate / basic_rate
    );
    println!(
        "token exchange (ES384):   {exchange_rate:>8.1} logins/s ({exchange_logins} logins in {:.1} s, {:.1}% of client_secret_basic, {:.1}x aws_iam)",
        elapsed.as_secs_f64(),
        100.0 * exchange_rate / basic_rate,
        exchange_rate / iam_rate
    );
    println!(
        "bare ring ES384 verify:   {ring_rate:>8.1} verifications/s (one thread; token exchange logins/s are {:.0}% of it)",
        100.0 * exchange_rate / ring_rate
    );
    println!(
        "upstream fetches:         {jwks_fetches} JWKS and {discovery} discovery per {exchange_logins} exchange logins \
         (JWKS max-age {JWKS_MAX_AGE_SECS} s)"
    );
    assert_eq!(exchange_logins, EXCHANGES as u64);
    assert_eq!(
        server.tokens_issued(),
        basic_logins + iam_logins + exchange_logins
    );
    // One fetch per key-set lifetime: once, plus once per max-age the run lasted.
    let lifetimes = 1 + elapsed.as_secs() / JWKS_MAX_AGE_SECS;
    assert!(
        (1..=lifetimes).contains(&jwks_fetches),
        "{jwks_fetches} JWKS fetches in {elapsed:?}"
    );
    assert_eq!(discovery, 1);
}
