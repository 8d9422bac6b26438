//! Configuration in layers: the embedded default (or a TOML file), then
//! environment variables, then command-line overrides; validated once into an
//! immutable [`Config`]. Validation reports every problem, each with the path
//! of the field and what to do.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oidc_core::claims::{self, Attributes};
use oidc_core::keys::LocalSigner;
use oidc_core::{Algorithm, JwkSet, Lifetime};
use serde::Deserialize;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "OIDC_SERVER_CONFIG";
/// Environment variable holding the whole config as TOML text (used when no
/// file is named; for platforms configured through the environment, like Lambda).
pub const CONFIG_TOML_ENV: &str = "OIDC_SERVER_CONFIG_TOML";
/// Prefix of environment variables that override fields: `OIDC_SERVER__TOKENS__MAX_TTL_SECS=600`
/// sets `tokens.max_ttl_secs`.
pub const ENV_PREFIX: &str = "OIDC_SERVER__";

const EMBEDDED_CONFIG: &str = include_str!("../../keys-example/config.toml");
const EMBEDDED_FILES: [(&str, &str); 2] = [
    ("dev-es256.pem", include_str!("../../keys-example/dev-es256.pem")),
    (
        "demo-connector.secret",
        include_str!("../../keys-example/demo-connector.secret"),
    ),
];
/// Where the embedded files came from, for messages (the demo curl command).
pub const KEYS_EXAMPLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../keys-example");

/// Where a configuration came from; relative paths inside it resolve against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The development default built into the binary (keys-example/).
    Embedded,
    /// A TOML file.
    File(PathBuf),
    /// The `OIDC_SERVER_CONFIG_TOML` environment variable; relative file names
    /// resolve against the working directory.
    Environment,
}

impl Origin {
    /// Reads a file named in the configuration.
    pub fn read(&self, name: &str) -> Result<String, String> {
        match self {
            Origin::Embedded => EMBEDDED_FILES
                .iter()
                .find(|(file, _)| *file == name)
                .map(|(_, text)| (*text).to_owned())
                .ok_or_else(|| format!("{name:?} is not one of the embedded keys-example files")),
            Origin::File(_) | Origin::Environment => {
                let dir = match self {
                    Origin::File(config) => config.parent().unwrap_or(Path::new(".")),
                    _ => Path::new("."),
                };
                let path = dir.join(name);
                std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
            }
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Embedded => f.write_str("the embedded development default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Environment => write!(f, "${CONFIG_TOML_ENV}"),
        }
    }
}

/// Overrides from the command line (`serve --listen --issuer`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Listen address.
    pub listen: Option<String>,
    /// Issuer URL.
    pub issuer: Option<String>,
}

/// The configuration file's shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: String,
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default)]
    tokens: TokensSection,
    signing: SigningSection,
    #[serde(default)]
    http: HttpSection,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    log: LogSection,
    aws_iam: Option<AwsIamSection>,
    #[serde(default)]
    connectors: Vec<ConnectorSection>,
}

/// `[aws_iam]`: client authentication with a signed `sts:GetCallerIdentity`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsIamSection {
    /// The STS endpoint requests are forwarded to (and nowhere else).
    sts_endpoint: String,
    #[serde(default = "default_sts_timeout")]
    timeout_secs: u64,
    #[serde(default = "default_max_clock_skew")]
    max_clock_skew_secs: u64,
}

fn default_sts_timeout() -> u64 {
    5
}

