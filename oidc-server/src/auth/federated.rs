//! Federated identity: an upstream identity token (what a workload's
//! platform gives it: an AWS STS web identity token, a Kubernetes projected
//! service-account token, a SPIFFE JWT-SVID, another provider's JWT) as the
//! credential of a connector, in a token exchange (RFC 8693) or as a
//! `client_assertion` (the way Microsoft Entra's federated credentials
//! work).
//!
//! The token is verified by oidc-core's [`TrustedIssuers`], built from the
//! `[[upstream_issuers]]` entries at the first exchange: its unverified
//! `iss` picks the entry exactly, and a token of any other issuer is
//! refused before anything is fetched. Then exactly one connector's
//! `federated` binding must match the verified `sub` and claims (the
//! configuration guarantees no two can), its `copy_claims` are read, and
//! for an entry with `one_time_use` the token is recorded in the replay
//! store (by the caller, [`Authenticator`](super::Authenticator), which
//! owns the store's health).
//!
//! Refusals carry a reason from a fixed set (for metrics and the audit
//! log) and a short description for the client; neither ever holds the
//! token or text taken from it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use oidc_core::claims::Attributes;
use oidc_core::clock::WallClock;
use oidc_core::json;
use oidc_core::jws::{JwsError, UnverifiedJws};
use oidc_core::keys::SignatureError;
use oidc_core::verify::trust::{Trusted, TrustedIssuers};
use oidc_core::{KeyLookupError, VerifyError};
use serde_json::{Map, Value};

use crate::config::{ConnectorConfig, FederatedBinding, UpstreamIssuerConfig};
use crate::connectors::Connectors;
use crate::replay::ReplayKey;

/// `grant_type` of a token exchange (RFC 8693 §2.1).
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Largest JSON of one claim copied into a token (`copy_claims`): our own
/// tokens stay well under the 8 KiB verifiers accept.
const MAX_COPIED_CLAIM_LEN: usize = 1024;

/// A retry hint when the upstream issuer's keys cannot be had.
const KEYS_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The `[[upstream_issuers]]` and the bindings to them.
pub(crate) struct Federation {
    /// The entries, by exact issuer.
    entries: HashMap<String, Arc<UpstreamIssuerConfig>>,
    /// The entries by name.
    names: HashMap<String, Arc<UpstreamIssuerConfig>>,
    /// The bindings, by entry name: the connector and its binding's index.
    bindings: HashMap<String, Vec<(Arc<ConnectorConfig>, usize)>>,
    /// Built at the first exchange; `None` if it could not be (no HTTP client).
    registry: OnceLock<Option<TrustedIssuers>>,
    /// Bound on each fetch of discovery or a JWKS.
    fetch_timeout: Duration,
    clock: Arc<dyn WallClock>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("entries", &self.names.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A verified upstream token bound to one connector, before its one-time
/// use is recorded.
pub(crate) struct Bound {
    /// The connector it is bound to.
    pub(crate) connector: Arc<ConnectorConfig>,
    /// The connector's attributes and the claims copied into them.
    pub(crate) attributes: Attributes,
    /// Who vouched, for the audit log.
    pub(crate) identity: UpstreamIdentity,
    /// The replay store's key and how long to keep it, if the entry is
    /// `one_time_use`.
    pub(crate) one_time: Option<(ReplayKey, u64)>,
}

/// The upstream identity behind a token, for the audit log: the entry's
/// name (ours) and the verified `sub`.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamIdentity {
    /// The `[[upstream_issuers]]` entry.
    pub(crate) entry: Arc<str>,
    /// The verified `sub` (shortened when logged).
    pub(crate) subject: String,
}

/// Why an upstream token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FederatedError {
    /// The token fails a check (RFC 8693 `invalid_grant`, or
    /// `invalid_client` for a client assertion).
    Refused(Refusal),
    /// The check could not be completed (the issuer's keys could not be
    /// fetched; the replay store failed): retry later (503).
    Unavailable {
        /// Why, for the audit log and metrics.
        reason: &'static str,
        /// When to retry.
        retry_after: Duration,
    },
}

/// A refused upstream token: a reason from a fixed set, a description safe
/// to show, and what is known of its issuer and subject (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The reason code (`upstream_expired`, ...).
    pub(crate) reason: &'static str,
    /// For the client: never text of the token.
    pub(crate) description: &'static str,
    /// The entry its `iss` named, when it named one.
    pub(crate) entry: Option<Arc<str>>,
    /// Its `sub`, once its signature verified.
    pub(crate) subject: Option<String>,
}

impl FederatedError {
    fn refused(reason: &'static str, description: &'static str) -> Self {
        Self::Refused(Refusal {
            reason,
            description,
            entry: None,
            subject: None,
        })
    }

    /// The same refusal, naming the entry and the verified subject.
    fn of(self, entry: &Arc<str>, subject: &str) -> Self {
        match self {
            Self::Refused(refusal) => Self::Refused(Refusal {
                entry: Some(Arc::clone(entry)),
                subject: Some(subject.to_owned()),
                ..refusal
            }),
            other => other,
        }
    }
}

