//! DPoP (RFC 9449) from the connector's side. Against software nobody here
//! wrote: node-oidc-provider with DPoP on (client_credentials, a resource
//! indicator so that it issues JWT access tokens, nonces required) issues
//! DPoP-bound tokens to our `ClientCredentials` (proofs from our client, one
//! retry with node's nonce); the example control plane with a trust entry
//! `dpop = "required"` for node's issuer accepts them with our middleware's
//! proofs. The stolen-token tests, with node's tokens and with our own
//! server's (a connector with `dpop = "required"`, the control plane with
//! `--require-dpop`): `connector-token agent --dpop` keeps its token file
//! fresh and its key in `--dpop-key-out`; polls with the key succeed while
//! the token copied from the file, without the key (as `Bearer`, as `DPoP`
//! with a proof of another key, or with none), is refused. And the
//! middleware's one retry with a resource server's `DPoP-Nonce`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use connector_client::{
    BearerAuth, CachedTokenSource, ClientAuth, ClientCredentials, ClientSecret, DpopKey, DpopProof, Endpoint,
    TokenSource, TokenType,
};
use e2e::control_plane::ControlPlane;
use e2e::node_issuer::{NodeIssuer, CLIENT as NODE_CLIENT, SECRET as NODE_SECRET};
use e2e::scratch::Scratch;
use e2e::{
    client_key, dpop_required_connector, http, test_config, TestServer, AUDIENCE, DPOP_CLIENT, SECRET,
};
use oidc_core::axum::{shared_verifier, DpopResource, DpopToken, SharedDpop, SharedVerifier};
use oidc_core::dpop::{DpopMode, DpopNonces, DpopVerifier};
use oidc_core::verify::RemoteJwks;
use oidc_core::{AccessTokenClaims, Algorithm, Policy};
use serde_json::Value;

/// Our client for node's connector, DPoP-bound to `key`.
fn node_source(node: &NodeIssuer, key: Arc<DpopKey>) -> ClientCredentials {
    ClientCredentials::builder(
        Endpoint::Issuer(node.issuer.clone()),
        NODE_CLIENT,
        ClientAuth::ClientSecretBasic(ClientSecret::new(NODE_SECRET)),
    )
    .scope("actions:read")
    .dpop(key)
    .build()
    .unwrap()
}

struct ChildGuard(tokio::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// The example control plane trusting node's issuer with `dpop = "required"`.
async fn control_plane(node: &NodeIssuer, dir: &Scratch) -> ControlPlane {
    let trust = dir.path("trust.toml");
    std::fs::write(
        &trust,
        format!(
            "[[issuers]]\nname = \"tenant-node\"\nissuer = \"{}\"\naudiences = [\"{AUDIENCE}\"]\n\
             algorithms = [\"ES256\"]\ndpop = \"required\"\n",
            node.issuer
        ),
    )
    .unwrap();
    ControlPlane::start(&["--trust".as_ref(), trust.as_os_str()]).await
}

/// `connector-token agent --dpop --dpop-key-out` with `credentials` (the
/// flags naming the issuer, the client and its secret file), writing into
/// `dir`: the running agent, its token file and its key file, once the
/// first token is written. The key file has mode 0600, and the info file
/// tells a reader in any language to send the token as DPoP.
async fn dpop_agent(dir: &Scratch, credentials: &[&OsStr]) -> (ChildGuard, PathBuf, PathBuf) {
    let (out, key_out) = (dir.path("token"), dir.path("dpop.pem"));
    let binary = tokio::task::spawn_blocking(e2e::connector_token_binary)
        .await
        .unwrap();
    let mut command = e2e::connector_command(binary);
    command
        .arg("agent")
        .args(credentials)
        .arg("--out")
        .arg(&out)
        .arg("--dpop-key-out")
        .arg(&key_out)
        .env("CONNECTOR_DPOP", "true")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    let agent = ChildGuard(command.spawn().unwrap());
    // The info file follows the token file by a moment on the first write.
    let info = dir.path("token.json");
    for _ in 0..300 {
        if info.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(out.exists(), "the agent wrote no token file");
    let info: Value = serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    assert_eq!(info["token_type"], "DPoP", "{info}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key_out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    (agent, out, key_out)
}

/// One poll of `url` with `Authorization: SCHEME TOKEN` and `proof` as the
/// `DPoP` header, if any: the status.
async fn poll(url: &str, token: &str, scheme: &str, proof: Option<String>) -> u16 {
    let mut request = http()
        .get(url)
        .header("authorization", format!("{scheme} {token}"));
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    request.send().await.unwrap().status().as_u16()
}

/// One round at `poll_url` with the token now in the agent's file `out`:
/// the connector (the token file and the key file, a fresh proof per poll)
/// is answered 200; the same token copied by a thief without the key is
/// refused as `Bearer`, as `DPoP` with a proof of the thief's key, and as
/// `DPoP` with no proof. Returns the token.
async fn only_the_key_holder_polls(out: &Path, key: &DpopKey, thief: &DpopKey, poll_url: &str) -> String {
    let token = std::fs::read_to_string(out).unwrap();
    let proof = DpopProof::builder(key, "GET", poll_url)
        .access_token(&token)
        .sign()
        .unwrap();
    assert_eq!(
        poll(poll_url, &token, "DPoP", Some(proof.into_string())).await,
        200,
        "the connector's poll"
    );
    assert_eq!(poll(poll_url, &token, "Bearer", None).await, 401, "as Bearer");
    let forged = DpopProof::builder(thief, "GET", poll_url)
        .access_token(&token)
        .sign()
        .unwrap();
    assert_eq!(
        poll(poll_url, &token, "DPoP", Some(forged.into_string())).await,
        401,
        "another key's proof"
    );
    assert_eq!(poll(poll_url, &token, "DPoP", None).await, 401, "no proof");
    token
}

/// Our connector-client gets a DPoP-bound JWT access token from
/// node-oidc-provider (retrying once with node's nonce) and polls the
/// example control plane through `BearerAuth`; our verifier accepts node's
/// token with our proofs, and refuses it as `Bearer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_oidc_provider_binds_our_token_and_our_verifier_accepts_our_proofs() {
    let node = NodeIssuer::start_with_dpop(AUDIENCE, "org-node").await;
    let dir = Scratch::new("dpop-client");
    let plane = control_plane(&node, &dir).await;
    let key = Arc::new(DpopKey::generate().unwrap());

    let token = node_source(&node, key.clone()).token().await.unwrap();
    assert_eq!(token.token_type(), TokenType::Dpop);
    // node bound it to our key.
    let payload = token.secret().as_str().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&oidc_core::base64url::decode(payload).unwrap()).unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint(), "{claims}");

    let tokens = CachedTokenSource::new(node_source(&node, key.clone())).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(http())
        .with(BearerAuth::new(tokens.clone()))
        .build();
    for _ in 0..3 {
        let response = client
            .get(format!("{}?wait=1", plane.actions_url))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["issuer"], "tenant-node");
        assert_eq!(body["connector"], NODE_CLIENT);
    }
    // The same token as Bearer, with no proof: refused.
    let bound = tokens.token().await.unwrap();
    let response = http()
        .get(&plane.actions_url)
        .bearer_auth(bound.secret().as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    node.stop().await;
}

