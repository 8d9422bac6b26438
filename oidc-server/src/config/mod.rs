//! Configuration in layers (see [`load`](self#layers)): the embedded default
//! (or a TOML file, or `OIDC_SERVER_CONFIG_TOML`), then environment variables,
//! then command-line overrides; validated once into an immutable [`Config`].
//! Validation reports every problem, each with the path of the field and what
//! to do.
//!
//! | module | job |
//! |---|---|
//! | this one | the validated types the server runs on |
//! | `raw` | the file's serde shape and its defaults |
//! | `load` | the layers: document, environment, command line |
//! | `validate` | one function per section, every problem with its field |
//!
//! # Layers
//!
//! 1. the document: `--config PATH` / `OIDC_SERVER_CONFIG`, else the TOML text
//!    in `OIDC_SERVER_CONFIG_TOML`, else the embedded development default;
//! 2. `OIDC_SERVER__SECTION__FIELD=value` overrides;
//! 3. `serve --listen --issuer`.

mod load;
mod raw;
mod validate;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oidc_core::claims::Attributes;
use oidc_core::dpop::{DpopMode, DpopNonces};
use oidc_core::keys::LocalSigner;
use oidc_core::verify::trust::IssuerEntry;
use oidc_core::verify::{ClaimPath, Glob};
use oidc_core::{Algorithm, JwkSet, Lifetime};
use serde_json::Value;

use crate::proxies::TrustedProxies;
use serde::Deserialize;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "OIDC_SERVER_CONFIG";
/// Environment variable holding the whole config as TOML text (used when no
/// file is named; for platforms configured through the environment, like Lambda).
pub const CONFIG_TOML_ENV: &str = "OIDC_SERVER_CONFIG_TOML";
/// Prefix of environment variables that override fields: `OIDC_SERVER__TOKENS__MAX_TTL_SECS=600`
/// sets `tokens.max_ttl_secs`.
pub const ENV_PREFIX: &str = "OIDC_SERVER__";

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
            Origin::Embedded => load::EMBEDDED_FILES
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
    /// Where one-time uses are recorded.
    pub replay: ReplayConfig,
    /// Where `/metrics` is served, if anywhere (`[metrics] listen`): never
    /// on the public listener.
    pub metrics_listen: Option<SocketAddr>,
    /// AWS IAM client authentication, if enabled.
    pub aws_iam: Option<AwsIamConfig>,
    /// DPoP proofs at the token endpoint (`[dpop]`).
    pub dpop: DpopConfig,
    /// Upstream identity providers whose tokens are exchanged for ours
    /// (`[[upstream_issuers]]`; RFC 8693 token exchange).
    pub upstream_issuers: Vec<UpstreamIssuerConfig>,
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

impl fmt::Display for SigningConfig {
    /// In words, for the startup line: `local key dev-es256.pem`,
    /// `KMS key alias/tokens`, `KMS key set tokens-keys`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(LocalKey::Pem { file, .. }) => write!(f, "local key {file}"),
            Self::Local(LocalKey::Generate(alg)) => write!(f, "ephemeral {alg} key (generated at start)"),
            Self::Kms(KmsConfig {
                key: KmsKey::Fixed { key_id, .. },
                ..
            }) => write!(f, "KMS key {key_id}"),
            Self::Kms(KmsConfig {
                key: KmsKey::Rotating(set),
                ..
            }) => write!(f, "KMS key set in secret {}", set.secret),
            Self::KmsEnvelope(set) => write!(f, "KMS-envelope key set in secret {}", set.secret),
        }
    }
}

impl SigningConfig {
    /// The rotating key set this signs from, if any.
    pub fn key_set(&self) -> Option<&KeySetConfig> {
        match self {
            Self::Kms(KmsConfig {
                key: KmsKey::Rotating(set),
                ..
            })
            | Self::KmsEnvelope(set) => Some(set),
            Self::Local(_) | Self::Kms(_) => None,
        }
    }
}

/// `[signing] kind = "kms"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsConfig {
    /// Which key signs.
    pub key: KmsKey,
    /// Most KMS calls in flight at once.
    pub max_concurrency: usize,
    /// Longest one KMS call may take.
    pub call_timeout: Duration,
}

