//! Token exchange, the connector's half (issue 27): the real aws-sdk-sts gets
//! web identity tokens from the harness's STS stand-in
//! (`e2e::sts_web_identity`: moto has no `GetWebIdentityToken`; see that
//! module for what it simplifies), which checks SigV4, refuses lifetimes
//! beyond the session and forwards every other STS action to moto; those
//! tokens verify through oidc-core's `TrustedIssuers` with an upstream trust
//! entry and through `oidc-server verify --trust`, for ES384 and RS256 and
//! `aud` as a string or an array; and connector-client's `TokenExchange`,
//! `connector-token` and `get-token` present them to a token endpoint.
//!
//! That token endpoint is a small one in this file, which checks the
//! RFC 8693 form and verifies the subject token: oidc-server's own
//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` is built
//! separately and lands later; these tests then gain its real endpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use connector_client::token_exchange::{
    AwsSigningAlgorithm, AwsWebIdentity, SubjectTokenSource, GRANT_TYPE, TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_JWT,
};
use connector_client::{CachedTokenSource, Endpoint, Error, SubjectTokenProblem, TokenExchange, TokenSource};
use e2e::moto::Moto;
use e2e::sts_web_identity::{StsWebIdentity, ACCOUNT, AWS_NAMESPACE, ROLE_ARN};
use oidc_core::base64url;
use oidc_core::claims::AwsWebIdentityClaims;
use oidc_core::verify::trust::{file, TrustedIssuers};
use oidc_core::Algorithm;
use serde_json::{json, Value};

/// The audience the STS tokens are asked for: the token service.
const TOKEN_SERVICE: &str = "https://tokens.example.com";
/// Another audience, for tokens naming two.
const OTHER: &str = "https://other.example.com";

/// The stand-in, in front of the shared moto.
async fn sts() -> StsWebIdentity {
    StsWebIdentity::start(&Moto::shared().endpoint).await
}

/// The upstream trust entry for the stand-in's account: `typ` JWT, both
/// algorithms pinned (the RSA key has no `alg`), the account bound by a
/// JSON Pointer into AWS's nested claims, the role path by a pattern.
fn trust_toml(issuer: &str, audience: &str) -> String {
    format!(
        r#"
[[issuers]]
name = "aws-connectors"
issuer = "{issuer}"
audiences = ["{audience}"]
typ = ["JWT"]
algorithms = ["RS256", "ES384"]
max_lifetime_secs = 3600
max_token_age_secs = 600
required_claims = {{ "/https:~1~1sts.amazonaws.com~1/aws_account" = "{ACCOUNT}", "/https:~1~1sts.amazonaws.com~1/principal_tags/team" = "connectors" }}
claim_patterns = {{ sub = "arn:aws:iam::{ACCOUNT}:role/connectors/*" }}
"#
    )
}

fn trusted(issuer: &str, audience: &str) -> TrustedIssuers {
    let entries = file::parse(&trust_toml(issuer, audience), Path::new(".")).unwrap();
    TrustedIssuers::builder().issuers(entries).build().unwrap()
}