/// The agent's token file, copied by a thief, is useless without the key;
/// the connector holding the key keeps polling. node-oidc-provider's tokens;
/// the connector signs its proofs with our library, `connector-token proof`
/// and docs/connector-token.md's Python.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_stolen_from_the_token_file_is_refused_while_the_connector_keeps_polling() {
    let node = NodeIssuer::start_with_dpop(AUDIENCE, "org-node").await;
    let dir = Scratch::new("dpop-client");
    let plane = control_plane(&node, &dir).await;
    let secret = dir.path("secret");
    std::fs::write(&secret, NODE_SECRET).unwrap();
    let credentials = [
        "--issuer".as_ref(),
        node.issuer.as_ref(),
        "--client-id".as_ref(),
        NODE_CLIENT.as_ref(),
        "--scope".as_ref(),
        "actions:read".as_ref(),
        "--client-secret-file".as_ref(),
        secret.as_os_str(),
    ];
    let (_agent, out, key_out) = dpop_agent(&dir, &credentials).await;

    let key = DpopKey::from_pem(&std::fs::read_to_string(&key_out).unwrap()).unwrap();
    let thief = DpopKey::generate().unwrap();
    let poll_url = &plane.actions_url;
    for _ in 0..3 {
        only_the_key_holder_polls(&out, &key, &thief, poll_url).await;
    }
    // `connector-token proof` makes the same proofs for a shell.
    let output = e2e::connector_command(e2e::connector_token_binary())
        .args(["proof", "--htm", "GET", "--htu", &format!("{poll_url}?wait=5")])
        .arg("--token-file")
        .arg(&out)
        .arg("--dpop-key")
        .arg(&key_out)
        .env_remove("CONNECTOR_DPOP_KEY_FILE")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let proof = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let token = std::fs::read_to_string(&out).unwrap();
    assert_eq!(poll(poll_url, &token, "DPoP", Some(proof)).await, 200);

    // docs/connector-token.md's Python proof (PyJWT), with the agent's key file.
    let docs = std::fs::read_to_string(e2e::workspace_path("docs/connector-token.md")).unwrap();
    let python = docs
        .split("```python\n")
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("def dpop_proof"))
        .expect("docs/connector-token.md has the Python proof");
    let script = format!(
        "{python}\nimport sys\nprint(dpop_proof(sys.argv[1], sys.argv[2], open(sys.argv[3]).read(), sys.argv[4]))\n"
    );
    let (token_path, key_path) = (out.to_str().unwrap(), key_out.to_str().unwrap());
    let url = format!("{poll_url}?wait=5");
    let printed = e2e::tools::run_python(&script, &["GET", &url, token_path, key_path]).await;
    assert_eq!(printed.code, 0, "{}", printed.stderr);
    let token = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        poll(poll_url, &token, "DPoP", Some(printed.stdout.trim().to_owned())).await,
        200
    );
    node.stop().await;
}

