//! From the file's shape to a [`Config`]: one function per section, each
//! returning `Some` only when its part is valid, every problem recorded with
//! its field path. The config is built only when every part is `Some`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use oidc_core::http::{checked_url, PlainHttp, UrlError};
use oidc_core::Lifetime;

mod connectors;
mod dpop;
mod federated;
mod signing;
mod upstream;

use super::raw::{
    AuthSection, AwsIamSection, ConnectorSection, HttpSection, MetricsSection, RawConfig, ReplaySection,
    TokensSection,
};
use super::{
    AuthConfig, AwsIamConfig, Config, ConfigError, HttpConfig, LogConfig, Origin, Problem, ReplayConfig,
};
use crate::proxies::{Cidr, TrustedProxies, MAX_HOPS};
use connectors::connectors;
use dpop::dpop;
use signing::signing;
use upstream::upstream_issuers;

/// The problems found so far.
#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Runs `check`; its value if it recorded no problem, else `None`.
    pub(super) fn part<T>(&mut self, check: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let before = self.0.len();
        let value = check(self);
        value.filter(|_| self.0.len() == before)
    }

    /// `value` if `ok`, else `None` and `message` for `field`.
    pub(super) fn require<T>(
        &mut self,
        ok: bool,
        value: T,
        field: &str,
        message: impl Into<String>,
    ) -> Option<T> {
        if ok {
            Some(value)
        } else {
            self.add(field, message);
            None
        }
    }
}

pub(super) fn validate(raw: RawConfig, origin: Origin) -> Result<Config, ConfigError> {
    let mut p = Problems::default();
    let issuer = p.part(|p| issuer(&raw.issuer, p));
    let listen = p.part(|p| listen(&raw.listen, p));
    let lifetime = p.part(|p| tokens(&raw.tokens, p));
    let signing = p.part(|p| signing(&raw.signing, &origin, raw.http.request_timeout_secs, p));
    let http = p.part(|p| http(&raw.http, p));
    let auth = p.part(|p| auth(&raw.auth, p));
    let replay = p.part(|p| replay(&raw.replay, raw.http.request_timeout_secs, p));
    let metrics_listen = p.part(|p| metrics(raw.metrics.as_ref(), p));
    let aws_iam = p.part(|p| aws_iam(raw.aws_iam.as_ref(), &raw.connectors, p));
    let dpop = p.part(|p| dpop(&raw.dpop, &origin, p));
    let upstream_issuers = p.part(|p| upstream_issuers(&raw.upstream_issuers, &raw.issuer, &origin, p));
    // The names as written, so that a binding to an entry with a problem
    // of its own is not reported as well.
    let upstream_names: Vec<&str> = raw
        .upstream_issuers
        .iter()
        .filter_map(|table| table.get("name").and_then(toml::Value::as_str))
        .collect();
    let connectors = p.part(|p| connectors(&raw.connectors, &origin, &upstream_names, p));
    let log = p.part(|p| log(&raw.log, raw.http.request_timeout_secs, p));
    match (
        issuer,
        listen,
        lifetime,
        signing,
        http,
        auth,
        replay,
        metrics_listen,
        aws_iam,
        dpop,
        upstream_issuers,
        connectors,
        log,
    ) {
        (
            Some(()),
            Some(listen),
            Some(lifetime),
            Some(signing),
            Some(http),
            Some(auth),
            Some(replay),
            Some(metrics_listen),
            Some(aws_iam),
            Some(dpop),
            Some(upstream_issuers),
            Some(connectors),
            Some(()),
        ) => Ok(Config {
            issuer: raw.issuer,
            listen,
            lifetime,
            signing,
            http,
            auth,
            replay,
            metrics_listen,
            log: raw.log,
            aws_iam,
            dpop,
            upstream_issuers,
            connectors,
            origin,
        }),
        _ => Err(ConfigError::Invalid {
            origin: origin.to_string(),
            problems: p.0,
        }),
    }
}

/// The issuer must be an https URL (http only on a loopback host), with no
/// query, fragment or trailing slash, so that `iss` comparisons are exact.
fn issuer(issuer: &str, p: &mut Problems) -> Option<()> {
    match check_issuer(issuer) {
        Ok(()) => Some(()),
        Err(message) => {
            p.add("issuer", message);
            None
        }
    }
}