fn default_max_clock_skew() -> u64 {
    900
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TokensSection {
    default_ttl_secs: u64,
    max_ttl_secs: u64,
}

impl Default for TokensSection {
    fn default() -> Self {
        Self {
            default_ttl_secs: 300,
            max_ttl_secs: 900,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum SigningSection {
    Local {
        /// PKCS#8 PEM file, relative to the config file.
        key_file: Option<String>,
        /// Generate an ephemeral key of this algorithm at start (development).
        generate: Option<String>,
        /// For RSA keys: RS256 (default) or PS256.
        algorithm: Option<String>,
    },
    /// Every token signed by KMS `Sign`.
    Kms {
        /// One fixed key: key id, key ARN, alias name or alias ARN.
        key_id: Option<String>,
        /// Or a rotating key set: the Secrets Manager secret holding it.
        key_set_secret: Option<String>,
        /// For an RSA `key_id`: RS256 (default) or PS256.
        algorithm: Option<String>,
        /// Most KMS calls in flight at once.
        max_concurrency: Option<usize>,
        /// How often the key set is read.
        poll_interval_secs: Option<u64>,
        /// Longest one AWS call may take.
        call_timeout_ms: Option<u64>,
        /// Verifiers' clock leeway, added before a retiring key is removed.
        leeway_secs: Option<u64>,
    },
    /// Local signing with keys kept encrypted under KMS in a key-set secret.
    KmsEnvelope {
        /// The Secrets Manager secret holding the key set.
        key_set_secret: Option<String>,
        /// How often the key set is read.
        poll_interval_secs: Option<u64>,
        /// Longest one AWS call may take.
        call_timeout_ms: Option<u64>,
        /// Verifiers' clock leeway, added before a retiring key is removed.
        leeway_secs: Option<u64>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HttpSection {
    body_limit_bytes: usize,
    request_timeout_secs: u64,
    jwks_max_age_secs: u64,
    trust_forwarded_for: bool,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            body_limit_bytes: 16 * 1024,
            request_timeout_secs: 10,
            jwks_max_age_secs: 300,
            trust_forwarded_for: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AuthSection {
    assertion_max_lifetime_secs: u64,
    leeway_secs: u64,
    failure_limit: u32,
    failure_window_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            assertion_max_lifetime_secs: 300,
            leeway_secs: 30,
            failure_limit: 10,
            failure_window_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct LogSection {
    format: LogFormat,
    level: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectorSection {
    id: String,
    secret_sha256: Option<String>,
    jwks: Option<toml::Table>,
    jwks_file: Option<String>,
    audiences: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    default_scopes: Vec<String>,
    #[serde(default)]
    attributes: toml::Table,
    #[serde(default)]
    aws_principals: Vec<String>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Issuer URL: the exact `iss` of every token, and the base of every endpoint URL.
    pub issuer: String,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Token lifetimes.
    pub lifetime: Lifetime,
    /// How tokens are signed.
    pub signing: SigningConfig,
    /// HTTP limits.
    pub http: HttpConfig,
    /// Client authentication limits.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// AWS IAM client authentication, if enabled.
    pub aws_iam: Option<AwsIamConfig>,
    /// Registered connectors.
    pub connectors: Vec<ConnectorConfig>,
    /// Where this configuration came from.
    pub origin: Origin,
}

/// How tokens are signed.
#[derive(Debug, Clone)]
pub enum SigningConfig {
    /// A local key: loaded from PEM text, or generated at start.
    Local(LocalKey),
    /// KMS signs every token (`kind = "kms"`).
    Kms(KmsConfig),
    /// Keys kept encrypted under KMS, signing locally (`kind = "kms-envelope"`).
    KmsEnvelope(KeySetConfig),
}

/// `[signing] kind = "kms"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsConfig {
    /// One fixed key (id, ARN or alias), or
    pub key_id: Option<String>,
    /// a rotating key set.
    pub key_set: Option<KeySetConfig>,
    /// RS256 or PS256 for an RSA `key_id`; `None` follows the key.
    pub algorithm: Option<Algorithm>,
    /// Most KMS calls in flight at once.
    pub max_concurrency: usize,
    /// Longest one KMS call may take.
    pub call_timeout: Duration,
}

/// A key set kept in a Secrets Manager secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetConfig {
    /// The secret's name or ARN.
    pub secret: String,
    /// How often every replica reads it.
    pub poll_interval: Duration,
    /// Longest one AWS call may take.
    pub call_timeout: Duration,
    /// Verifiers' clock leeway.
    pub leeway: Duration,
}

/// Defaults of the AWS signing settings.
pub mod aws_defaults {
    /// `max_concurrency`.
    pub const MAX_CONCURRENCY: usize = 64;
    /// `poll_interval_secs`.
    pub const POLL_INTERVAL_SECS: u64 = 30;
    /// `call_timeout_ms`.
    pub const CALL_TIMEOUT_MS: u64 = 2000;
    /// `leeway_secs`: the verifiers' default leeway (30 s) with room for clock skew.
    pub const LEEWAY_SECS: u64 = 60;
}

impl Config {
    /// `serve --kms-key-id KEY`: signs every token with that KMS key; the
    /// rest of the configuration (and the KMS settings, if `[signing]` is
    /// already `kms`) stays as it is.
    pub fn with_kms_key_id(mut self, key_id: &str) -> Result<Config, ConfigError> {
        if key_id.trim().is_empty() {
            return Err(ConfigError::Invalid {
                origin: "--kms-key-id".into(),
                problems: vec![Problem {
                    field: "signing.key_id".into(),
                    message: "is empty; give a key id, key ARN or alias (alias/NAME)".into(),
                }],
            });
        }
        let mut kms = match self.signing {
            SigningConfig::Kms(kms) => kms,
            _ => KmsConfig {
                key_id: None,
                key_set: None,
                algorithm: None,
                max_concurrency: aws_defaults::MAX_CONCURRENCY,
                call_timeout: Duration::from_millis(aws_defaults::CALL_TIMEOUT_MS),
            },
        };
        kms.key_id = Some(key_id.to_owned());
        kms.key_set = None;
        self.signing = SigningConfig::Kms(kms);
        Ok(self)
    }
}

/// A local signing key, as configured.
#[derive(Clone)]
pub enum LocalKey {
    /// PKCS#8 PEM text (zeroized on drop) and, for RSA, the algorithm.
    Pem {
        /// The PEM, loaded from the key file.
        pem: oidc_core::keys::Pkcs8Pem,
        /// RS256 or PS256 for RSA keys; `None` to follow the key.
        algorithm: Option<Algorithm>,
        /// The file it came from, for messages.
        file: String,
    },
    /// A key generated at start; tokens die with the process.
    Generate(Algorithm),
}

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalKey::Pem { file, algorithm, .. } => write!(f, "LocalKey::Pem({file:?}, {algorithm:?})"),
            LocalKey::Generate(alg) => write!(f, "LocalKey::Generate({alg})"),
        }
    }
}

impl LocalKey {
    /// Loads or generates the signer.
    pub fn signer(&self) -> Result<LocalSigner, oidc_core::keys::KeyError> {
        match self {
            LocalKey::Pem { pem, algorithm, .. } => {
                LocalSigner::from_pem_with_algorithm(pem.as_str(), *algorithm)
            }
            LocalKey::Generate(alg) => LocalSigner::generate(*alg).map(|(signer, _pem)| signer),
        }
    }
}

/// HTTP limits.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted.
    pub body_limit_bytes: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// `max-age` of the JWKS response.
    pub jwks_max_age: Duration,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

/// Client authentication limits.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Longest lifetime of a `private_key_jwt` assertion.
    pub assertion_max_lifetime: Duration,
    /// Clock leeway for assertions.
    pub leeway: Duration,
    /// Failed authentications per client or peer before it is throttled.
    pub failure_limit: u32,
    /// The window failures are counted over, and the throttling period.
    pub failure_window: Duration,
}

/// AWS IAM client authentication (`[aws_iam]`).
#[derive(Debug, Clone)]
pub struct AwsIamConfig {
    /// The STS endpoint, e.g. `https://sts.eu-west-1.amazonaws.com`.
    pub sts_endpoint: String,
    /// Longest wait for STS.
    pub timeout: Duration,
    /// Largest difference between `X-Amz-Date` and the server's clock.
    pub max_clock_skew: Duration,
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Text or JSON.
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is unset (e.g. `info`).
    pub level: String,
}

/// A registered connector (an OAuth client).
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Its id: `client_id` and the token's `sub`.
    pub id: String,
    /// SHA-256 of its client secret, if it authenticates with one.
    pub secret_sha256: Option<[u8; 32]>,
    /// Its public keys, if it authenticates with `private_key_jwt`.
    pub jwks: Option<JwkSet>,
    /// Audiences it may ask for; the first is the default.
    pub audiences: Vec<String>,
    /// Scopes it may ask for.
    pub scopes: BTreeSet<String>,
    /// Scopes granted when it asks for none.
    pub default_scopes: Vec<String>,
    /// Private claims put in its tokens.
    pub attributes: Attributes,
    /// IAM principals (role or user ARNs; a trailing `*` matches any suffix)
    /// that authenticate as this connector through `[aws_iam]`.
    pub aws_principals: Vec<String>,
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the field (`connectors[0].audiences`).
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Not TOML, or not the expected shape.
    #[error("config {origin} is not valid: {reason}")]
    Parse {
        /// Where it came from.
        origin: String,
        /// The parser's message (with line and column).
        reason: String,
    },
    /// Parsed, but inconsistent; every problem is listed.
    #[error("config {origin} has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Where it came from.
        origin: String,
        /// Each problem.
        problems: Vec<Problem>,
    },
}

impl Config {
    /// Loads the configuration in force: the file at `path` if given, else
    /// the TOML in `OIDC_SERVER_CONFIG_TOML`, else the embedded default; then
    /// `env` overrides (`OIDC_SERVER__...`), then `overrides`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let inline = env
            .iter()
            .find(|(k, _)| k == CONFIG_TOML_ENV)
            .map(|(_, v)| v.clone());
        let (text, origin) = match (path, inline) {
            (None, Some(text)) => (text, Origin::Environment),
            (path, _) => match path {
                Some(path) => (
                    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?,
                    Origin::File(path.to_path_buf()),
                ),
                None => (EMBEDDED_CONFIG.to_owned(), Origin::Embedded),
            },
        };
        Self::from_toml(&text, origin, env, overrides)
    }

    /// Parses and validates TOML text from `origin`, with the other layers.
    pub fn from_toml(
        text: &str,
        origin: Origin,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let parse_error = |reason: String| ConfigError::Parse {
            origin: origin.to_string(),
            reason,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        for (name, value) in env {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                apply_env(&mut table, path, &value)
                    .map_err(|reason| parse_error(format!("{name}: {reason}")))?;
            }
        }
        if let Some(listen) = &overrides.listen {
            table.insert("listen".into(), toml::Value::String(listen.clone()));
        }
        if let Some(issuer) = &overrides.issuer {
            table.insert("issuer".into(), toml::Value::String(issuer.clone()));
        }
        let raw: RawConfig =
            toml::Table::try_into(table).map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        validate(raw, origin)
    }
}

