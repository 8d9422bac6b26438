//! Shared helpers for the end-to-end tests: start the token server on an
//! ephemeral loopback port, build test configurations, reach the third-party
//! verifiers installed by `scripts/test.sh`.
//!
//! Every test binary uses these instead of starting servers its own way.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use fixture::StateSetup;
use oidc_core::clock::WallClock;
use oidc_core::{Algorithm, KeySet};
use oidc_server::config::Overrides;
use oidc_server::AppState;
use oidc_server::ServiceContext;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod cli;
pub mod control_plane;
pub mod fault_proxy;
pub mod lambda_runtime;
pub mod load;
pub mod moto;
pub mod node_issuer;
pub mod scratch;
pub mod sim;
pub mod stack;
pub mod sts_web_identity;
pub mod tools;
pub mod upstream_idp;

// The test connectors, their configuration, the router state and client
// assertions: one file shared with oidc-server's own tests, which cannot
// depend on this package (see the file's documentation). Its items are `pub`
// because it is compiled in two crates; what is not re-exported here (the
// state builder) is used by `TestServerBuilder`.
#[allow(unreachable_pub)]
#[path = "../../oidc-server/tests/it/support/fixture.rs"]
mod fixture;

// An in-memory writer and the tracing events of a future: shared with
// oidc-server's tests in the same way.
#[allow(unreachable_pub)]
#[path = "../../oidc-server/tests/it/support/capture.rs"]
pub mod capture;

pub use fixture::{
    assertion, client_key, dpop_required_connector, good_claims, now, test_config, AUDIENCE, DPOP_CLIENT,
    JWT_BEARER, JWT_CLIENT, OTHER_AUDIENCE, SECRET, SECRET_CLIENT,
};

/// A token server running on 127.0.0.1 with an ephemeral port.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its issuer and base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its state (key set, metrics, ...).
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Builds a [`TestServer`]: `TestServer::builder(toml).keys(..).clock(..)
/// .context(..).issuer(..).at(addr).start().await`, every part optional.
#[must_use]
pub struct TestServerBuilder {
    toml: String,
    setup: StateSetup,
    issuer: Option<String>,
    at: Option<SocketAddr>,
}

impl TestServerBuilder {
    /// Signs with `keys` instead of the keys the config describes.
    pub fn keys(mut self, keys: Arc<KeySet>) -> Self {
        self.setup.keys = Some(keys);
        self
    }

    /// Uses `clock` for tokens and assertions instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.setup.clock = Some(clock);
        self
    }

    /// Builds the keys with `context` (an SDK configuration for the
    /// emulator, shared metrics).
    pub fn context(mut self, context: ServiceContext) -> Self {
        self.setup.context = context;
        self
    }

    /// Records one-time uses in `replay` instead of the store the config
    /// asks for (a store the test holds, to look into).
    pub fn replay_store(mut self, replay: Arc<dyn oidc_server::replay::ReplayStore>) -> Self {
        self.setup.replay = Some(replay);
        self
    }

    /// Uses `issuer` as the `iss` instead of the server's own URL (replicas
    /// of one issuer).
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// Listens on `addr`, the address of a server that was stopped: the same
    /// token endpoint coming back after an outage. Binding is retried for a
    /// while, in case the port is briefly held.
    pub fn at(mut self, addr: SocketAddr) -> Self {
        self.at = Some(addr);
        self
    }

    /// Binds, builds the state and serves until the server is stopped or dropped.
    pub async fn start(self) -> TestServer {
        let listener = match self.at {
            Some(addr) => bind_again(addr).await,
            None => TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind an ephemeral port"),
        };
        let addr = listener.local_addr().expect("local address");
        let url = format!("http://{addr}");
        let overrides = Overrides {
            listen: Some(addr.to_string()),
            issuer: Some(self.issuer.unwrap_or_else(|| url.clone())),
        };
        let state = fixture::app_state(&self.toml, &overrides, self.setup).await;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(oidc_server::run(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            url,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }
}

async fn bind_again(addr: SocketAddr) -> TcpListener {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot bind {addr} again: {e}"),
        }
    }
}