impl Federation {
    /// The federation of `upstream` entries and the `federated` bindings of
    /// `connectors`; `None` without entries. `request_timeout` bounds the
    /// fetches of keys an exchange may have to wait for.
    pub(crate) fn new(
        upstream: &[UpstreamIssuerConfig],
        connectors: &Connectors,
        clock: Arc<dyn WallClock>,
        request_timeout: Duration,
    ) -> Option<Self> {
        if upstream.is_empty() {
            return None;
        }
        let upstream: Vec<Arc<UpstreamIssuerConfig>> = upstream.iter().cloned().map(Arc::new).collect();
        let mut bindings: HashMap<String, Vec<(Arc<ConnectorConfig>, usize)>> = HashMap::new();
        for connector in connectors.iter() {
            for (index, binding) in connector.federated.iter().enumerate() {
                bindings
                    .entry(binding.issuer.clone())
                    .or_default()
                    .push((Arc::clone(connector), index));
            }
        }
        Some(Self {
            entries: upstream
                .iter()
                .map(|u| (u.entry.issuer().to_owned(), Arc::clone(u)))
                .collect(),
            names: upstream
                .iter()
                .map(|u| (u.entry.name().to_owned(), Arc::clone(u)))
                .collect(),
            bindings,
            registry: OnceLock::new(),
            // Discovery then the JWKS, both within the request.
            fetch_timeout: request_timeout.mul_f64(0.3).max(Duration::from_secs(1)),
            clock,
        })
    }

    /// The registry of the entries, built once.
    fn registry(&self) -> Option<&TrustedIssuers> {
        self.registry
            .get_or_init(|| {
                let built = TrustedIssuers::builder()
                    .issuers(self.names.values().map(|u| u.entry.clone()))
                    .wall_clock(Arc::clone(&self.clock))
                    .timeout(self.fetch_timeout)
                    .build();
                built
                    .inspect_err(
                        |error| tracing::error!(%error, "token exchange disabled: the upstream registry"),
                    )
                    .ok()
            })
            .as_ref()
    }

    /// The entry whose issuer `token`'s unverified `iss` names, if any: an
    /// upstream token presented as a client assertion goes the federated
    /// way; any other assertion stays `private_key_jwt`.
    pub(crate) fn entry_of(&self, token: &str) -> Option<Arc<str>> {
        let jws = UnverifiedJws::decode(token, oidc_core::verify::MAX_TOKEN_LEN_LIMIT).ok()?;
        let claims = json::parse_object(jws.unverified_payload()).ok()?;
        let iss = claims.get("iss")?.as_str()?;
        self.entries.get(iss).map(|u| Arc::<str>::from(u.entry.name()))
    }

    /// Verifies `token`, finds the one connector bound to it and the claims
    /// it copies.
    pub(crate) async fn check(&self, token: &str) -> Result<Bound, FederatedError> {
        let registry = self.registry().ok_or(FederatedError::Unavailable {
            reason: "upstream_unavailable",
            retry_after: KEYS_RETRY_AFTER,
        })?;
        let trusted: Trusted<Value> = match registry.verify(token).await {
            Ok(trusted) => trusted,
            Err(error) => {
                // oidc-core's finer reason (a fixed code), for debugging.
                tracing::debug!(reason = error.reason(), "upstream token refused");
                let refusal = refusal_of(&error);
                return Err(match refusal {
                    FederatedError::Refused(refusal) => FederatedError::Refused(Refusal {
                        entry: self.entry_of(token),
                        ..refusal
                    }),
                    unavailable => {
                        tracing::warn!(%error, "upstream token not checked");
                        unavailable
                    }
                });
            }
        };
        let entry_name: Arc<str> = Arc::from(trusted.issuer_name());
        let claims = trusted.claims().as_object().ok_or(FederatedError::refused(
            "upstream_malformed",
            "the subject token's claims are not a JSON object",
        ))?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(FederatedError::refused(
                "upstream_malformed",
                "the subject token has no sub",
            ))?;
        let upstream = self
            .names
            .get(&*entry_name)
            .ok_or(FederatedError::refused("upstream_unknown_issuer", UNKNOWN_ISSUER))?;
        let connector = self
            .bound_connector(&entry_name, subject, claims)
            .map_err(|e| e.of(&entry_name, subject))?;
        let attributes = copied_attributes(&connector, claims).map_err(|e| e.of(&entry_name, subject))?;
        let one_time = upstream.one_time_use.then(|| {
            let jti = claims.get("jti").and_then(Value::as_str);
            let leeway = upstream.entry.policy().leeway_secs();
            // `exp` is required by every policy; past it (and the leeway)
            // the token is refused anyway.
            let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(u64::MAX);
            (
                ReplayKey::upstream_token(&entry_name, jti, token),
                exp.saturating_add(leeway),
            )
        });
        Ok(Bound {
            connector,
            attributes,
            identity: UpstreamIdentity {
                entry: entry_name,
                subject: subject.to_owned(),
            },
            one_time,
        })
    }