/// Sets `a__b__c` (lower-cased) in `table` to `value`, read as a TOML value
/// when it is one (numbers, booleans, arrays) and as a string otherwise.
fn apply_env(table: &mut toml::Table, path: &str, value: &str) -> Result<(), String> {
    let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if keys.iter().any(String::is_empty) {
        return Err("empty path segment".into());
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, parents) = keys.split_last().ok_or("empty path")?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("{key} is not a table"))?;
    }
    current.insert(last.clone(), parsed);
    Ok(())
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }
}

fn validate(raw: RawConfig, origin: Origin) -> Result<Config, ConfigError> {
    let mut problems = Problems(Vec::new());

    if let Err(message) = check_issuer(&raw.issuer) {
        problems.add("issuer", message);
    }
    let listen = raw.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.add(
            "listen",
            format!("{:?} is not an address like 127.0.0.1:8080", raw.listen),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });

    let lifetime = Lifetime::new(
        Duration::from_secs(raw.tokens.default_ttl_secs),
        Duration::from_secs(raw.tokens.max_ttl_secs),
    )
    .unwrap_or_else(|e| {
        problems.add("tokens", e.to_string());
        Lifetime::default()
    });
    if raw.tokens.max_ttl_secs > 86_400 {
        problems.add(
            "tokens.max_ttl_secs",
            "more than a day; connector tokens are meant to be short-lived",
        );
    }

    let signing = match &raw.signing {
        SigningSection::Local {
            key_file,
            generate,
            algorithm,
        } => local_key(&origin, key_file, generate, algorithm, &mut problems),
        SigningSection::Kms {
            key_id,
            key_set_secret,
            algorithm,
            max_concurrency,
            poll_interval_secs,
            call_timeout_ms,
            leeway_secs,
        } => kms_signing(
            key_id,
            key_set_secret,
            algorithm,
            *max_concurrency,
            (*poll_interval_secs, *call_timeout_ms, *leeway_secs),
            raw.http.request_timeout_secs,
            &mut problems,
        ),
        SigningSection::KmsEnvelope {
            key_set_secret,
            poll_interval_secs,
            call_timeout_ms,
            leeway_secs,
        } => match key_set_secret {
            Some(secret) => key_set_config(
                secret,
                (*poll_interval_secs, *call_timeout_ms, *leeway_secs),
                raw.http.request_timeout_secs,
                &mut problems,
            )
            .map(SigningConfig::KmsEnvelope),
            None => {
                problems.add(
                    "signing.key_set_secret",
                    "kind = \"kms-envelope\" needs the Secrets Manager secret holding the key set \
                     (create one with `oidc-server keys stage --kind kms-envelope --key-id KMS_KEY`)",
                );
                None
            }
        },
    };

    let http = &raw.http;
    if !(1024..=1024 * 1024).contains(&http.body_limit_bytes) {
        problems.add("http.body_limit_bytes", "must be between 1024 and 1048576");
    }
    if !(1..=120).contains(&http.request_timeout_secs) {
        problems.add("http.request_timeout_secs", "must be between 1 and 120");
    }
    if http.jwks_max_age_secs > 86_400 {
        problems.add(
            "http.jwks_max_age_secs",
            "more than a day would keep verifiers on old keys; keep it below the pre-publication window",
        );
    }

    let auth = &raw.auth;
    if !(1..=3600).contains(&auth.assertion_max_lifetime_secs) {
        problems.add("auth.assertion_max_lifetime_secs", "must be between 1 and 3600");
    }
    if auth.leeway_secs > 300 {
        problems.add("auth.leeway_secs", "must be at most 300");
    }
    if auth.failure_limit == 0 {
        problems.add("auth.failure_limit", "must be at least 1");
    }
    if auth.failure_window_secs == 0 {
        problems.add("auth.failure_window_secs", "must be at least 1");
    }

    let mut connectors = Vec::new();
    let mut seen = HashSet::new();
    for (index, section) in raw.connectors.iter().enumerate() {
        let field = format!("connectors[{index}]");
        if !seen.insert(section.id.clone()) {
            problems.add(
                format!("{field}.id"),
                format!("{:?} is registered twice", section.id),
            );
        }
        if let Some(connector) = connector(section, &origin, &field, &mut problems) {
            connectors.push(connector);
        }
    }

    let aws_iam = raw.aws_iam.as_ref().map(|section| {
        if let Err(message) = check_endpoint(&section.sts_endpoint) {
            problems.add("aws_iam.sts_endpoint", message);
        }
        if !(1..=60).contains(&section.timeout_secs) {
            problems.add("aws_iam.timeout_secs", "must be between 1 and 60");
        }
        if !(60..=900).contains(&section.max_clock_skew_secs) {
            problems.add("aws_iam.max_clock_skew_secs", "must be between 60 and 900");
        }
        AwsIamConfig {
            sts_endpoint: section.sts_endpoint.trim_end_matches('/').to_owned(),
            timeout: Duration::from_secs(section.timeout_secs),
            max_clock_skew: Duration::from_secs(section.max_clock_skew_secs),
        }
    });
    if aws_iam.is_none() {
        for (index, section) in raw.connectors.iter().enumerate() {
            if !section.aws_principals.is_empty() {
                problems.add(
                    format!("connectors[{index}].aws_principals"),
                    "needs an [aws_iam] section naming the STS endpoint",
                );
            }
        }
    }

    let level = raw.log.level.clone().unwrap_or_else(|| "info".into());
    if problems.0.is_empty() {
        Ok(Config {
            issuer: raw.issuer,
            listen,
            lifetime,
            signing: signing.unwrap_or(SigningConfig::Local(LocalKey::Generate(Algorithm::ES256))),
            http: HttpConfig {
                body_limit_bytes: http.body_limit_bytes,
                request_timeout: Duration::from_secs(http.request_timeout_secs),
                jwks_max_age: Duration::from_secs(http.jwks_max_age_secs),
                trust_forwarded_for: http.trust_forwarded_for,
            },
            auth: AuthConfig {
                assertion_max_lifetime: Duration::from_secs(auth.assertion_max_lifetime_secs),
                leeway: Duration::from_secs(auth.leeway_secs),
                failure_limit: auth.failure_limit,
                failure_window: Duration::from_secs(auth.failure_window_secs),
            },
            log: LogConfig {
                format: raw.log.format,
                level,
            },
            aws_iam,
            connectors,
            origin,
        })
    } else {
        Err(ConfigError::Invalid {
            origin: origin.to_string(),
            problems: problems.0,
        })
    }
}

