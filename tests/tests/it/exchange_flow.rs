//! Token exchange end to end (issue 27): a connector presents the identity
//! its platform gives it, gets oidc-server's token by RFC 8693 exchange, and
//! polls oidc-core's example control plane (`control_plane`, its own
//! process, verifying through discovery and JWKS) with it, as a real
//! connector does: connector-client's `TokenExchange` behind
//! `CachedTokenSource`, the token put on each poll by `BearerAuth`.
//!
//! Every part is real but the platforms, which are stand-ins serving their
//! real shapes: AWS STS `GetWebIdentityToken` through the real aws-sdk-sts
//! (`e2e::sts_web_identity`: moto has no such action; everything else STS
//! does is moto's), a Kubernetes service-account issuer and SPIRE's OIDC
//! discovery provider (`e2e::upstream_idp`: discovery and JWKS on loopback,
//! fetched by the server as in production). node-oidc-provider is itself:
//! its JWT access token is the upstream token. requests-oauth2client (PyPI)
//! exchanges with its default settings, and `connector-token` with
//! `--subject-token aws-sts:AUDIENCE`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use connector_client::token_exchange::{
    AwsWebIdentity, SubjectToken, SubjectTokenFile, SubjectTokenSource, TOKEN_TYPE_ACCESS_TOKEN,
};
use connector_client::{BearerAuth, CachedTokenSource, Endpoint, Error, TokenExchange, TokenSource};
use e2e::control_plane::ControlPlane;
use e2e::moto::Moto;
use e2e::node_issuer::{self, NodeIssuer};
use e2e::sts_web_identity::{StsWebIdentity, ACCOUNT, ROLE_ARN};
use e2e::upstream_idp::UpstreamIdp;
use e2e::{client_key, now, test_config, TestServer, AUDIENCE};
use oidc_core::Algorithm;
use reqwest_middleware::ClientWithMiddleware;
use serde_json::{json, Value};

/// Polls per token: the control plane sees the same token each time.
const POLLS: usize = 3;

const K8S_SUB: &str = "system:serviceaccount:connectors:poller";
const SPIFFE_SUB: &str = "spiffe://example.org/ns/x/sa/y";

/// The test configuration (its connectors stay), with `upstream` after it.
fn config(upstream: &str) -> String {
    let (_, jwks) = client_key(Algorithm::ES256);
    format!("{}{upstream}", test_config(&jwks))
}

/// The example control plane, trusting `server`'s tokens for [`AUDIENCE`].
async fn control_plane(server: &TestServer) -> ControlPlane {
    ControlPlane::start(&["--issuer", &server.url, "--audience", AUDIENCE]).await
}

/// A connector's token source: `subject` exchanged at `server` (found by
/// discovery) for a token for [`AUDIENCE`], cached.
fn connector(server: &TestServer, subject: impl SubjectTokenSource + 'static) -> CachedTokenSource {
    let exchange = TokenExchange::builder(Endpoint::Issuer(server.url.clone()), subject)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    CachedTokenSource::new(exchange).unwrap()
}

/// The HTTP client a connector polls with.
fn polling_client(tokens: &CachedTokenSource) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(e2e::http())
        .with(BearerAuth::new(tokens.clone()))
        .build()
}

