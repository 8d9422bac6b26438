//! DPoP (RFC 9449) from the connector's side, against software nobody here
//! wrote: node-oidc-provider with DPoP on (client_credentials, a resource
//! indicator so that it issues JWT access tokens, nonces required) issues
//! DPoP-bound tokens to our `ClientCredentials` (proofs from our client, one
//! retry with node's nonce); the example control plane with a trust entry
//! `dpop = "required"` for node's issuer accepts them with our middleware's
//! proofs. The stolen-token test: `connector-token agent --dpop` keeps its
//! token file fresh and its key in `--dpop-key-out`; polls with the key
//! succeed while the token copied from the file, without the key (as
//! `Bearer`, or as `DPoP` with a proof of another key), is refused. And the
//! middleware's one retry with a resource server's `DPoP-Nonce`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use connector_client::{
    BearerAuth, CachedTokenSource, ClientAuth, ClientCredentials, ClientSecret, DpopKey, DpopProof, Endpoint,
    TokenSource, TokenType,
};
use e2e::node_issuer::{NodeIssuer, CLIENT as NODE_CLIENT, SECRET as NODE_SECRET};
use e2e::{http, AUDIENCE};
use oidc_core::axum::{shared_verifier, DpopResource, DpopToken, SharedDpop, SharedVerifier};
use oidc_core::dpop::{DpopMode, DpopNonces, DpopVerifier};
use oidc_core::verify::RemoteJwks;
use oidc_core::{AccessTokenClaims, Policy};
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

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "e2e-dpop-client-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct ChildGuard(tokio::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

async fn wait_for(address: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {address}");
}

/// The example control plane trusting node's issuer with `dpop = "required"`.
async fn control_plane(node: &NodeIssuer, dir: &Scratch) -> (ChildGuard, String) {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    let binary = match BINARY.get() {
        Some(binary) => binary.clone(),
        None => {
            let built = tokio::task::spawn_blocking(|| {
                e2e::built_executable(&["--example", "control_plane"], "control_plane")
            })
            .await
            .unwrap();
            BINARY.get_or_init(|| built).clone()
        }
    };
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
    let listen = free_address();
    let child = tokio::process::Command::new(&binary)
        .args([
            "--trust".as_ref(),
            trust.as_os_str(),
            "--listen".as_ref(),
            listen.as_ref(),
        ])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for(&listen).await;
    (ChildGuard(child), format!("http://{listen}"))
}

fn connector_token_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| e2e::built_executable(&["--bin", "connector-token"], "connector-token"))
}

/// Our connector-client gets a DPoP-bound JWT access token from
/// node-oidc-provider (retrying once with node's nonce) and polls the
/// example control plane through `BearerAuth`; our verifier accepts node's
/// token with our proofs, and refuses it as `Bearer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_oidc_provider_binds_our_token_and_our_verifier_accepts_our_proofs() {
    let node = NodeIssuer::start_with_dpop(AUDIENCE, "org-node").await;
    let dir = Scratch::new();
    let (_plane, plane_url) = control_plane(&node, &dir).await;
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
            .get(format!("{plane_url}/v1/actions?wait=1"))
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
        .get(format!("{plane_url}/v1/actions"))
        .bearer_auth(bound.secret().as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    node.stop().await;
}

/// The agent's token file, copied by a thief, is useless without the key;
/// the connector holding the key keeps polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_stolen_from_the_token_file_is_refused_while_the_connector_keeps_polling() {
    let node = NodeIssuer::start_with_dpop(AUDIENCE, "org-node").await;
    let dir = Scratch::new();
    let (_plane, plane_url) = control_plane(&node, &dir).await;
    let secret = dir.path("secret");
    std::fs::write(&secret, NODE_SECRET).unwrap();
    let (out, key_out) = (dir.path("token"), dir.path("dpop.pem"));
    let binary = connector_token_binary().to_owned();
    let mut command = tokio::process::Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONNECTOR_") {
            command.env_remove(name);
        }
    }
    command
        .args([
            "agent",
            "--issuer",
            &node.issuer,
            "--client-id",
            NODE_CLIENT,
            "--scope",
            "actions:read",
        ])
        .arg("--client-secret-file")
        .arg(&secret)
        .arg("--out")
        .arg(&out)
        .arg("--dpop-key-out")
        .arg(&key_out)
        .env("CONNECTOR_DPOP", "true")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let _agent = ChildGuard(command.spawn().unwrap());
    for _ in 0..300 {
        if out.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(out.exists(), "the agent wrote no token file");
    // The info file tells a reader in any language to send it as DPoP.
    let info = dir.path("token.json");
    for _ in 0..100 {
        if info.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info: Value = serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    assert_eq!(info["token_type"], "DPoP", "{info}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key_out).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The connector: the token file and the key file, a fresh proof per poll.
    let key = DpopKey::from_pem(&std::fs::read_to_string(&key_out).unwrap()).unwrap();
    let poll_url = format!("{plane_url}/v1/actions");
    let poll = |token: String, scheme: &'static str, proof: Option<String>| {
        let url = poll_url.clone();
        async move {
            let mut request = http()
                .get(url)
                .header("authorization", format!("{scheme} {token}"));
            if let Some(proof) = proof {
                request = request.header("dpop", proof);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    let thief_key = DpopKey::generate().unwrap();
    for round in 0..3 {
        let token = std::fs::read_to_string(&out).unwrap();
        let proof = DpopProof::builder(&key, "GET", &poll_url)
            .access_token(&token)
            .sign()
            .unwrap();
        assert_eq!(
            poll(token.clone(), "DPoP", Some(proof.into_string())).await,
            200,
            "round {round}"
        );
        // The copied token, without the key.
        assert_eq!(poll(token.clone(), "Bearer", None).await, 401, "as Bearer");
        let forged = DpopProof::builder(&thief_key, "GET", &poll_url)
            .access_token(&token)
            .sign()
            .unwrap();
        assert_eq!(
            poll(token.clone(), "DPoP", Some(forged.into_string())).await,
            401,
            "another key's proof"
        );
        assert_eq!(poll(token, "DPoP", None).await, 401, "no proof");
    }
    // `connector-token proof` makes the same proofs for a shell.
    let output = tokio::process::Command::new(connector_token_binary())
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
    assert_eq!(poll(token, "DPoP", Some(proof)).await, 200);

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
        poll(token, "DPoP", Some(printed.stdout.trim().to_owned())).await,
        200
    );
    node.stop().await;
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