/// The issuer must be an https URL (http only on a loopback host), with no
/// query, fragment or trailing slash, so that `iss` comparisons are exact.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let rest = if let Some(rest) = issuer.strip_prefix("https://") {
        rest
    } else if let Some(rest) = issuer.strip_prefix("http://") {
        let host = rest.split(['/', ':']).next().unwrap_or("");
        if !is_loopback_host(host) && !rest.starts_with('[') {
            return Err(format!(
                "{issuer:?} uses http on a non-loopback host; use https (http is only for 127.0.0.1, ::1 and localhost)"
            ));
        }
        rest
    } else {
        return Err(format!("{issuer:?} must start with https://"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{issuer:?} has no host"));
    }
    if issuer.contains(['?', '#']) {
        return Err(format!("{issuer:?} must not have a query or fragment"));
    }
    if issuer.ends_with('/') {
        return Err(format!(
            "{issuer:?} must not end with '/': verifiers compare iss byte for byte"
        ));
    }
    if issuer.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{issuer:?} contains whitespace"));
    }
    Ok(())
}

/// An endpoint we send requests to: https, or http only to a loopback host.
fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = match url.split_once("://") {
        Some(("https", rest)) => rest,
        Some(("http", rest)) => {
            let host = rest.split(['/', ':']).next().unwrap_or("");
            if !is_loopback_host(host) && !rest.starts_with("[::1]") {
                return Err(format!("{url:?} must use https (http only to a loopback host)"));
            }
            rest
        }
        _ => return Err(format!("{url:?} must be an https URL")),
    };
    if rest.is_empty() || rest.starts_with('/') || url.contains(['?', '#', '@']) {
        return Err(format!("{url:?} must be a plain https://host[:port] URL"));
    }
    Ok(())
}

