//! Many issuers, end to end: a registry of trusted issuers (read from a trust
//! file) over three live token services — two oidc-server instances with
//! their own keys and a third issuer nobody here wrote, node-oidc-provider —
//! and one registered issuer that is down. Also the `control_plane` example
//! with `--trust FILE`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::control_plane::ControlPlane;
use e2e::node_issuer::NodeIssuer;
use e2e::{client_key, http, test_config, TestServer, AUDIENCE, OTHER_AUDIENCE, SECRET, SECRET_CLIENT};
use futures_util::FutureExt as _;
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::verify::trust::TrustedIssuers;
use oidc_core::{AccessTokenClaims, Algorithm, Issuer, KeySet, Lifetime, TokenRequest, VerifyError};
use serde_json::Value;

/// The live issuers and the dead one, with a trust file naming all four.
struct Fleet {
    a: TestServer,
    b: TestServer,
    node: NodeIssuer,
    down: String,
    dir: PathBuf,
}

impl Fleet {
    async fn start() -> Self {
        let (_key, jwks) = client_key(Algorithm::ES256);
        // Each server generates its own signing key; b's connector belongs to org-2.
        let a = TestServer::start(&test_config(&jwks)).await;
        let b = TestServer::start(&test_config(&jwks).replace("org-1", "org-2")).await;
        let node = NodeIssuer::start(AUDIENCE, "org-node").await;
        // A port nothing listens on any more.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let down = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let dir = std::env::temp_dir().join(format!("e2e-trust-{}-{:p}", std::process::id(), &a));
        std::fs::create_dir_all(&dir).unwrap();
        let fleet = Self {
            a,
            b,
            node,
            down,
            dir,
        };
        std::fs::write(fleet.trust_file(), fleet.trust_toml("org-1")).unwrap();
        fleet
    }

    fn trust_file(&self) -> PathBuf {
        self.dir.join("trust.toml")
    }

    /// The trust file, with `a_org` as the org_id server a's tokens must carry.
    fn trust_toml(&self, a_org: &str) -> String {
        let entry = |name: &str, issuer: &str, org: &str| {
            format!(
                "[[issuers]]\nname = \"{name}\"\nissuer = \"{issuer}\"\naudiences = [\"{AUDIENCE}\"]\n\
                 algorithms = [\"ES256\"]\nrequired_claims = {{ org_id = \"{org}\" }}\n\n"
            )
        };
        [
            entry("tenant-a", &self.a.url, a_org),
            entry("tenant-b", &self.b.url, "org-2"),
            entry("tenant-node", &self.node.issuer, "org-node"),
            entry("tenant-down", &self.down, "org-down"),
        ]
        .concat()
    }

    fn registry(&self) -> TrustedIssuers {
        TrustedIssuers::from_toml_file(self.trust_file())
            .unwrap()
            .build()
            .unwrap()
    }

