//! The configuration file's shape: what serde reads, with the defaults of
//! every optional field. Nothing here is checked; [`super::validate`] turns
//! it into a [`Config`](super::Config) or a list of problems.

use std::collections::BTreeMap;

use oidc_core::dpop::DpopMode;
use serde::Deserialize;

use super::LogConfig;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) issuer: String,
    #[serde(default = "default_listen")]
    pub(super) listen: String,
    #[serde(default)]
    pub(super) tokens: TokensSection,
    pub(super) signing: SigningSection,
    #[serde(default)]
    pub(super) http: HttpSection,
    #[serde(default)]
    pub(super) auth: AuthSection,
    #[serde(default)]
    pub(super) replay: ReplaySection,
    pub(super) metrics: Option<MetricsSection>,
    #[serde(default)]
    pub(super) log: LogConfig,
    pub(super) aws_iam: Option<AwsIamSection>,
    /// `[dpop]`: DPoP proofs at the token endpoint.
    #[serde(default)]
    pub(super) dpop: DpopSection,
    /// `[[upstream_issuers]]`: each a trust file entry's fields (read by
    /// oidc-core's `EntryFields`, after `one_time_use` is taken out).
    #[serde(default)]
    pub(super) upstream_issuers: Vec<toml::Table>,
    #[serde(default)]
    pub(super) connectors: Vec<ConnectorSection>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

/// `[tokens]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct TokensSection {
    pub(super) default_ttl_secs: u64,
    pub(super) max_ttl_secs: u64,
}

impl Default for TokensSection {
    fn default() -> Self {
        Self {
            default_ttl_secs: 300,
            max_ttl_secs: 900,
        }
    }
}

/// `[signing]`, by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub(super) enum SigningSection {
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

/// The AWS timings both KMS kinds share (serde cannot flatten them into a
/// tagged enum that refuses unknown fields, so they are gathered here).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct AwsTimings {
    pub(super) poll_interval_secs: Option<u64>,
    pub(super) call_timeout_ms: Option<u64>,
    pub(super) leeway_secs: Option<u64>,
}

impl SigningSection {
    /// The AWS timings of a `kms` or `kms-envelope` section.
    pub(super) fn aws_timings(&self) -> AwsTimings {
        match *self {
            Self::Local { .. } => AwsTimings::default(),
            Self::Kms {
                poll_interval_secs,
                call_timeout_ms,
                leeway_secs,
                ..
            }
            | Self::KmsEnvelope {
                poll_interval_secs,
                call_timeout_ms,
                leeway_secs,
                ..
            } => AwsTimings {
                poll_interval_secs,
                call_timeout_ms,
                leeway_secs,
            },
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct HttpSection {
    pub(super) body_limit_bytes: usize,
    pub(super) request_timeout_secs: u64,
    pub(super) jwks_max_age_secs: u64,
    /// Replaced by `trusted_proxies`; kept only to say so.
    pub(super) trust_forwarded_for: Option<bool>,
    pub(super) trusted_proxies: Vec<String>,
    /// How many `X-Forwarded-For` entries the trusted proxies append
    /// (counted instead of walked); absent: walk `trusted_proxies`.
    pub(super) proxy_hops: Option<usize>,
    pub(super) header_read_timeout_secs: u64,
    pub(super) max_connections: usize,
    pub(super) max_connections_per_peer: usize,
    pub(super) max_connection_lifetime_secs: u64,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            // An upstream identity token of up to 24 KiB (oidc-core's cap
            // for them; AWS's reach about 20 KB) and a token exchange's
            // other parameters.
            body_limit_bytes: 25 * 1024,
            request_timeout_secs: 10,
            jwks_max_age_secs: 300,
            trust_forwarded_for: None,
            trusted_proxies: Vec::new(),
            proxy_hops: None,
            header_read_timeout_secs: 10,
            max_connections: 4096,
            // One source may hold 1/16 of the connections: a NAT with
            // thousands of connectors behind it fits, one host cannot fill the
            // listener.
            max_connections_per_peer: 256,
            // Long enough for any honest client's burst of requests; a
            // connection chaining slow ones gives its place back this often.
            max_connection_lifetime_secs: 60,
        }
    }
}

/// `[metrics]`: the Prometheus listener, apart from the public one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsSection {
    pub(super) listen: String,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct AuthSection {
    pub(super) assertion_max_lifetime_secs: u64,
    pub(super) leeway_secs: u64,
    pub(super) failure_limit: u32,
    pub(super) failure_window_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            assertion_max_lifetime_secs: 3600,
            leeway_secs: 30,
            failure_limit: 10,
            failure_window_secs: 60,
        }
    }
}

/// `[replay]`: where one-time uses (assertion ids, signed STS requests) are recorded.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "store", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum ReplaySection {
    /// In this process only.
    #[default]
    Memory,
    /// A DynamoDB table shared by every replica.
    Dynamodb {
        /// The table's name.
        table: Option<String>,
        /// Longest one DynamoDB call may take.
        call_timeout_ms: Option<u64>,
    },
}

/// `[aws_iam]`: client authentication with a signed `sts:GetCallerIdentity`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AwsIamSection {
    /// The STS endpoint requests are forwarded to (and nowhere else).
    pub(super) sts_endpoint: String,
    #[serde(default = "default_sts_timeout")]
    pub(super) timeout_secs: u64,
    #[serde(default = "default_max_clock_skew")]
    pub(super) max_clock_skew_secs: u64,
}

fn default_sts_timeout() -> u64 {
    5
}

fn default_max_clock_skew() -> u64 {
    900
}

/// `[dpop]`: DPoP (RFC 9449) at the token endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct DpopSection {
    /// The algorithms a proof may use (default: oidc-core's, every asymmetric one).
    pub(super) algorithms: Option<Vec<String>>,
    /// How old a proof's `iat` may be (default 60 s).
    pub(super) iat_window_secs: Option<u64>,
    /// Server nonces: the key shared by every replica, from a file ...
    pub(super) nonce_key_file: Option<String>,
    /// ... or from this environment variable.
    pub(super) nonce_key_env: Option<String>,
    /// The nonce time step (default 60 s).
    pub(super) nonce_step_secs: Option<u64>,
}

/// `[[connectors]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectorSection {
    pub(super) id: String,
    pub(super) secret_sha256: Option<String>,
    pub(super) jwks: Option<toml::Table>,
    pub(super) jwks_file: Option<String>,
    pub(super) audiences: Vec<String>,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    #[serde(default)]
    pub(super) default_scopes: Vec<String>,
    #[serde(default)]
    pub(super) attributes: toml::Table,
    #[serde(default)]
    pub(super) aws_principals: Vec<String>,
    #[serde(default)]
    pub(super) aws_principal_ids: Vec<String>,
    #[serde(default)]
    pub(super) federated: Vec<FederatedSection>,
    #[serde(default)]
    pub(super) copy_claims: BTreeMap<String, String>,
    /// `"required"` or `"allowed"` (the default).
    #[serde(default)]
    pub(super) dpop: DpopMode,
}

/// One of a connector's `federated = [...]` bindings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FederatedSection {
    /// The name of an `[[upstream_issuers]]` entry.
    pub(super) issuer: String,
    /// The `sub` it binds: exact, or a glob.
    pub(super) subject: String,
    /// Claims (names or JSON Pointers) that must equal these values.
    #[serde(default)]
    pub(super) claims: BTreeMap<String, toml::Value>,
}