/// Whether `host` is a loopback name or address.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `[signing] kind = "kms"`.
fn kms_signing(
    key_id: &Option<String>,
    key_set_secret: &Option<String>,
    algorithm: &Option<String>,
    max_concurrency: Option<usize>,
    timings: (Option<u64>, Option<u64>, Option<u64>),
    request_timeout_secs: u64,
    problems: &mut Problems,
) -> Option<SigningConfig> {
    let before = problems.0.len();
    let algorithm = match algorithm.as_deref().map(str::parse::<Algorithm>) {
        None => None,
        Some(Ok(alg)) => Some(alg),
        Some(Err(e)) => {
            problems.add("signing.algorithm", e.to_string());
            None
        }
    };
    let max_concurrency = max_concurrency.unwrap_or(aws_defaults::MAX_CONCURRENCY);
    if !(1..=1024).contains(&max_concurrency) {
        problems.add("signing.max_concurrency", "must be between 1 and 1024");
    }
    let call_timeout = call_timeout(timings.1, request_timeout_secs, problems);
    let key_set = match (key_id, key_set_secret) {
        (Some(_), Some(_)) => {
            problems.add(
                "signing",
                "set either key_id (one fixed KMS key) or key_set_secret (a rotating key set), not both",
            );
            None
        }
        (None, None) => {
            problems.add(
                "signing.key_id",
                "kind = \"kms\" needs key_id (key id, ARN or alias/NAME) or key_set_secret (a rotating key set)",
            );
            None
        }
        (Some(id), None) => {
            if id.trim().is_empty() {
                problems.add("signing.key_id", "is empty");
            }
            None
        }
        (None, Some(secret)) => {
            if algorithm.is_some() {
                problems.add(
                    "signing.algorithm",
                    "applies to key_id only: each key of a key set records its own algorithm",
                );
            }
            key_set_config(secret, timings, request_timeout_secs, problems)
        }
    };
    if problems.0.len() != before {
        return None;
    }
    Some(SigningConfig::Kms(KmsConfig {
        key_id: key_id.clone(),
        key_set,
        algorithm,
        max_concurrency,
        call_timeout,
    }))
}