/// The header and claims of a compact JWS, unverified.
fn parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || serde_json::from_slice(&base64url::decode(parts.next().unwrap()).unwrap()).unwrap();
    (next(), next())
}

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("e2e-exchange-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of a binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `binary` with `env` and nothing inherited that could configure it (no
/// `CONNECTOR_*` variable, no `RUST_LOG`).
fn command(binary: &Path, env: &[(String, String)]) -> tokio::process::Command {
    let mut command = e2e::connector_command(binary);
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

async fn run(binary: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let output = command(binary, env).args(args).output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("finished in time")
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A binary or example of the workspace, built (or found up to date) by cargo.
async fn executable(kind: &'static str, name: &'static str) -> PathBuf {
    tokio::task::spawn_blocking(move || e2e::built_executable(&[kind, name], name))
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// The STS stand-in, through the real aws-sdk-sts
// ---------------------------------------------------------------------------

/// `GetWebIdentityToken` through the real SDK for each algorithm, with one
/// audience and with two: the token has AWS's header and claims, verifies
/// through `TrustedIssuers` with the upstream entry and through
/// `oidc-server verify --trust FILE TOKEN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_tokens_in_awss_shape_verify_in_the_library_and_the_cli() {
    let sts = sts().await;
    let client = aws_sdk_sts::Client::new(&sts.sdk_config().await);
    let trusted = trusted(&sts.issuer, TOKEN_SERVICE);
    let scratch = Scratch::new();
    let trust_file = scratch.file("trust.toml", &trust_toml(&sts.issuer, TOKEN_SERVICE));
    let oidc_server = executable("--bin", "oidc-server").await;

    for (alg, kid) in [(Algorithm::ES384, "EC384_0"), (Algorithm::RS256, "RSA_0")] {
        for audiences in [vec![TOKEN_SERVICE], vec![OTHER, TOKEN_SERVICE]] {
            let output = client
                .get_web_identity_token()
                .set_audience(Some(audiences.iter().map(|a| a.to_string()).collect()))
                .duration_seconds(600)
                .signing_algorithm(alg.name())
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{alg} {audiences:?}: {}",
                        aws_sdk_sts::error::DisplayErrorContext(e)
                    )
                });
            let token = output.web_identity_token().unwrap().to_owned();

            let (header, claims) = parts(&token);
            assert_eq!(header, json!({ "kid": kid, "typ": "JWT", "alg": alg.name() }));
            match &audiences[..] {
                [one] => assert_eq!(claims["aud"], json!(one), "one audience: a string"),
                many => assert_eq!(claims["aud"], json!(many), "several: an array"),
            }
            assert_eq!(claims["sub"], ROLE_ARN);
            assert!(claims.get("nbf").is_none());
            assert_eq!(
                claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
                600
            );
            assert_eq!(claims["jti"].as_str().unwrap().len(), 36);
            let expiration = output.expiration().unwrap().secs();
            assert_eq!(expiration, claims["exp"].as_i64().unwrap());

            let verified = trusted
                .verify::<AwsWebIdentityClaims>(&token)
                .await
                .unwrap_or_else(|e| panic!("{alg} {audiences:?}: {e}"));
            assert_eq!(verified.issuer_name(), "aws-connectors");
            assert_eq!(verified.verified().algorithm(), alg);
            assert_eq!(verified.claims().aws.aws_account, ACCOUNT);
            assert_eq!(verified.claims().aws.ou_path.len(), 1);
            if alg == Algorithm::RS256 {
                assert!(
                    !verified.verified().key().algorithm_stated(),
                    "AWS's RSA key has no alg"
                );
            }

            let cli = run(
                &oidc_server,
                &["verify", "--trust", trust_file.to_str().unwrap(), &token],
                &[],
            )
            .await;
            assert_eq!(cli.code, Some(0), "{alg} {audiences:?}: {}", cli.stderr);
            let printed: Value = serde_json::from_str(&cli.stdout).unwrap();
            assert_eq!(printed["issuer_name"], "aws-connectors");
            assert_eq!(printed["claims"][AWS_NAMESPACE]["aws_account"], ACCOUNT);
        }
    }

    // The same tokens for an audience the entry does not list: refused by both.
    let token = client
        .get_web_identity_token()
        .audience(OTHER)
        .signing_algorithm("ES384")
        .send()
        .await
        .unwrap()
        .web_identity_token()
        .unwrap()
        .to_owned();
    assert_eq!(
        trusted.verify::<Value>(&token).await.unwrap_err().reason(),
        "wrong_audience"
    );
    let cli = run(
        &oidc_server,
        &["verify", "--trust", trust_file.to_str().unwrap(), &token],
        &[],
    )
    .await;
    assert_eq!(cli.code, Some(1), "{}", cli.stderr);
    assert_eq!(sts.calls().len(), 5);
}