fn check_issuer(issuer: &str) -> Result<(), String> {
    // The workspace's URL rule first (https, or http to a loopback host; no
    // credentials), then what makes `iss` comparable byte for byte.
    let url = checked_url("issuer", issuer, PlainHttp::LoopbackOnly).map_err(|e| match e {
        UrlError::Insecure { .. } if issuer.starts_with("http://") => format!(
            "{issuer:?} uses http on a non-loopback host; use https (http is only for 127.0.0.1, ::1 and localhost)"
        ),
        UrlError::Insecure { .. } => format!("{issuer:?} must start with https://"),
        other => other.to_string(),
    })?;
    if !issuer.starts_with(&format!("{}://", url.scheme())) || url.host_str().is_none_or(str::is_empty) {
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

fn listen(listen: &str, p: &mut Problems) -> Option<SocketAddr> {
    address(listen, "listen", p)
}

fn address(text: &str, field: &str, p: &mut Problems) -> Option<SocketAddr> {
    let parsed = text.parse::<SocketAddr>();
    let message = format!("{text:?} is not an address like 127.0.0.1:8080");
    p.require(parsed.is_ok(), (), field, message)?;
    parsed.ok()
}

/// `[metrics]`: absent means no metrics listener (several replicas on one
/// host never collide); `check-config` says so.
fn metrics(section: Option<&MetricsSection>, p: &mut Problems) -> Option<Option<SocketAddr>> {
    match section {
        None => Some(None),
        Some(section) => address(&section.listen, "metrics.listen", p).map(Some),
    }
}

/// `[log]`: the buffer must hold a burst of lines, and a request waiting
/// for room in it must be refused before the request timeout answers.
fn log(log: &LogConfig, request_timeout_secs: u64, p: &mut Problems) -> Option<()> {
    let buffer = p.require(
        (16..=1024 * 1024).contains(&log.buffer_kib),
        (),
        "log.buffer_kib",
        "must be between 16 and 1048576",
    );
    let budget_ms = request_timeout_secs.saturating_mul(800);
    let wait = p.require(
        (1..=budget_ms).contains(&log.max_wait_ms),
        (),
        "log.max_wait_ms",
        format!("must be at least 1 and at most 80% of http.request_timeout_secs ({budget_ms} ms)"),
    );
    buffer.and(wait)
}

fn tokens(tokens: &TokensSection, p: &mut Problems) -> Option<Lifetime> {
    let lifetime = Lifetime::new(
        Duration::from_secs(tokens.default_ttl_secs),
        Duration::from_secs(tokens.max_ttl_secs),
    );
    if let Err(e) = &lifetime {
        p.add("tokens", e.to_string());
    }
    if tokens.max_ttl_secs > 86_400 {
        p.add(
            "tokens.max_ttl_secs",
            "more than a day; connector tokens are meant to be short-lived",
        );
    }
    lifetime.ok()
}

fn http(http: &HttpSection, p: &mut Problems) -> Option<HttpConfig> {
    let body_limit = p.require(
        (1024..=1024 * 1024).contains(&http.body_limit_bytes),
        http.body_limit_bytes,
        "http.body_limit_bytes",
        "must be between 1024 and 1048576",
    );
    let request_timeout = p.require(
        (1..=120).contains(&http.request_timeout_secs),
        Duration::from_secs(http.request_timeout_secs),
        "http.request_timeout_secs",
        "must be between 1 and 120",
    );
    let jwks_max_age = p.require(
        http.jwks_max_age_secs <= 86_400,
        Duration::from_secs(http.jwks_max_age_secs),
        "http.jwks_max_age_secs",
        "more than a day would keep verifiers on old keys; keep it below the pre-publication window",
    );
    if http.trust_forwarded_for.is_some() {
        p.add(
            "http.trust_forwarded_for",
            "is replaced by trusted_proxies = [\"CIDR\", ...]: the networks the proxies in front of the \
             server connect from, and, behind a load balancer whose network also holds clients (an ALB in \
             a VPC), proxy_hops = 1: the client is the entry the load balancer appended to \
             X-Forwarded-For (docs/deploy.md, \"At the internet edge\")",
        );
    }
    let trusted_proxies = p.part(|p| trusted_proxies(http, p));
    let header_read_timeout = p.require(
        (1..=120).contains(&http.header_read_timeout_secs),
        Duration::from_secs(http.header_read_timeout_secs),
        "http.header_read_timeout_secs",
        "must be between 1 and 120",
    );
    let max_connections = p.require(
        (1..=1_000_000).contains(&http.max_connections),
        http.max_connections,
        "http.max_connections",
        "must be between 1 and 1000000",
    );
    let max_connections_per_peer = p.require(
        (1..=1_000_000).contains(&http.max_connections_per_peer),
        http.max_connections_per_peer,
        "http.max_connections_per_peer",
        "must be between 1 and 1000000 (at max_connections or above, one source can hold every connection)",
    );
    // A connection must have time for one request to arrive, or a client
    // sending its headers at an honest pace would never be answered.
    let lifetime = http.max_connection_lifetime_secs;
    let max_connection_lifetime = p.require(
        lifetime <= 86_400 && lifetime >= http.header_read_timeout_secs.clamp(1, 120),
        Duration::from_secs(lifetime),
        "http.max_connection_lifetime_secs",
        format!(
            "must be between http.header_read_timeout_secs ({}) and 86400: a connection needs time for \
             one request to arrive",
            http.header_read_timeout_secs
        ),
    );
    Some(HttpConfig {
        body_limit_bytes: body_limit?,
        request_timeout: request_timeout?,
        jwks_max_age: jwks_max_age?,
        trusted_proxies: trusted_proxies?,
        header_read_timeout: header_read_timeout?,
        max_connections: max_connections?,
        max_connections_per_peer: max_connections_per_peer?,
        max_connection_lifetime: max_connection_lifetime?,
    })
}

/// `trusted_proxies` and `proxy_hops`: who may forward, and how many
/// `X-Forwarded-For` entries they write.
fn trusted_proxies(http: &HttpSection, p: &mut Problems) -> Option<TrustedProxies> {
    let mut networks = Vec::new();
    for (index, text) in http.trusted_proxies.iter().enumerate() {
        match text.parse::<Cidr>() {
            Ok(network) => networks.push(network),
            Err(e) => p.add(format!("http.trusted_proxies[{index}]"), e.to_string()),
        }
    }
    let Some(hops) = http.proxy_hops else {
        return Some(TrustedProxies::new(networks));
    };
    let hops = match NonZeroUsize::new(hops).filter(|n| n.get() <= MAX_HOPS) {
        Some(hops) => hops,
        None => {
            p.add(
                "http.proxy_hops",
                format!(
                    "must be between 1 and {MAX_HOPS}: how many X-Forwarded-For entries your proxies \
                     append (1 behind an AWS load balancer); leave it out to walk trusted_proxies instead"
                ),
            );
            return None;
        }
    };
    if http.trusted_proxies.is_empty() {
        p.add(
            "http.proxy_hops",
            "needs trusted_proxies: the networks your load balancer connects from (e.g. the VPC's CIDR; \
             [\"0.0.0.0/0\", \"::/0\"] if nothing else can reach the server). X-Forwarded-For is read only \
             on their connections, and only they are exempt from max_connections_per_peer",
        );
        return None;
    }
    Some(TrustedProxies::counting(networks, hops))
}

fn auth(auth: &AuthSection, p: &mut Problems) -> Option<AuthConfig> {
    let assertion_max_lifetime = p.require(
        (1..=3600).contains(&auth.assertion_max_lifetime_secs),
        Duration::from_secs(auth.assertion_max_lifetime_secs),
        "auth.assertion_max_lifetime_secs",
        "must be between 1 and 3600",
    );
    let leeway = p.require(
        auth.leeway_secs <= 300,
        Duration::from_secs(auth.leeway_secs),
        "auth.leeway_secs",
        "must be at most 300",
    );
    let failure_limit = p.require(
        auth.failure_limit >= 1,
        auth.failure_limit,
        "auth.failure_limit",
        "must be at least 1",
    );
    let failure_window = p.require(
        auth.failure_window_secs >= 1,
        Duration::from_secs(auth.failure_window_secs),
        "auth.failure_window_secs",
        "must be at least 1",
    );
    Some(AuthConfig {
        assertion_max_lifetime: assertion_max_lifetime?,
        leeway: leeway?,
        failure_limit: failure_limit?,
        failure_window: failure_window?,
    })
}

/// `[replay]`.
fn replay(section: &ReplaySection, request_timeout_secs: u64, p: &mut Problems) -> Option<ReplayConfig> {
    match section {
        ReplaySection::Memory => Some(ReplayConfig::Memory),
        ReplaySection::Dynamodb {
            table,
            call_timeout_ms,
        } => {
            let table = match table.as_deref().map(str::trim) {
                Some(name) if valid_table_name(name) => Some(name.to_owned()),
                Some(name) => {
                    p.add(
                        "replay.table",
                        format!("{name:?} is not a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ - .)"),
                    );
                    None
                }
                None => {
                    p.add(
                        "replay.table",
                        "store = \"dynamodb\" needs the table's name (partition key `pk` of type String, TTL on `expires_at`)",
                    );
                    None
                }
            };
            let ms = call_timeout_ms.unwrap_or(DEFAULT_REPLAY_CALL_TIMEOUT_MS);
            // The store is asked before signing; both must fit the request timeout.
            let budget_ms = request_timeout_secs.saturating_mul(400);
            let call_timeout = p.require(
                ms >= 50 && ms <= budget_ms.max(50),
                Duration::from_millis(ms),
                "replay.call_timeout_ms",
                format!("must be at least 50 and at most 40% of http.request_timeout_secs ({budget_ms} ms)"),
            );
            Some(ReplayConfig::DynamoDb {
                table: table?,
                call_timeout: call_timeout?,
            })
        }
    }
}

/// Default `[replay] call_timeout_ms`: DynamoDB answers in milliseconds.
const DEFAULT_REPLAY_CALL_TIMEOUT_MS: u64 = 1000;

fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `[aws_iam]`, and the connectors that need it.
fn aws_iam(
    section: Option<&AwsIamSection>,
    connectors: &[ConnectorSection],
    p: &mut Problems,
) -> Option<Option<AwsIamConfig>> {
    let Some(section) = section else {
        for (index, connector) in connectors.iter().enumerate() {
            if !connector.aws_principals.is_empty() || !connector.aws_principal_ids.is_empty() {
                p.add(
                    format!("connectors[{index}].aws_principals"),
                    "needs an [aws_iam] section naming the STS endpoint",
                );
            }
        }
        return Some(None);
    };
    let endpoint = match check_endpoint(&section.sts_endpoint) {
        Ok(()) => Some(section.sts_endpoint.trim_end_matches('/').to_owned()),
        Err(message) => {
            p.add("aws_iam.sts_endpoint", message);
            None
        }
    };
    let timeout = p.require(
        (1..=60).contains(&section.timeout_secs),
        Duration::from_secs(section.timeout_secs),
        "aws_iam.timeout_secs",
        "must be between 1 and 60",
    );
    let max_clock_skew = p.require(
        (60..=900).contains(&section.max_clock_skew_secs),
        Duration::from_secs(section.max_clock_skew_secs),
        "aws_iam.max_clock_skew_secs",
        "must be between 60 and 900",
    );
    Some(Some(AwsIamConfig {
        sts_endpoint: endpoint?,
        timeout: timeout?,
        max_clock_skew: max_clock_skew?,
    }))
}

/// An endpoint requests are forwarded to: the workspace's URL rule
/// ([`checked_url`]), and nothing but `scheme://host[:port]`.
fn check_endpoint(url: &str) -> Result<(), String> {
    checked_url("the STS endpoint", url, PlainHttp::LoopbackOnly).map_err(|e| e.to_string())?;
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    if rest.is_empty() || rest.starts_with('/') || url.contains(['?', '#', '@']) {
        return Err(format!("{url:?} must be a plain https://host[:port] URL"));
    }
    Ok(())
}