/// The KMS key of `kind = "kms"`: one fixed key, or a rotating key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsKey {
    /// `key_id`: one key (id, ARN or alias), for good.
    Fixed {
        /// The key.
        key_id: String,
        /// RS256 or PS256 for an RSA key; `None` follows the key.
        algorithm: Option<Algorithm>,
    },
    /// `key_set_secret`: the keys of a rotating key set (each records its algorithm).
    Rotating(KeySetConfig),
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
        let (max_concurrency, call_timeout) = match &self.signing {
            SigningConfig::Kms(kms) => (kms.max_concurrency, kms.call_timeout),
            _ => (
                aws_defaults::MAX_CONCURRENCY,
                Duration::from_millis(aws_defaults::CALL_TIMEOUT_MS),
            ),
        };
        let algorithm = match &self.signing {
            SigningConfig::Kms(KmsConfig {
                key: KmsKey::Fixed { algorithm, .. },
                ..
            }) => *algorithm,
            _ => None,
        };
        self.signing = SigningConfig::Kms(KmsConfig {
            key: KmsKey::Fixed {
                key_id: key_id.to_owned(),
                algorithm,
            },
            max_concurrency,
            call_timeout,
        });
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
    /// Proxies whose `X-Forwarded-For` entries are believed, and how the
    /// client is found among them (`trusted_proxies`, `proxy_hops`).
    pub trusted_proxies: TrustedProxies,
    /// Longest a client may take to send a request's headers, also the
    /// longest a keep-alive connection may sit idle before its next request.
    pub header_read_timeout: Duration,
    /// Most connections served at once; beyond, new ones are answered 503 and closed.
    pub max_connections: usize,
    /// Most connections served at once from one socket peer (an IPv4
    /// address or an IPv6 /64) that is not a trusted proxy.
    pub max_connections_per_peer: usize,
    /// Age at which a connection is closed once its request in flight, if
    /// any, is answered.
    pub max_connection_lifetime: Duration,
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

/// Where one-time uses (`private_key_jwt` assertion ids, `aws_iam` signed
/// requests) are recorded (`[replay]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayConfig {
    /// In this process only (`store = "memory"`, the default): right for one
    /// process, wrong for a fleet.
    Memory,
    /// A DynamoDB table shared by every replica (`store = "dynamodb"`).
    DynamoDb {
        /// The table's name.
        table: String,
        /// Longest one DynamoDB call may take.
        call_timeout: Duration,
    },
}

impl Config {
    /// Why this configuration cannot keep one-time use across a fleet, if it
    /// cannot: it records uses in memory while some connector authenticates
    /// with a one-time credential (`private_key_jwt`, `aws_iam`, or a
    /// token of an upstream issuer with `one_time_use`). Lambda
    /// mode refuses to start then, since every environment would have a
    /// memory of its own.
    pub fn fleet_replay_problem(&self) -> Option<Problem> {
        if self.replay != ReplayConfig::Memory {
            return None;
        }
        let one_time_upstream = |binding: &FederatedBinding| {
            self.upstream_issuers
                .iter()
                .any(|u| u.one_time_use && u.entry.name() == binding.issuer)
        };
        let one_time: Vec<&str> = self
            .connectors
            .iter()
            .filter(|c| {
                c.jwks.is_some()
                    || !c.aws_principals.is_empty()
                    || !c.aws_principal_ids.is_empty()
                    || c.federated.iter().any(one_time_upstream)
            })
            .map(|c| c.id.as_str())
            .collect();
        let first = one_time.first()?;
        Some(Problem {
            field: "replay.store".into(),
            message: format!(
                "is \"memory\", but {} connector(s) ({first}{}) authenticate with private_key_jwt, aws_iam or \
                 one-time upstream tokens: \
                 a fleet (Lambda's many environments, several tasks) cannot keep one-time use in memory; \
                 set [replay] store = \"dynamodb\" with table = \"NAME\"",
                one_time.len(),
                if one_time.len() > 1 { ", ..." } else { "" }
            ),
        })
    }
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

/// DPoP (RFC 9449) at the token endpoint (`[dpop]`): what a `DPoP` proof
/// on `POST /token` must be. Which connectors must send one is each
/// connector's `dpop`.
#[derive(Debug, Clone)]
pub struct DpopConfig {
    /// The algorithms a proof may use (`algorithms`; published as
    /// `dpop_signing_alg_values_supported`).
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be (`iat_window_secs`); a proof's `jti`
    /// is remembered (fleet-wide, in the replay store) until `iat` + this.
    pub iat_window: Duration,
    /// Server nonces (RFC 9449 §8), when a nonce key is configured: every
    /// proof must then carry a current `DPoP-Nonce`. The key is held
    /// zeroized and never shown by `Debug`.
    pub nonces: Option<DpopNonces>,
    /// Where the nonce key came from (`file NAME` or `$VAR`), for messages.
    pub nonce_key_source: Option<String>,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            algorithms: Algorithm::ALL.to_vec(),
            iat_window: oidc_core::dpop::DEFAULT_MAX_AGE,
            nonces: None,
            nonce_key_source: None,
        }
    }
}