/// STS's refusals in STS's shape: no `Authorization` header, a wrong secret,
/// an unknown key, values out of range. None issues a token.
#[tokio::test]
async fn unsigned_or_badly_signed_requests_are_refused_as_sts_does() {
    let sts = sts().await;
    let unsigned = e2e::http()
        .post(&sts.endpoint)
        .form(&[
            ("Action", "GetWebIdentityToken"),
            ("Version", "2011-06-15"),
            ("Audience.member.1", TOKEN_SERVICE),
            ("SigningAlgorithm", "ES384"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    assert_eq!(unsigned.headers()[header::CONTENT_TYPE], "text/xml");
    let body = unsigned.text().await.unwrap();
    for part in [
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">",
        "<Type>Sender</Type>",
        "<Code>MissingAuthenticationToken</Code>",
        "<RequestId>",
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }

    let code = |config: aws_config::SdkConfig, algorithm: &'static str, duration: i32| async move {
        let error = aws_sdk_sts::Client::new(&config)
            .get_web_identity_token()
            .audience(TOKEN_SERVICE)
            .duration_seconds(duration)
            .signing_algorithm(algorithm)
            .send()
            .await
            .unwrap_err();
        aws_sdk_sts::error::ProvideErrorMetadata::code(&error).map(str::to_owned)
    };
    let wrong_secret = sts
        .sdk_config_with(e2e::sts_web_identity::ACCESS_KEY_ID, "not-the-secret")
        .await;
    assert_eq!(
        code(wrong_secret, "ES384", 300).await.as_deref(),
        Some("SignatureDoesNotMatch")
    );
    let unknown = sts.sdk_config_with("AKIAUNKNOWN", "whatever").await;
    assert_eq!(
        code(unknown, "ES384", 300).await.as_deref(),
        Some("InvalidClientTokenId")
    );
    assert_eq!(
        code(sts.sdk_config().await, "ES256", 300).await.as_deref(),
        Some("ValidationError")
    );
    assert_eq!(
        code(sts.sdk_config().await, "ES384", 3601).await.as_deref(),
        Some("ValidationError")
    );
    assert!(sts.calls().is_empty(), "{:?}", sts.calls());

    // Through connector-client: a refusal retrying cannot fix.
    let source = AwsWebIdentity::builder(TOKEN_SERVICE)
        .build(
            &sts.sdk_config_with(e2e::sts_web_identity::ACCESS_KEY_ID, "not-the-secret")
                .await,
        )
        .unwrap();
    let error = source.subject_token().await.unwrap_err();
    let Error::SubjectToken(e) = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(e.problem(), SubjectTokenProblem::Refused { code, retryable: false, .. } if code == "SignatureDoesNotMatch"),
        "{e:?}"
    );
    assert!(error.to_string().starts_with(
        "cannot get the subject token from AWS STS GetWebIdentityToken (us-east-1): refused with SignatureDoesNotMatch"
    ), "{error}");
}

/// The rest of STS is moto's: `GetCallerIdentity` through the stand-in gets
/// moto's answer.
#[tokio::test]
async fn every_other_sts_action_reaches_moto() {
    let sts = sts().await;
    let identity = aws_sdk_sts::Client::new(&sts.sdk_config().await)
        .get_caller_identity()
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_sts::error::DisplayErrorContext(e)));
    assert_eq!(identity.account(), Some(ACCOUNT));
    assert!(identity.arn().unwrap().starts_with("arn:aws:"), "{identity:?}");
    assert_eq!(sts.forwarded(), 1);
    assert!(sts.calls().is_empty());
}

/// A session that ends before the asked lifetime: STS answers
/// `SessionDurationEscalationException`, and `AwsWebIdentity` asks again
/// with half the lifetime until STS issues one; below a minute it gives up
/// with a retryable error.
#[tokio::test]
async fn aws_web_identity_asks_for_less_when_the_session_ends_sooner() {
    let sts = sts().await;
    sts.set_session_limit(Some(1000));
    let source = AwsWebIdentity::builder(TOKEN_SERVICE)
        .audience(OTHER)
        .duration(Duration::from_secs(3600))
        .algorithm(AwsSigningAlgorithm::RS256)
        .tag("connector", "eu-1")
        .build(&sts.sdk_config().await)
        .unwrap();
    let token = source.subject_token().await.unwrap();
    assert_eq!(token.token_type(), TOKEN_TYPE_JWT);
    let asked: Vec<(u64, Option<String>)> = sts
        .calls()
        .into_iter()
        .map(|c| (c.duration_secs, c.refused))
        .collect();
    let escalation = Some("SessionDurationEscalationException".to_owned());
    assert_eq!(
        asked,
        [
            (3600, escalation.clone()),
            (1800, escalation.clone()),
            (900, None)
        ]
    );
    let call = sts.calls().pop().unwrap();
    assert_eq!(call.audiences, [TOKEN_SERVICE, OTHER]);
    assert_eq!(
        (call.algorithm.as_str(), &call.tags[..]),
        ("RS256", &[("connector".into(), "eu-1".into())][..])
    );
    let (header, claims) = parts(token.expose());
    assert_eq!(header["alg"], "RS256");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );
    assert_eq!(
        claims[AWS_NAMESPACE]["request_tags"],
        json!({ "connector": "eu-1" })
    );
    trusted(&sts.issuer, TOKEN_SERVICE)
        .verify::<Value>(token.expose())
        .await
        .unwrap();

    // Under a minute left: 3600, 1800, 900, 450, 225, 112, 60, then a retryable error.
    sts.set_session_limit(Some(30));
    let before = sts.calls().len();
    let error = source.subject_token().await.unwrap_err();
    assert_eq!(sts.calls().len() - before, 7);
    assert!(error.is_retryable(), "{error}");
    assert!(
        error.to_string().contains("SessionDurationEscalationException"),
        "{error}"
    );
}