fn call_timeout(ms: Option<u64>, request_timeout_secs: u64, problems: &mut Problems) -> Duration {
    let ms = ms.unwrap_or(aws_defaults::CALL_TIMEOUT_MS);
    // Signing gets 80% of the request timeout; a call that may take longer
    // would turn a failing KMS into a timeout instead of a clear answer.
    let budget_ms = request_timeout_secs.saturating_mul(800);
    if ms < 100 || ms >= budget_ms.max(101) {
        problems.add(
            "signing.call_timeout_ms",
            format!("must be at least 100 and below 80% of http.request_timeout_secs ({budget_ms} ms)"),
        );
    }
    Duration::from_millis(ms)
}

fn key_set_config(
    secret: &str,
    (poll_interval_secs, call_timeout_ms, leeway_secs): (Option<u64>, Option<u64>, Option<u64>),
    request_timeout_secs: u64,
    problems: &mut Problems,
) -> Option<KeySetConfig> {
    let before = problems.0.len();
    if secret.trim().is_empty() {
        problems.add("signing.key_set_secret", "is empty");
    }
    let poll = poll_interval_secs.unwrap_or(aws_defaults::POLL_INTERVAL_SECS);
    if !(1..=3600).contains(&poll) {
        problems.add("signing.poll_interval_secs", "must be between 1 and 3600");
    }
    let leeway = leeway_secs.unwrap_or(aws_defaults::LEEWAY_SECS);
    if leeway > 600 {
        problems.add("signing.leeway_secs", "must be at most 600");
    }
    let call_timeout = call_timeout(call_timeout_ms, request_timeout_secs, problems);
    (problems.0.len() == before).then(|| KeySetConfig {
        secret: secret.to_owned(),
        poll_interval: Duration::from_secs(poll),
        call_timeout,
        leeway: Duration::from_secs(leeway),
    })
}