/// [`POLLS`] polls, each answered 200 with actions for `connector`.
async fn polls(client: &ClientWithMiddleware, control_plane: &ControlPlane, connector: &str) {
    for _ in 0..POLLS {
        let response = client.get(&control_plane.actions_url).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "the control plane refused the poll: {body:?}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["connector"], connector, "{body}");
        assert_eq!(body["actions"][0]["id"], format!("{connector}-1"), "{body}");
    }
}

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("e2e-exchange-flow-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces `path`'s contents at once, as the kubelet and spiffe-helper do
/// (a new file renamed over the old one).
fn rotate(path: &Path, token: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, format!("{token}\n")).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// One exchange of what `path` holds now, with no cache: the server's
/// answer to that token.
async fn exchange_file(server: &TestServer, path: &Path) -> Result<String, Error> {
    let exchange = TokenExchange::builder(
        Endpoint::TokenUrl(server.token_url()),
        SubjectTokenFile::new(path),
    )
    .audience(AUDIENCE)
    .build()
    .unwrap();
    exchange
        .token()
        .await
        .map(|token| token.secret().as_str().to_owned())
}

fn assert_invalid_grant(result: Result<String, Error>) {
    match result {
        Err(Error::Endpoint(e)) => assert_eq!(e.oauth_error(), Some("invalid_grant"), "{e}"),
        other => panic!("expected invalid_grant, got {other:?}"),
    }
}

fn uuid() -> String {
    let hex = hex::encode(oidc_core::Jti::random().unwrap().as_str().as_bytes());
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

// ---------------------------------------------------------------------------
// AWS: AwsWebIdentity (GetWebIdentityToken through the real SDK)
// ---------------------------------------------------------------------------

/// The AWS account's upstream entry (discovered from the stand-in's issuer)
/// and a connector bound to the role.
fn aws_upstream(sts: &StsWebIdentity) -> String {
    format!(
        r#"
[[upstream_issuers]]
name = "aws"
issuer = "{issuer}"
typ = ["JWT"]
algorithms = ["ES384", "RS256"]
max_lifetime_secs = 3600
required_claims = {{ "/https:~1~1sts.amazonaws.com~1/aws_account" = "{ACCOUNT}" }}

[[connectors]]
id = "aws-poller"
audiences = ["{AUDIENCE}"]
scopes = ["actions:read"]
federated = [{{ issuer = "aws", subject = "{ROLE_ARN}" }}]
copy_claims = {{ account_id = "/https:~1~1sts.amazonaws.com~1/aws_account" }}
"#,
        issuer = sts.issuer
    )
}

/// A connector on `AwsWebIdentity` + `TokenExchange`: one STS token and one
/// exchange serve every poll until the token is refreshed; a refresh asks
/// STS for a fresh token (the entry is one-time use) and polling goes on.
/// The token names the connector the role is bound to and carries the
/// account copied from AWS's claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_on_aws_web_identity_polls_the_control_plane() {
    let sts = StsWebIdentity::start(&Moto::shared().endpoint).await;
    let server = TestServer::start(&config(&aws_upstream(&sts))).await;
    let control_plane = control_plane(&server).await;
    let subject = AwsWebIdentity::builder(&server.url)
        .build(&sts.sdk_config().await)
        .unwrap();
    let tokens = connector(&server, subject);
    let client = polling_client(&tokens);

    polls(&client, &control_plane, "aws-poller").await;
    assert_eq!(server.tokens_issued(), 1, "one exchange serves every poll");
    let calls = sts.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].audiences.clone(), calls[0].algorithm.as_str()),
        (vec![server.url.clone()], "ES384")
    );
    let token = tokens.token().await.unwrap();
    let claims = server.verify(token.secret().as_str()).await;
    assert_eq!(
        (claims.sub.as_str(), claims.client_id.as_str()),
        ("aws-poller", "aws-poller")
    );
    assert_eq!(claims.attributes["account_id"], ACCOUNT);

    // A refresh: a fresh STS token, exchanged; the polls go on with the new token.
    tokens.invalidate(&token);
    polls(&client, &control_plane, "aws-poller").await;
    assert_eq!(sts.calls().len(), 2);
    assert_eq!(server.tokens_issued(), 2);
    assert_ne!(
        tokens.token().await.unwrap().secret().as_str(),
        token.secret().as_str()
    );
}