/// AWS's largest tokens: 50 request tags bring the payload near STS's
/// 14,984-byte limit (about 20 KB compact, over the 8 KiB kept for our own
/// tokens); such a token verifies (the upstream entry's cap is 24 KiB) in
/// the library and through the CLI. A few bytes more and STS refuses with
/// `JWTPayloadSizeExceededException`, which retrying cannot fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_tokens_verify_and_larger_ones_are_refused() {
    let sts = sts().await;
    let tagged = |value_len: usize| {
        (0..50).fold(AwsWebIdentity::builder(TOKEN_SERVICE), |builder, i| {
            builder.tag(format!("tag-{i:02}-{}", "k".repeat(50)), "v".repeat(value_len))
        })
    };
    let largest = tagged(215).build(&sts.sdk_config().await).unwrap();
    let token = largest.subject_token().await.unwrap();
    let token = token.expose();
    let payload = base64url::decode(token.split('.').nth(1).unwrap()).unwrap().len();
    assert!(
        (14_000..=e2e::sts_web_identity::MAX_PAYLOAD_BYTES).contains(&payload),
        "{payload}"
    );
    assert!((18_000..24 * 1024).contains(&token.len()), "{}", token.len());
    let verified = trusted(&sts.issuer, TOKEN_SERVICE)
        .verify::<AwsWebIdentityClaims>(token)
        .await
        .unwrap();
    assert_eq!(verified.claims().aws.request_tags.len(), 50);
    let scratch = Scratch::new();
    let trust_file = scratch.file("trust.toml", &trust_toml(&sts.issuer, TOKEN_SERVICE));
    let cli = run(
        &executable("--bin", "oidc-server").await,
        &["verify", "--trust", trust_file.to_str().unwrap(), token],
        &[],
    )
    .await;
    assert_eq!(cli.code, Some(0), "{}", cli.stderr);

    let too_large = tagged(256).build(&sts.sdk_config().await).unwrap();
    let error = too_large.subject_token().await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(
        error
            .to_string()
            .contains("refused with JWTPayloadSizeExceededException"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------
// The exchange, against a token endpoint of this file
// ---------------------------------------------------------------------------

/// What the token endpoint saw: the form, and whether it carried any
/// client authentication.
#[derive(Debug, Clone)]
struct Seen {
    form: Vec<(String, String)>,
    authorization: Option<String>,
    /// The verified subject token's `sub`, or why it was refused.
    subject: Result<String, String>,
}

/// A token endpoint that accepts RFC 8693 exchanges of the stand-in's
/// tokens: it checks the form, verifies the subject token with the upstream
/// trust entry, and answers an access token naming the subject.
#[derive(Clone)]
struct ExchangeEndpoint {
    trusted: Arc<TrustedIssuers>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ExchangeEndpoint {
    /// Serves on a free port; returns it and its token URL.
    async fn start(sts: &StsWebIdentity) -> (ExchangeEndpoint, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        // The STS token's audience is this token service: its origin, as
        // the client names it by default.
        let endpoint = ExchangeEndpoint {
            trusted: Arc::new(trusted(&sts.issuer, &origin)),
            seen: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/token", post(exchange))
            .with_state(endpoint.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (endpoint, format!("{origin}/token"))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn exchange(State(endpoint): State<ExchangeEndpoint>, headers: HeaderMap, body: String) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let value = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let subject = match value("subject_token") {
        Some(token) => match endpoint.trusted.verify::<AwsWebIdentityClaims>(&token).await {
            Ok(verified) => Ok(verified.claims().sub.clone()),
            Err(e) => Err(e.to_string()),
        },
        None => Err("no subject_token".into()),
    };
    endpoint.seen.lock().unwrap().push(Seen {
        form: form.clone(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned()),
        subject: subject.clone(),
    });
    let answer = |status: StatusCode, body: Value| (status, axum::Json(body)).into_response();
    if value("grant_type").as_deref() != Some(GRANT_TYPE) {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": "unsupported_grant_type" }),
        );
    }
    if value("subject_token_type").as_deref() != Some(TOKEN_TYPE_JWT) {
        return answer(StatusCode::BAD_REQUEST, json!({ "error": "invalid_request" }));
    }
    match subject {
        Ok(sub) => answer(
            StatusCode::OK,
            json!({
                "access_token": format!("exchanged-for-{}", sub.rsplit('/').next().unwrap()),
                "issued_token_type": TOKEN_TYPE_ACCESS_TOKEN,
                "token_type": "Bearer",
                "expires_in": 300,
            }),
        ),
        Err(reason) => answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": "invalid_request", "error_description": reason }),
        ),
    }
}

/// `TokenExchange` with `AwsWebIdentity` behind the cache: the endpoint
/// gets exactly the RFC 8693 form (no client authentication), a subject
/// token that verifies for this token service, and the access token comes
/// back; a refresh presents a fresh STS token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_presents_a_fresh_sts_token_to_the_token_endpoint() {
    let sts = sts().await;
    let (endpoint, token_url) = ExchangeEndpoint::start(&sts).await;
    let origin = token_url.trim_end_matches("/token").to_owned();
    let subject = AwsWebIdentity::builder(&origin)
        .build(&sts.sdk_config().await)
        .unwrap();
    let source = TokenExchange::builder(Endpoint::TokenUrl(token_url.clone()), subject)
        .audience("https://control.example.com")
        .scope("actions:read")
        .build()
        .unwrap();
    let tokens = CachedTokenSource::new(source).unwrap();
    let token = tokens.token().await.unwrap();
    assert_eq!(token.secret().as_str(), "exchanged-for-poller");
    assert_eq!(token.expires_in(), Duration::from_secs(300));

    let seen = endpoint.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization, None);
    assert_eq!(seen[0].subject.as_deref(), Ok(ROLE_ARN));
    let names: Vec<&str> = seen[0].form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "grant_type",
            "subject_token",
            "subject_token_type",
            "audience",
            "scope"
        ]
    );
    assert_eq!(seen[0].form[3].1, "https://control.example.com");
    assert_eq!(seen[0].form[4].1, "actions:read");
    let call = &sts.calls()[0];
    assert_eq!(
        (
            call.audiences.clone(),
            call.duration_secs,
            call.algorithm.as_str()
        ),
        (vec![origin.clone()], 300, "ES384")
    );

    // A refresh exchanges a new STS token.
    tokens.invalidate(&token);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while endpoint.seen().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no second exchange");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = endpoint.seen();
    assert_ne!(seen[0].form[1].1, seen[1].form[1].1, "a fresh subject token");
    assert_eq!(sts.calls().len(), 2);

    // An STS token for another audience is refused by the endpoint, and the
    // client reads the refusal with the exchange's hint.
    let elsewhere = AwsWebIdentity::builder(OTHER)
        .build(&sts.sdk_config().await)
        .unwrap();
    let source = TokenExchange::builder(Endpoint::TokenUrl(token_url), elsewhere)
        .build()
        .unwrap();
    let error = source.token().await.unwrap_err();
    assert!(
        matches!(&error, Error::Endpoint(e) if e.oauth_error() == Some("invalid_request")),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("the subject token may have been refused"),
        "{error}"
    );
}