    /// The one connector whose binding to `entry` matches `subject` and
    /// `claims`.
    fn bound_connector(
        &self,
        entry: &str,
        subject: &str,
        claims: &Map<String, Value>,
    ) -> Result<Arc<ConnectorConfig>, FederatedError> {
        let mut found: Option<&Arc<ConnectorConfig>> = None;
        for (connector, index) in self.bindings.get(entry).into_iter().flatten() {
            let Some(binding) = connector.federated.get(*index) else {
                continue;
            };
            if !binding_matches(binding, subject, claims) {
                continue;
            }
            match found {
                Some(other) if other.id != connector.id => {
                    // The configuration refuses bindings that could both
                    // match; refuse rather than pick one.
                    tracing::error!(
                        first = %other.id,
                        second = %connector.id,
                        upstream = entry,
                        "an upstream token matches two connectors' bindings"
                    );
                    return Err(FederatedError::refused(
                        "upstream_ambiguous",
                        "the subject token's identity is bound to more than one client",
                    ));
                }
                _ => found = Some(connector),
            }
        }
        found.cloned().ok_or(FederatedError::refused(
            "upstream_not_bound",
            "the subject token's identity is bound to no client",
        ))
    }
}

const UNKNOWN_ISSUER: &str = "the subject token's issuer is not trusted";

/// Whether `binding` holds for a token of its entry with `subject` and `claims`.
fn binding_matches(binding: &FederatedBinding, subject: &str, claims: &Map<String, Value>) -> bool {
    binding.subject_glob.matches(subject)
        && binding
            .claims
            .iter()
            .all(|rule| rule.path.find(claims) == Some(&rule.value))
}

/// The connector's attributes with its `copy_claims` read from `claims`.
fn copied_attributes(
    connector: &ConnectorConfig,
    claims: &Map<String, Value>,
) -> Result<Attributes, FederatedError> {
    let mut attributes = connector.attributes.clone();
    for copy in &connector.copy_claims {
        let value = copy.path.find(claims).ok_or(FederatedError::refused(
            "upstream_claim_missing",
            "the subject token lacks a claim this client's tokens carry",
        ))?;
        let len = serde_json::to_string(value).map_or(usize::MAX, |text| text.len());
        if len > MAX_COPIED_CLAIM_LEN {
            return Err(FederatedError::refused(
                "upstream_claim_too_large",
                "a claim this client's tokens carry is too large in the subject token",
            ));
        }
        // The configuration refuses reserved names.
        attributes
            .insert(copy.attribute.clone(), value.clone())
            .map_err(|_| FederatedError::refused("upstream_claim_missing", "a copied claim is reserved"))?;
    }
    Ok(attributes)
}

/// A verification error as a refusal (a fixed reason, a description that
/// holds nothing of the token) or, when the issuer's keys could not be
/// had, as unavailable.
fn refusal_of(error: &VerifyError) -> FederatedError {
    let (reason, description) = match error {
        VerifyError::UnknownIssuer { .. } => ("upstream_unknown_issuer", UNKNOWN_ISSUER),
        VerifyError::Key(KeyLookupError::UnknownKid(_)) => (
            "upstream_unknown_key",
            "the subject token's key is not one of its issuer's",
        ),
        VerifyError::Key(_) | VerifyError::IssuerLookup(_) => {
            return FederatedError::Unavailable {
                reason: "upstream_keys_unavailable",
                retry_after: KEYS_RETRY_AFTER,
            }
        }
        VerifyError::Malformed(JwsError::TooLarge { .. }) => {
            ("upstream_too_large", "the subject token is too large")
        }
        VerifyError::Malformed(JwsError::Algorithm(_))
        | VerifyError::AlgorithmNotAllowed(_)
        | VerifyError::KeyAlgorithm { .. }
        | VerifyError::Signature(SignatureError::AlgorithmMismatch { .. }) => (
            "upstream_wrong_algorithm",
            "the subject token's algorithm is not accepted for its issuer",
        ),
        VerifyError::Signature(_) => (
            "upstream_bad_signature",
            "the subject token's signature does not verify",
        ),
        VerifyError::WrongType { .. } => (
            "upstream_wrong_typ",
            "the subject token's type (typ) is not accepted for its issuer",
        ),
        VerifyError::WrongAudience { .. } => (
            "upstream_wrong_audience",
            "the subject token is not for this token service (aud)",
        ),
        VerifyError::Expired { .. } => ("upstream_expired", "the subject token has expired"),
        VerifyError::NotYetValid { .. } | VerifyError::IssuedInFuture { .. } => {
            ("upstream_not_yet_valid", "the subject token is not valid yet")
        }
        VerifyError::TooOld { .. } => ("upstream_too_old", "the subject token was issued too long ago"),
        VerifyError::LifetimeTooLong { .. } => (
            "upstream_lifetime_too_long",
            "the subject token's lifetime is longer than its issuer's entry allows",
        ),
        VerifyError::RequiredClaim { .. } => (
            "upstream_claim_refused",
            "the subject token's claims do not meet its issuer's rules",
        ),
        _ => (
            "upstream_malformed",
            "the subject token is not a well-formed JWT of a trusted issuer",
        ),
    };
    FederatedError::refused(reason, description)
}