/// `connector-token get --subject-token aws-sts:AUDIENCE` in a process whose
/// AWS chain reaches STS through `AWS_ENDPOINT_URL_STS`, against the real
/// server: it prints the server's token for the bound connector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_token_exchanges_an_sts_token_at_the_server() {
    let sts = StsWebIdentity::start(&Moto::shared().endpoint).await;
    let server = TestServer::start(&config(&aws_upstream(&sts))).await;
    let binary = tokio::task::spawn_blocking(e2e::connector_token_binary)
        .await
        .unwrap();
    let output = e2e::connector_command(binary)
        .envs(sts.env())
        .args(["get", "--token-url", &server.token_url()])
        .args(["--subject-token", &format!("aws-sts:{}", server.url)])
        .args(["--audience", AUDIENCE])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let claims = server.verify(printed["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.sub, "aws-poller");
    assert_eq!(printed["expires_in"], 300);
    let calls = sts.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].audiences, [server.url.as_str()]);
}

// ---------------------------------------------------------------------------
// Kubernetes: a projected service-account token in a file
// ---------------------------------------------------------------------------

/// A projected service-account token of [`K8S_SUB`] for `audience`, issued
/// at `iat` for an hour, as the kubelet writes it (no `typ`; the pod's
/// identity under `kubernetes.io`).
fn k8s_token(idp: &UpstreamIdp, audience: &str, iat: u64) -> String {
    idp.sign(
        None,
        &json!({
            "aud": [audience],
            "exp": iat + 3600,
            "iat": iat,
            "iss": idp.issuer,
            "jti": uuid(),
            "kubernetes.io": {
                "namespace": "connectors",
                "node": { "name": "ip-10-0-1-23.eu-west-1.compute.internal", "uid": uuid() },
                "pod": { "name": "poller-7d9f8c6b5-x2k4q", "uid": "0b6f5a2e-4c1d-4e8f-9a7b-3c2d1e0f9a8b" },
                "serviceaccount": { "name": "poller", "uid": "5f1c2d3e-4b5a-4678-9a0b-1c2d3e4f5a6b" },
                "warnafter": iat + 3600 * 8 / 10,
            },
            "nbf": iat,
            "sub": K8S_SUB,
        }),
    )
}

/// A pod's connector on `SubjectTokenFile`: the entry is reusable
/// (`one_time_use = false`, as the kubelet hands out one token for a while)
/// and bounds the token's age instead. The same token is exchanged twice;
/// the file is re-read on each exchange: a stale token written there is
/// refused for its age (the one before would still have passed), and the
/// kubelet's next token is exchanged and polling goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_exchanges_its_projected_token_as_the_kubelet_rotates_it() {
    let k8s = UpstreamIdp::kubernetes().await;
    let upstream = format!(
        r#"
[[upstream_issuers]]
name = "k8s"
issuer = "{issuer}"
typ = [""]
algorithms = ["RS256"]
max_lifetime_secs = 3600
max_token_age_secs = 600
one_time_use = false

[[connectors]]
id = "k8s-poller"
audiences = ["{AUDIENCE}"]
federated = [{{ issuer = "k8s", subject = "{K8S_SUB}", claims = {{ "/kubernetes.io/namespace" = "connectors", "/kubernetes.io/serviceaccount/name" = "poller" }} }}]
copy_claims = {{ pod = "/kubernetes.io/pod/name" }}
"#,
        issuer = k8s.issuer
    );
    let server = TestServer::start(&config(&upstream)).await;
    let control_plane = control_plane(&server).await;
    let scratch = Scratch::new();
    let path = scratch.0.join("token");
    rotate(&path, &k8s_token(&k8s, &server.url, now()));
    let tokens = connector(&server, SubjectTokenFile::new(&path));
    let client = polling_client(&tokens);

    polls(&client, &control_plane, "k8s-poller").await;
    let first = tokens.token().await.unwrap();
    let claims = server.verify(first.secret().as_str()).await;
    assert_eq!(claims.attributes["pod"], "poller-7d9f8c6b5-x2k4q");
    // The same projected token again: reusable.
    tokens.invalidate(&first);
    polls(&client, &control_plane, "k8s-poller").await;
    assert_eq!(server.tokens_issued(), 2);

    // A token the kubelet should have replaced long ago (still before its
    // exp): refused for its age, which shows the file was read again.
    rotate(&path, &k8s_token(&k8s, &server.url, now() - 700));
    assert_invalid_grant(exchange_file(&server, &path).await);
    // The kubelet's next token.
    rotate(&path, &k8s_token(&k8s, &server.url, now()));
    tokens.invalidate(&tokens.token().await.unwrap());
    polls(&client, &control_plane, "k8s-poller").await;
    assert_eq!(server.tokens_issued(), 3);
    // The discovery document and JWKS were fetched once for all of it.
    assert_eq!((k8s.discovery_requests(), k8s.jwks_requests()), (1, 1));
}