fn local_key(
    origin: &Origin,
    key_file: &Option<String>,
    generate: &Option<String>,
    algorithm: &Option<String>,
    problems: &mut Problems,
) -> Option<SigningConfig> {
    let algorithm = match algorithm.as_deref().map(str::parse::<Algorithm>) {
        None => None,
        Some(Ok(alg)) => Some(alg),
        Some(Err(e)) => {
            problems.add("signing.algorithm", e.to_string());
            return None;
        }
    };
    match (key_file, generate) {
        (Some(_), Some(_)) => {
            problems.add("signing", "set either key_file or generate, not both");
            None
        }
        (None, None) => {
            problems.add(
                "signing",
                "a local signing key needs key_file (PKCS#8 PEM) or generate = \"ES256\" (ephemeral, development)",
            );
            None
        }
        (None, Some(alg)) => match alg.parse::<Algorithm>() {
            Ok(alg @ (Algorithm::ES256 | Algorithm::EdDSA)) => {
                Some(SigningConfig::Local(LocalKey::Generate(alg)))
            }
            Ok(other) => {
                problems.add(
                    "signing.generate",
                    format!("cannot generate {other} keys; use ES256 or EdDSA"),
                );
                None
            }
            Err(e) => {
                problems.add("signing.generate", e.to_string());
                None
            }
        },
        (Some(file), None) => {
            let pem = match origin.read(file) {
                Ok(text) => oidc_core::keys::Pkcs8Pem::from_string(text),
                Err(e) => {
                    problems.add("signing.key_file", e);
                    return None;
                }
            };
            let key = LocalKey::Pem {
                pem,
                algorithm,
                file: file.clone(),
            };
            match key.signer() {
                Ok(_) => Some(SigningConfig::Local(key)),
                Err(e) => {
                    problems.add("signing.key_file", format!("{file}: {e}"));
                    None
                }
            }
        }
    }
}