impl TestServer {
    /// Starts a server with `toml` as its configuration: the shorthand for
    /// `TestServer::builder(toml).start()`.
    pub async fn start(toml: &str) -> TestServer {
        Self::builder(toml).start().await
    }

    /// Two replicas of one issuer with `toml` as their configuration, each
    /// with its own AWS SDK configuration for `sdk` (moto's endpoint, or a
    /// shared config): B serves A's issuer, as two tasks or Lambda
    /// environments behind one URL do.
    pub async fn replicas(toml: &str, sdk: &aws_config::SdkConfig) -> (TestServer, TestServer) {
        let context = || oidc_server::ServiceContext {
            sdk_config: Some(sdk.clone()),
            ..Default::default()
        };
        let a = Self::builder(toml).context(context()).start().await;
        let b = Self::builder(toml)
            .context(context())
            .issuer(&a.url)
            .start()
            .await;
        (a, b)
    }

    /// A server with `toml` as its configuration; its `issuer` and `listen`
    /// are set by the harness.
    pub fn builder(toml: &str) -> TestServerBuilder {
        TestServerBuilder {
            toml: toml.to_owned(),
            setup: StateSetup::default(),
            issuer: None,
            at: None,
        }
    }

    /// The token endpoint URL.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// `GET` of a path of this server, as text (any status).
    pub async fn get_text(&self, path: &str) -> String {
        http()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
    }

    /// `GET` of a path of this server, as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.get_text(path).await).expect("a JSON body")
    }

    /// Asks for a token as [`SECRET_CLIENT`] (`client_secret_basic`); returns
    /// the status, the JSON body and `Retry-After`.
    pub async fn request_token(&self) -> (u16, serde_json::Value, Option<String>) {
        let response = http()
            .post(self.token_url())
            .basic_auth(SECRET_CLIENT, Some(SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
            retry_after,
        )
    }

    /// A token for [`SECRET_CLIENT`], or a panic with the error body.
    pub async fn token(&self) -> String {
        let (status, body, _) = self.request_token().await;
        assert_eq!(status, 200, "token request failed: {body}");
        body["access_token"].as_str().expect("access_token").to_owned()
    }

    /// Verifies `token` with oidc-core against this server's JWKS as served
    /// now (policy: this issuer, [`AUDIENCE`]); panics with the reason if refused.
    pub async fn verify(&self, token: &str) -> oidc_core::AccessTokenClaims {
        let jwks = http()
            .get(self.jwks_url())
            .send()
            .await
            .expect("JWKS request")
            .bytes()
            .await
            .expect("JWKS body");
        let keys = oidc_core::JwkSet::from_json(&jwks).expect("JWKS");
        let policy = oidc_core::Policy::builder(self.state.config().issuer.clone(), [AUDIENCE])
            .build()
            .expect("policy");
        oidc_core::Verifier::new(policy, keys)
            .verify::<oidc_core::AccessTokenClaims>(token)
            .await
            .unwrap_or_else(|e| panic!("oidc-core refused the token: {e}"))
            .into_claims()
    }

    /// Access tokens issued so far (the server's `oidc_server_tokens_issued_total`).
    pub fn tokens_issued(&self) -> u64 {
        let metrics = self.state.metrics().render();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("oidc_server_tokens_issued_total "))
            .map_or(0, |n| n.trim().parse().expect("a counter"))
    }

    /// Requests answered on `POST /token` so far, whatever their status (the
    /// server's request-latency histogram counts them as the response leaves).
    pub fn token_requests(&self) -> u64 {
        self.route_requests("/token")
    }

    /// Requests answered on `route` (for example `/.well-known/jwks.json`)
    /// so far, whatever their status and method.
    pub fn route_requests(&self, route: &str) -> u64 {
        let metrics = self.state.metrics().render();
        let label = format!("route=\"{route}\"");
        metrics
            .lines()
            .filter_map(|line| line.strip_prefix("oidc_server_http_request_duration_seconds_count{"))
            .filter_map(|rest| rest.split_once("} "))
            .filter(|(labels, _)| labels.split(',').any(|l| l == label))
            .map(|(_, n)| n.trim().parse::<u64>().expect("a count"))
            .sum()
    }

    /// Stops accepting, finishes requests in flight, and waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// [`test_config`] with another `[signing]` section (TOML text starting with `[signing]`).