// ---------------------------------------------------------------------------
// SPIFFE: a JWT-SVID in spiffe-helper's file
// ---------------------------------------------------------------------------

/// A JWT-SVID of [`SPIFFE_SUB`] for `audience`: ES256, `typ: JWT`, five
/// minutes, no `jti`.
fn jwt_svid(idp: &UpstreamIdp, audience: &str) -> String {
    let now = now();
    idp.sign(
        Some("JWT"),
        &json!({ "aud": [audience], "exp": now + 300, "iat": now, "iss": idp.issuer, "sub": SPIFFE_SUB }),
    )
}

/// A workload's connector on spiffe-helper's JWT-SVID file: each SVID is
/// exchanged once (it has no `jti`: the server records a hash of it), so a
/// second exchange of the same SVID is refused; the helper's next SVID is
/// exchanged and polling goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spiffe_workload_exchanges_its_jwt_svid() {
    let spire = UpstreamIdp::spire().await;
    let upstream = format!(
        r#"
[[upstream_issuers]]
name = "spiffe"
issuer = "{issuer}"
typ = ["JWT", ""]
algorithms = ["ES256"]
max_lifetime_secs = 3600

[[connectors]]
id = "spiffe-poller"
audiences = ["{AUDIENCE}"]
federated = [{{ issuer = "spiffe", subject = "spiffe://example.org/ns/x/sa/*" }}]
"#,
        issuer = spire.issuer
    );
    let server = TestServer::start(&config(&upstream)).await;
    let control_plane = control_plane(&server).await;
    let scratch = Scratch::new();
    let path = scratch.0.join("jwt_svid.token");
    rotate(&path, &jwt_svid(&spire, &server.url));
    let tokens = connector(&server, SubjectTokenFile::new(&path));
    let client = polling_client(&tokens);

    polls(&client, &control_plane, "spiffe-poller").await;
    assert_eq!(server.tokens_issued(), 1);
    assert_invalid_grant(exchange_file(&server, &path).await);

    rotate(&path, &jwt_svid(&spire, &server.url));
    tokens.invalidate(&tokens.token().await.unwrap());
    polls(&client, &control_plane, "spiffe-poller").await;
    assert_eq!(server.tokens_issued(), 2);
}

// ---------------------------------------------------------------------------
// node-oidc-provider's JWT access token as the upstream token
// ---------------------------------------------------------------------------

/// Subject tokens from node-oidc-provider: a fresh JWT access token
/// (`client_credentials`) for every exchange, presented as an access token.
struct NodeAccessTokens(Arc<NodeIssuer>);

impl std::fmt::Debug for NodeAccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NodeAccessTokens").field(&self.0.issuer).finish()
    }
}

#[async_trait]
impl SubjectTokenSource for NodeAccessTokens {
    async fn subject_token(&self) -> Result<SubjectToken, Error> {
        Ok(SubjectToken::new(self.0.token().await, TOKEN_TYPE_ACCESS_TOKEN))
    }
}