/// Logging (`[log]`, read as it is: nothing to derive).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Text or JSON.
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is unset (e.g. `info`).
    pub level: String,
    /// Bytes of log lines (KiB) waiting for stderr beyond which token
    /// requests wait for room, then are refused (503): their audit lines
    /// are never dropped.
    pub buffer_kib: usize,
    /// Longest a token request waits for room in a full log buffer (ms).
    pub max_wait_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            buffer_kib: 8 * 1024,
            max_wait_ms: 1000,
        }
    }
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
    /// that authenticate as this connector through `[aws_iam]`. A role ARN
    /// with a path matches its role's sessions by account and name.
    pub aws_principals: Vec<String>,
    /// IAM unique ids (`AROA…` of a role, `AIDA…` of a user, as
    /// GetCallerIdentity's `UserId` names them) that authenticate as this
    /// connector: unlike a name, an id is not inherited by a role re-created
    /// under the same name.
    pub aws_principal_ids: Vec<String>,
    /// Upstream identities (an upstream issuer's `sub`, and claims) whose
    /// tokens are exchanged for this connector's (`federated`).
    pub federated: Vec<FederatedBinding>,
    /// Claims of the exchanged upstream token copied into this connector's
    /// tokens, as attributes (`copy_claims`).
    pub copy_claims: Vec<CopiedClaim>,
    /// Whether its tokens must be DPoP-bound (`dpop = "required"`) or may
    /// be bearer tokens too (`"allowed"`, the default).
    pub dpop: DpopMode,
}

/// An upstream identity provider (`[[upstream_issuers]]`): a trust entry
/// (the trust file's fields, read by oidc-core) and whether each of its
/// tokens is accepted once.
#[derive(Debug, Clone)]
pub struct UpstreamIssuerConfig {
    /// Its name, issuer, audiences, keys and policy.
    pub entry: IssuerEntry,
    /// Each token is exchanged at most once, fleet-wide (`one_time_use`,
    /// default true): its `jti` (or digest) is recorded in the replay store
    /// until its `exp`. False for platforms that hand a workload the same
    /// token for a while (Kubernetes: up to an hour).
    pub one_time_use: bool,
}

/// One of a connector's `federated` bindings: upstream tokens of entry
/// `issuer` whose `sub` matches `subject` and whose `claims` have exactly
/// the values given are exchanged for this connector's tokens.
#[derive(Debug, Clone)]
pub struct FederatedBinding {
    /// The name of the `[[upstream_issuers]]` entry.
    pub issuer: String,
    /// The `sub` pattern as written (exact, or a glob: `*` any run of
    /// characters, `?` one).
    pub subject: String,
    /// The same, compiled.
    pub subject_glob: Glob,
    /// Claims that must equal a value.
    pub claims: Vec<ClaimEquals>,
}

/// A claim a binding requires to equal a value (JSON equality: an array
/// claim never equals a string, so two bindings that differ in a value
/// never both match).
#[derive(Debug, Clone)]
pub struct ClaimEquals {
    /// The name or JSON Pointer as written.
    pub name: String,
    /// Where the claim is.
    pub path: ClaimPath,
    /// The value it must have.
    pub value: Value,
}

/// An upstream claim copied into the connector's tokens.
#[derive(Debug, Clone)]
pub struct CopiedClaim {
    /// The attribute (private claim) it becomes.
    pub attribute: String,
    /// The upstream claim's name or JSON Pointer as written.
    pub from: String,
    /// Where the upstream claim is.
    pub path: ClaimPath,
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