/// `connector-token get --subject-token aws-sts` (the STS endpoint from
/// `AWS_ENDPOINT_URL_STS`, the audience the token URL's origin) and
/// `get-token --subject-token-file PATH`: each prints the exchanged token;
/// flags that would add client authentication are refused with exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binaries_exchange_sts_tokens_and_token_files() {
    let connector_token = executable("--bin", "connector-token").await;
    let get_token = executable("--example", "get-token").await;
    let sts = sts().await;
    let (endpoint, token_url) = ExchangeEndpoint::start(&sts).await;

    let out = run(
        &connector_token,
        &[
            "get",
            "--token-url",
            &token_url,
            "--subject-token",
            "aws-sts",
            "--audience",
            "https://control.example.com",
        ],
        &sts.env(),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let printed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        printed,
        json!({ "access_token": "exchanged-for-poller", "expires_in": 300 })
    );
    assert_eq!(endpoint.seen()[0].subject.as_deref(), Ok(ROLE_ARN));
    assert_eq!(
        sts.calls().len(),
        1,
        "the child reached the stand-in through AWS_ENDPOINT_URL_STS"
    );

    // The same through the variables, with an explicit audience STS is asked for.
    let origin = token_url.trim_end_matches("/token");
    let mut env = sts.env();
    env.push(("CONNECTOR_TOKEN_URL".into(), token_url.clone()));
    env.push(("CONNECTOR_SUBJECT_TOKEN".into(), format!("aws-sts:{origin}")));
    let out = run(&connector_token, &["get"], &env).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(sts.calls()[1].audiences, [origin]);

    // A token file: a token the stand-in issued, with a line break after it.
    let scratch = Scratch::new();
    let subject = AwsWebIdentity::builder(origin)
        .build(&sts.sdk_config().await)
        .unwrap()
        .subject_token()
        .await
        .unwrap();
    let path = scratch.file("token", &format!("{}\n", subject.expose()));
    let out = run(
        &get_token,
        &[
            "--token-url",
            &token_url,
            "--subject-token-file",
            path.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let last = endpoint.seen().pop().unwrap();
    assert_eq!(
        last.form[1],
        ("subject_token".into(), subject.expose().to_owned())
    );
    assert_eq!(last.subject.as_deref(), Ok(ROLE_ARN));

    // A missing file: exit 1, the path named, no request.
    let before = endpoint.seen().len();
    let missing = scratch.0.join("missing");
    let out = run(
        &get_token,
        &[
            "--token-url",
            &token_url,
            "--subject-token-file",
            missing.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains(missing.to_str().unwrap()), "{}", out.stderr);
    assert_eq!(endpoint.seen().len(), before);

    // A subject token and client authentication at once: exit 2, one line.
    let secret = scratch.file("secret", "s3cret\n");
    for (flags, env) in [
        (
            vec![
                "--subject-token-file",
                path.to_str().unwrap(),
                "--client-secret-file",
                secret.to_str().unwrap(),
            ],
            vec![],
        ),
        (
            vec!["--subject-token", "aws-sts"],
            vec![("CONNECTOR_CLIENT_ID".to_owned(), "connector-1".to_owned())],
        ),
    ] {
        let mut args = vec!["--token-url", token_url.as_str()];
        args.extend(flags);
        let out = run(&get_token, &args, &env).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    }
    assert_eq!(endpoint.seen().len(), before);
}

/// `connector-token agent --subject-token-file PATH` started before the
/// file exists (spiffe-helper may write it after the agent starts): the
/// agent waits for it, then keeps the exchanged token in its file; its log
/// names the token exchange and never the subject token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_waits_for_the_subject_token_file() {
    let connector_token = executable("--bin", "connector-token").await;
    let sts = sts().await;
    let (endpoint, token_url) = ExchangeEndpoint::start(&sts).await;
    let scratch = Scratch::new();
    let subject_path = scratch.0.join("subject-token");
    let out = scratch.0.join("token");
    let log = scratch.0.join("agent.log");
    let env = [
        ("CONNECTOR_TOKEN_URL".to_owned(), token_url.clone()),
        (
            "CONNECTOR_SUBJECT_TOKEN_FILE".to_owned(),
            subject_path.to_str().unwrap().to_owned(),
        ),
    ];
    let mut agent = command(&connector_token, &env)
        .args(["agent", "--out", out.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!out.exists(), "no token without a subject token");
    let origin = token_url.trim_end_matches("/token");
    let subject = AwsWebIdentity::builder(origin)
        .build(&sts.sdk_config().await)
        .unwrap()
        .subject_token()
        .await
        .unwrap();
    std::fs::write(&subject_path, subject.expose()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&out).ok().as_deref() != Some("exchanged-for-poller") {
        assert!(
            std::time::Instant::now() < deadline,
            "no token file; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(endpoint.seen().last().unwrap().subject.as_deref(), Ok(ROLE_ARN));

    let pid = rustix::process::Pid::from_raw(agent.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), agent.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!out.exists(), "removed at exit");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("keeping the token file fresh (token exchange)"),
        "{log}"
    );
    assert!(
        log.contains("cannot get the subject token from subject token file"),
        "{log}"
    );
    let signature = subject.expose().rsplit('.').next().unwrap();
    assert!(
        !log.contains(signature),
        "the subject token is never logged:\n{log}"
    );
}