pub fn test_config_with_signing(signing: &str) -> String {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let config = test_config(&jwks);
    let local = "[signing]\nkind = \"local\"\ngenerate = \"ES256\"\n";
    assert!(config.contains(local));
    config.replace(local, signing)
}

/// The path of a folder of the workspace.
pub fn workspace_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// An HTTP client configured like every client of the workspace.
pub fn http() -> reqwest::Client {
    oidc_core::http::client_builder()
        .expect("TLS setup")
        .build()
        .expect("HTTP client")
}

/// The cargo arguments that build every binary and example the tests run.
/// `scripts/test.sh` runs `cargo build` with exactly these before the tests,
/// so [`built_executable`] finds everything up to date: one feature set for
/// all of them (building one `--bin` alone resolves features differently
/// and would compile and link again while the tests run).
pub const EXECUTABLES_BUILD_ARGS: [&str; 5] =
    ["build", "--workspace", "--all-features", "--bins", "--examples"];

/// A command for `program` (one of the connector's binaries) that inherits
/// nothing that could configure it: no `CONNECTOR_*` variable, no
/// `RUST_LOG`; killed when dropped. Tests add what they mean to set.
pub fn connector_command(program: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONNECTOR_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG").kill_on_drop(true);
    command
}

/// The `connector-token` binary, built once per test run (by the first
/// caller; call it from `spawn_blocking` in async tests, since it may build).
pub fn connector_token_binary() -> &'static std::path::Path {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| built_executable(&["--bin", "connector-token"], "connector-token"))
}

/// Returns the path of a binary or example of the workspace, built with the
/// same profile and target folder as the running tests and with
/// [`EXECUTABLES_BUILD_ARGS`] (a no-op when the test command built them
/// already). `what` says which kind it is, e.g. `["--example", "get-token"]`
/// or `["--bin", "oidc-server"]`.
pub fn built_executable(what: &[&str], name: &str) -> PathBuf {
    let kind = match what.first() {
        Some(&"--example") => "example",
        _ => "bin",
    };
    let mut command = std::process::Command::new(env!("CARGO"));
    command
        .current_dir(workspace_path(""))
        .args(EXECUTABLES_BUILD_ARGS)
        .arg("--message-format=json-render-diagnostics");
    // Tests run from <target>/<profile>/deps/; cargo marks <target> with CACHEDIR.TAG.
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("profile folder");
    if let Some(target_dir) = profile_dir
        .parent()
        .filter(|dir| dir.join("CACHEDIR.TAG").is_file())
    {
        command.arg("--target-dir").arg(target_dir);
    }
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    let output = command.output().expect("run cargo");
    assert!(
        output.status.success(),
        "cargo could not build {name}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let executable = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact"
                && message["target"]["name"] == name
                && message["target"]["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k == kind))
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo names no executable {name}"));
    assert!(executable.is_file(), "{} is missing", executable.display());
    executable
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_test_command_builds_the_executables_as_the_tests_ask() {
        let script =
            std::fs::read_to_string(super::workspace_path("scripts/test.sh")).expect("scripts/test.sh");
        let build = format!("cargo {}\n", super::EXECUTABLES_BUILD_ARGS.join(" "));
        assert!(
            script.contains(&build),
            "scripts/test.sh must run `{}` before the tests",
            build.trim()
        );
    }
}