/// node-oidc-provider issues a JWT access token (RFC 9068, `at+jwt`, ES256)
/// for our token service (its resource indicator); our server trusts its
/// issuer as an upstream entry with `typ = ["at+jwt"]` and exchanges it for
/// its own token, the provider's `org_id` copied; the connector polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_oidc_providers_access_token_is_exchanged() {
    // The token service's address is needed before it starts: node's
    // tokens are for it, and its configuration names node's issuer.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = Arc::new(NodeIssuer::start(&format!("http://{addr}"), "org-node").await);
    let upstream = format!(
        r#"
[[upstream_issuers]]
name = "node"
issuer = "{issuer}"
typ = ["at+jwt"]
algorithms = ["ES256"]
required_claims = {{ org_id = "org-node" }}

[[connectors]]
id = "node-federated"
audiences = ["{AUDIENCE}"]
federated = [{{ issuer = "node", subject = "{client}" }}]
copy_claims = {{ org_id = "/org_id" }}
"#,
        issuer = node.issuer,
        client = node_issuer::CLIENT,
    );
    let server = TestServer::builder(&config(&upstream)).at(addr).start().await;
    assert_eq!(server.url, format!("http://{addr}"));
    let control_plane = control_plane(&server).await;
    let tokens = connector(&server, NodeAccessTokens(Arc::clone(&node)));
    let client = polling_client(&tokens);

    polls(&client, &control_plane, "node-federated").await;
    let token = tokens.token().await.unwrap();
    let claims = server.verify(token.secret().as_str()).await;
    assert_eq!(claims.iss, server.url);
    assert_eq!(claims.attributes["org_id"], "org-node");
    tokens.invalidate(&token);
    polls(&client, &control_plane, "node-federated").await;
    assert_eq!(server.tokens_issued(), 2);

    // The provider's token is refused by the control plane: only ours is
    // accepted there.
    let response = e2e::http()
        .get(&control_plane.actions_url)
        .bearer_auth(node.token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

// ---------------------------------------------------------------------------
// A third-party client: requests-oauth2client (PyPI)
// ---------------------------------------------------------------------------

/// requests-oauth2client with its defaults: the client found by discovery,
/// a public client (its `client_id` in the form: the library needs one),
/// `token_exchange` with the subject token's type `jwt`. The same token
/// again: the library raises what our `invalid_grant` maps to.
const REQUESTS_OAUTH2CLIENT: &str = r#"
import json, sys
from requests_oauth2client import OAuth2Client
issuer, client_id, subject_token, audience = sys.argv[1:5]
# testing=True only lifts the library's https-only rule: the server is on loopback http.
client = OAuth2Client.from_discovery_endpoint(issuer=issuer, client_id=client_id, testing=True)
token = client.token_exchange(subject_token=subject_token, subject_token_type="jwt", audience=audience)
out = {"access_token": token.access_token, "token_type": token.token_type,
       "issued_token_type": token.kwargs.get("issued_token_type"), "expires_at": token.expires_at is not None}
try:
    client.token_exchange(subject_token=subject_token, subject_token_type="jwt", audience=audience)
    out["again"] = "accepted"
except Exception as e:
    out["again"] = type(e).__name__
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_oauth2client_exchanges_an_sts_token() {
    let sts = StsWebIdentity::start(&Moto::shared().endpoint).await;
    let server = TestServer::start(&config(&aws_upstream(&sts))).await;
    let subject = AwsWebIdentity::builder(&server.url)
        .build(&sts.sdk_config().await)
        .unwrap()
        .subject_token()
        .await
        .unwrap();
    let out = e2e::tools::run_python(
        REQUESTS_OAUTH2CLIENT,
        &[&server.url, "aws-poller", subject.expose(), AUDIENCE],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let printed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(printed["token_type"], "Bearer");
    assert_eq!(
        printed["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(printed["expires_at"], true);
    assert_eq!(printed["again"], "InvalidGrant", "{printed}");
    let claims = server.verify(printed["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.sub, "aws-poller");
    assert_eq!(claims.attributes["account_id"], ACCOUNT);
    assert_eq!(server.tokens_issued(), 1);
}