    async fn stop(self) {
        self.node.stop().await;
        self.a.stop().await;
        self.b.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A token claiming `iss`, signed by a key nobody publishes.
async fn token_claiming(iss: &str) -> String {
    let (signer, _) = LocalSigner::generate(Algorithm::ES256).unwrap();
    let keys: Arc<dyn Signer> = Arc::new(signer);
    let issuer = Issuer::new(iss, Arc::new(KeySet::single(keys)), Lifetime::default()).unwrap();
    let mut request = TokenRequest::new(SECRET_CLIENT, AUDIENCE);
    request.attributes.insert("org_id", "org-down".into()).unwrap();
    issuer.issue(&request).await.unwrap().token.into_string()
}

async fn verify(trusted: &TrustedIssuers, token: &str) -> Result<String, VerifyError> {
    trusted
        .verify::<AccessTokenClaims>(token)
        .await
        .map(|t| t.issuer_name().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_live_issuers_verify_while_a_fourth_is_down() {
    let fleet = Fleet::start().await;
    let trusted = fleet.registry();
    let tokens = [
        ("tenant-a", fleet.a.token().await),
        ("tenant-b", fleet.b.token().await),
        ("tenant-node", fleet.node.token().await),
    ];
    for (name, token) in &tokens {
        assert_eq!(
            verify(&trusted, token)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}")),
            *name
        );
    }
    // The down issuer: an availability error that says why.
    let down_token = token_claiming(&fleet.down).await;
    let error = trusted
        .verify::<AccessTokenClaims>(&down_token)
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "keys_unavailable", "{error}");
    assert!(error.to_string().contains("request to"), "{error}");

    // While it stays down, its tokens fail at once and the others verify at
    // full speed: every verification below completes on its first poll, so
    // none waits for the network, the dead issuer's or any other.
    for _ in 0..200 {
        let refused = verify(&trusted, &down_token)
            .now_or_never()
            .expect("no wait for the down issuer");
        assert_eq!(refused.unwrap_err().reason(), "keys_unavailable");
        for (name, token) in &tokens {
            let verified = verify(&trusted, token)
                .now_or_never()
                .expect("no wait for a live issuer");
            assert_eq!(verified.unwrap(), *name);
        }
    }
    for server in [&fleet.a, &fleet.b] {
        assert_eq!(
            server.route_requests("/.well-known/jwks.json"),
            1,
            "one JWKS fetch"
        );
        assert_eq!(server.route_requests("/.well-known/openid-configuration"), 1);
    }
    let status = trusted.issuer_status("tenant-down").unwrap();
    assert_eq!((status.verified, status.refused), (0, 201));
    let stats = trusted.stats();
    assert_eq!((stats.cached_issuers, stats.unknown_issuer_refusals), (4, 0));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_confused_issuers_are_refused() {
    let fleet = Fleet::start().await;
    let trusted = fleet.registry();
    verify(&trusted, &fleet.a.token().await).await.unwrap();

    // A real token service that is not registered: refused, and never contacted.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stranger_url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let accepting = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let (_key, jwks) = client_key(Algorithm::ES256);
    let config = test_config(&jwks);
    let stranger = TestServer::builder(&config).issuer(&stranger_url).start().await;
    let error = verify(&trusted, &stranger.token().await).await.unwrap_err();
    assert_eq!(error.reason(), "unknown_issuer");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no connection to the stranger's iss"
    );
    accepting.abort();

    // Issuer a's iss, signed by another server's key: only a's keys apply.
    let impostor = TestServer::builder(&config).issuer(&fleet.a.url).start().await;
    let error = verify(&trusted, &impostor.token().await).await.unwrap_err();
    assert_eq!(error.reason(), "unknown_kid", "{error}");
    // a's token for an audience a's entry does not accept.
    let response = http()
        .post(fleet.a.token_url())
        .basic_auth(SECRET_CLIENT, Some(SECRET))
        .form(&[("grant_type", "client_credentials"), ("audience", OTHER_AUDIENCE)])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let other_audience = body["access_token"].as_str().unwrap();
    assert_eq!(
        verify(&trusted, other_audience).await.unwrap_err().reason(),
        "wrong_audience"
    );
    // a's genuine token where a's entry requires another org_id.
    std::fs::write(fleet.trust_file(), fleet.trust_toml("org-9")).unwrap();
    let strict = fleet.registry();
    let error = verify(&strict, &fleet.a.token().await).await.unwrap_err();
    assert_eq!(error.reason(), "required_claim", "{error}");
    // node-oidc-provider's token is only ever node's.
    assert_eq!(
        verify(&strict, &fleet.node.token().await).await.unwrap(),
        "tenant-node"
    );
    impostor.stop().await;
    stranger.stop().await;
    fleet.stop().await;
}

/// The `control_plane` example with `--trust FILE` and a verification cache:
/// each poll answered with the name of the entry that vouched for the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_control_plane_trusts_a_file() {
    let fleet = Fleet::start().await;
    let trust_file = fleet.trust_file();
    let control_plane = ControlPlane::start(&[
        "--trust".as_ref(),
        trust_file.as_os_str(),
        "--verification-cache".as_ref(),
        "1000".as_ref(),
    ])
    .await;
    let poll = |token: String| {
        let url = control_plane.actions_url.clone();
        async move {
            let response = http().get(url).bearer_auth(token).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    // Each token twice: the second poll is served by the verification cache.
    let tokens = [
        ("tenant-a", fleet.a.token().await),
        ("tenant-node", fleet.node.token().await),
    ];
    for (name, token) in tokens {
        for _ in 0..2 {
            let (status, body) = poll(token.clone()).await;
            assert_eq!(status, 200, "{body}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["issuer"], name);
        }
    }
    let (status, body) = poll(token_claiming("https://stranger.example").await).await;
    assert_eq!((status, body.as_str()), (401, ""));
    fleet.stop().await;
}
