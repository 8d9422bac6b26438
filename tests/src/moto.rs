//! The AWS emulator: `moto_server` (PyPI `moto[server]`, installed by
//! `scripts/test.sh` into `.venv/`) on a free loopback port, and SDK
//! configurations pointing at it with dummy credentials.
//!
//! The emulator runs under `sh`, which kills it as soon as its standard input
//! closes: when the [`Moto`] is dropped or the test process exits, even on a
//! panic, so no emulator outlives its tests.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::Credentials;

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// A running `moto_server`.
pub struct Moto {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Option<Child>,
}

/// The `moto_server` executable: `E2E_MOTO_SERVER`, else `.venv/bin/moto_server`.
pub fn moto_server() -> PathBuf {
    let path = std::env::var_os("E2E_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_path(".venv/bin/moto_server"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it installs moto[server] into .venv)",
        path.display()
    );
    path
}

/// A free port on 127.0.0.1 (free when asked; the emulator binds it next).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl Moto {
    /// One emulator shared by every test of this process (tests use unique
    /// key aliases and secret names, so they do not see each other).
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(|| Moto::start_on(free_port()))
    }

    /// A new emulator of its own (for tests that stop it).
    pub fn start() -> Moto {
        Self::start_on(free_port())
    }

    /// A new emulator on `port` (e.g. to restart one where it was).
    pub fn start_on(port: u16) -> Moto {
        Self::start_with_env(port, &[])
    }

    /// A new emulator on `port` with extra environment, e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT` to turn on SigV4 and IAM checks after
    /// that many unauthenticated setup calls.
    pub fn start_with_env(port: u16, env: &[(&str, &str)]) -> Moto {
        let server = moto_server();
        let log = std::env::temp_dir().join(format!("e2e-moto-{port}.log"));
        let script = format!(
            "'{}' -H 127.0.0.1 -p {port} >'{}' 2>&1 & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid",
            server.display(),
            log.display()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 30 s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// An SDK configuration for this emulator (dummy credentials).
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint).await
    }

    /// Environment for a child process using the standard AWS chain against it.
    pub fn env(&self) -> Vec<(String, String)> {
        env_for(&self.endpoint)
    }

    /// Stops the emulator and waits for it to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing stdin ends `cat`; the script then kills the server.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An SDK configuration for an endpoint (the emulator or a proxy in front of it).
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "e2e"))
        .http_client(oidc_core::aws::https_client())
        .load()
        .await
}

/// Environment for a child process whose standard AWS chain reaches `endpoint`.
pub fn env_for(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A unique name for keys and secrets of one test.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates an asymmetric signing key (`ECC_NIST_P256`, `RSA_2048`, ...) and
/// an alias for it; returns the alias (`alias/...`).
pub async fn create_signing_key(config: &SdkConfig, key_spec: &str) -> String {
    let kms = aws_sdk_kms::Client::new(config);
    let key = kms
        .create_key()
        .key_spec(key_spec.into())
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .expect("CreateKey");
    let key_id = key.key_metadata().expect("metadata").key_id().to_owned();
    let alias = format!("alias/{}", unique("e2e"));
    kms.create_alias()
        .alias_name(&alias)
        .target_key_id(&key_id)
        .send()
        .await
        .expect("CreateAlias");
    alias
}

/// Creates a symmetric encryption key; returns its key id.
pub async fn create_symmetric_key(config: &SdkConfig) -> String {
    let kms = aws_sdk_kms::Client::new(config);
    let key = kms.create_key().send().await.expect("CreateKey");
    key.key_metadata().expect("metadata").key_id().to_owned()
}

/// Creates a replay table the way the CloudFormation stack does (partition
/// key `pk` of type String, on-demand); returns its name.
pub async fn create_replay_table(config: &SdkConfig) -> String {
    create_table(config, &[("pk", "S", "HASH")]).await
}

/// Creates a table with `keys` (`(attribute, type, HASH|RANGE)`), e.g. one
/// whose schema the server must refuse; returns its name.
pub async fn create_table(config: &SdkConfig, keys: &[(&str, &str, &str)]) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let name = unique("e2e-replay");
    let mut create = aws_sdk_dynamodb::Client::new(config)
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attribute, kind, key) in keys {
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attribute)
                    .attribute_type(ScalarAttributeType::from(*kind))
                    .build()
                    .expect("attribute definition"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*attribute)
                    .key_type(KeyType::from(*key))
                    .build()
                    .expect("key schema element"),
            );
    }
    create.send().await.expect("CreateTable");
    name
}

/// The partition keys of every item in `table` (a scan; test tables are small).
pub async fn replay_items(config: &SdkConfig, table: &str) -> Vec<(String, u64)> {
    let output = aws_sdk_dynamodb::Client::new(config)
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("Scan");
    output
        .items()
        .iter()
        .map(|item| {
            let pk = item["pk"].as_s().expect("pk is a string").clone();
            let until = item["expires_at"]
                .as_n()
                .expect("expires_at is a number")
                .parse()
                .expect("whole seconds");
            (pk, until)
        })
        .collect()
}

/// `[replay]` for `table`, to append to a test configuration.
pub fn replay_section(table: &str) -> String {
    format!("\n[replay]\nstore = \"dynamodb\"\ntable = \"{table}\"\ncall_timeout_ms = 500\n")
}