fn connector(
    section: &ConnectorSection,
    origin: &Origin,
    field: &str,
    problems: &mut Problems,
) -> Option<ConnectorConfig> {
    let before = problems.0.len();
    let id = &section.id;
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:@".contains(c))
    {
        problems.add(
            format!("{field}.id"),
            format!("{id:?} must be 1 to 128 characters of letters, digits and ._-:@"),
        );
    }
    let secret_sha256 = section.secret_sha256.as_ref().and_then(|hex_digest| {
        let mut digest = [0u8; 32];
        match hex::decode_to_slice(hex_digest, &mut digest) {
            Ok(()) => Some(digest),
            Err(_) => {
                problems.add(
                    format!("{field}.secret_sha256"),
                    "must be 64 hex digits (the SHA-256 of the secret, as printed by `oidc-server connectors add`)",
                );
                None
            }
        }
    });
    let jwks_text = match (&section.jwks, &section.jwks_file) {
        (Some(_), Some(_)) => {
            problems.add(format!("{field}.jwks"), "set either jwks or jwks_file, not both");
            None
        }
        (Some(table), None) => serde_json::to_string(table).ok(),
        (None, Some(file)) => match origin.read(file) {
            Ok(text) => Some(text),
            Err(e) => {
                problems.add(format!("{field}.jwks_file"), e);
                None
            }
        },
        (None, None) => None,
    };
    let jwks = jwks_text.and_then(|text| match JwkSet::from_json(text.as_bytes()) {
        Ok(set) if set.is_empty() => {
            let reasons: Vec<String> = set.refused().iter().map(|r| r.reason.to_string()).collect();
            problems.add(
                format!("{field}.jwks"),
                format!("no usable key ({})", reasons.join("; ")),
            );
            None
        }
        Ok(set) => Some(set),
        Err(e) => {
            problems.add(format!("{field}.jwks"), e.to_string());
            None
        }
    });
    if section.secret_sha256.is_none()
        && section.jwks.is_none()
        && section.jwks_file.is_none()
        && section.aws_principals.is_empty()
    {
        problems.add(
            field.to_owned(),
            "has no credential: set secret_sha256 (client secret), jwks/jwks_file (private_key_jwt) or aws_principals (AWS IAM)",
        );
    }
    for principal in &section.aws_principals {
        let body = principal.strip_suffix('*').unwrap_or(principal);
        if !principal.starts_with("arn:") || body.contains('*') || principal.split(':').count() < 6 {
            problems.add(
                format!("{field}.aws_principals"),
                format!("{principal:?} must be an IAM ARN like arn:aws:iam::123456789012:role/name (a trailing * is allowed)"),
            );
        }
    }
    if section.audiences.is_empty() || section.audiences.iter().any(String::is_empty) {
        problems.add(
            format!("{field}.audiences"),
            "list at least one non-empty audience; the first is the default",
        );
    }
    for scope in section.scopes.iter().chain(&section.default_scopes) {
        if scope.is_empty()
            || !scope
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        {
            problems.add(
                format!("{field}.scopes"),
                format!("{scope:?} is not a valid scope token"),
            );
        }
    }
    let scopes: BTreeSet<String> = section.scopes.iter().cloned().collect();
    for scope in &section.default_scopes {
        if !scopes.contains(scope) {
            problems.add(
                format!("{field}.default_scopes"),
                format!("{scope:?} is not in scopes; default scopes must be allowed scopes"),
            );
        }
    }
    let attributes = match serde_json::to_value(&section.attributes) {
        Ok(serde_json::Value::Object(map)) => match Attributes::try_from(map) {
            Ok(attrs) => Some(attrs),
            Err(e) => {
                problems.add(
                    format!("{field}.attributes"),
                    format!("{e}; reserved names: {}", claims::RESERVED_CLAIMS.join(", ")),
                );
                None
            }
        },
        _ => {
            problems.add(format!("{field}.attributes"), "must be a table");
            None
        }
    };
    if problems.0.len() != before {
        return None;
    }
    Some(ConnectorConfig {
        id: id.clone(),
        secret_sha256,
        jwks,
        audiences: section.audiences.clone(),
        scopes,
        default_scopes: section.default_scopes.clone(),
        attributes: attributes.unwrap_or_default(),
        aws_principals: section.aws_principals.clone(),
    })
}