/// The same theft against our own token server: `connector-token agent`
/// is [`DPOP_CLIENT`] (`dpop = "required"`) with tokens of 4 s, the example
/// control plane verifies by discovery with `--require-dpop`. Every token
/// is ours and bound to the agent's key; over several refreshes the
/// connector's polls succeed while each token copied from the file is
/// refused without the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_our_server_stolen_from_the_token_file_is_refused_while_the_connector_keeps_polling() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&format!(
        "{}\n[tokens]\ndefault_ttl_secs = 4\nmax_ttl_secs = 900\n{}",
        test_config(&jwks),
        dpop_required_connector()
    ))
    .await;
    let plane =
        ControlPlane::start(&["--issuer", &server.url, "--audience", AUDIENCE, "--require-dpop"]).await;
    let dir = Scratch::new("dpop-client");
    let secret = dir.path("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let credentials = [
        "--issuer".as_ref(),
        server.url.as_ref(),
        "--client-id".as_ref(),
        DPOP_CLIENT.as_ref(),
        "--client-secret-file".as_ref(),
        secret.as_os_str(),
    ];
    let (_agent, out, key_out) = dpop_agent(&dir, &credentials).await;

    let key = DpopKey::from_pem(&std::fs::read_to_string(&key_out).unwrap()).unwrap();
    let thief = DpopKey::generate().unwrap();
    let mut seen = BTreeSet::new();
    // Tokens of 4 s are refreshed every 1.8–2 s: several tokens in 6 s.
    for _ in 0..12 {
        let token = only_the_key_holder_polls(&out, &key, &thief, &plane.actions_url).await;
        if seen.insert(token.clone()) {
            let claims = server.verify(&token).await;
            assert_eq!(claims.sub, DPOP_CLIENT);
            assert_eq!(
                claims.cnf.and_then(|cnf| cnf.jkt).as_deref(),
                Some(key.thumbprint()),
                "bound to the agent's key"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(seen.len() >= 2, "no refresh in 6 s: {} token(s)", seen.len());
    // Without a proof the token endpoint refuses this connector: no bearer
    // token to steal in the first place.
    let response = http()
        .post(server.token_url())
        .basic_auth(DPOP_CLIENT, Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
}

#[derive(Clone)]
struct NonceState {
    verifier: SharedVerifier,
    dpop: SharedDpop,
}

impl FromRef<NonceState> for SharedVerifier {
    fn from_ref(state: &NonceState) -> Self {
        state.verifier.clone()
    }
}

impl FromRef<NonceState> for SharedDpop {
    fn from_ref(state: &NonceState) -> Self {
        state.dpop.clone()
    }
}

async fn nonce_poll(DpopToken(request): DpopToken<AccessTokenClaims>) -> String {
    request.token().claims().sub.clone()
}

/// A resource server that demands its nonce (oidc-core's extractor with
/// `DpopNonces`): the middleware's first request is answered
/// `use_dpop_nonce`, its one retry with the nonce succeeds, and later
/// requests carry the nonce at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middleware_retries_once_with_a_resource_servers_nonce() {
    let node = NodeIssuer::start_with_dpop(AUDIENCE, "org-node").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU64::new(0));
    let policy = Policy::builder(node.issuer.clone(), [AUDIENCE.to_owned()])
        .dpop(DpopMode::Required)
        .build()
        .unwrap();
    let proofs = DpopVerifier::builder()
        .nonces(DpopNonces::generate(Duration::from_secs(60)).unwrap())
        .build()
        .unwrap();
    let state = NonceState {
        verifier: shared_verifier(
            policy,
            RemoteJwks::discovery(node.issuer.clone()).build().unwrap(),
        ),
        dpop: Arc::new(DpopResource::new(&origin, proofs).unwrap()),
    };
    let counted = requests.clone();
    let app = Router::new()
        .route("/v1/actions", get(nonce_poll))
        .with_state(state)
        .layer(axum::middleware::from_fn(
            move |request, next: axum::middleware::Next| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move { next.run(request).await }
            },
        ));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let tokens = CachedTokenSource::new(node_source(&node, Arc::new(DpopKey::generate().unwrap()))).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(http())
        .with(BearerAuth::new(tokens))
        .build();
    let response = client.get(format!("{origin}/v1/actions")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), NODE_CLIENT);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "use_dpop_nonce, then the retry"
    );
    let response = client.get(format!("{origin}/v1/actions")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(requests.load(Ordering::SeqCst), 3, "the nonce is remembered");
    node.stop().await;
}
