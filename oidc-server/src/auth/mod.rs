//! Client authentication at the token endpoint: which credential a request
//! presents, and whether it proves a registered connector.
//!
//! Methods: `client_secret_basic`, `client_secret_post`, `private_key_jwt`
//! (RFC 7523), `aws_iam`. A request presenting more than one is refused
//! (RFC 6749 §2.3). An upstream identity token ([`federated`]) proves a
//! connector too: as a token exchange's subject token, or as a client
//! assertion whose `iss` is an `[[upstream_issuers]]` entry.

mod assertion;
pub(crate) mod aws_iam;
pub(crate) mod federated;

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use base64::Engine;
use zeroize::Zeroizing;

pub(crate) use assertion::AssertionRules;
pub(crate) use federated::{FederatedError, Federation, Refusal as FederatedRefusal, UpstreamIdentity};

use crate::config::{AwsIamConfig, ConnectorConfig};
use crate::connectors::Connectors;
use crate::form::{Form, FormError};
use crate::readiness::Health;
use crate::replay::{FirstUse, ReplayKey, ReplayStore, StoreError};

/// `client_assertion_type` of RFC 7523 §2.2.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The authentication methods this server supports, as advertised in discovery.
pub(crate) const METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "private_key_jwt"];

/// A credential found in a token request.
pub(crate) enum Credential {
    /// HTTP Basic with the client id and secret.
    Basic {
        /// Client id.
        client_id: String,
        /// Secret (zeroized on drop).
        secret: Zeroizing<String>,
    },
    /// `client_id` and `client_secret` in the form.
    Post {
        /// Client id.
        client_id: String,
        /// Secret (zeroized on drop).
        secret: Zeroizing<String>,
    },
    /// A signed `sts:GetCallerIdentity` request ([`aws_iam`]).
    AwsIam {
        /// `client_id` from the form (required for this method).
        client_id: String,
        /// The encoded signed request.
        assertion: String,
    },
    /// A signed JWT assertion.
    Assertion {
        /// `client_id` from the form, if sent.
        client_id: Option<String>,
        /// The compact JWS.
        assertion: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method())?;
        if let Some(id) = self.claimed_client_id() {
            write!(f, "({id:?})")?;
        }
        Ok(())
    }
}

impl Credential {
    /// The method's registered name.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "client_secret_basic",
            Self::Post { .. } => "client_secret_post",
            Self::Assertion { .. } => "private_key_jwt",
            Self::AwsIam { .. } => aws_iam::METHOD,
        }
    }

    /// The client id the request claims (not yet proven).
    pub(crate) fn claimed_client_id(&self) -> Option<&str> {
        match self {
            Self::Basic { client_id, .. } | Self::Post { client_id, .. } | Self::AwsIam { client_id, .. } => {
                Some(client_id)
            }
            Self::Assertion { client_id, .. } => client_id.as_deref(),
        }
    }

    /// The client to name in the audit event of a refusal: the claimed
    /// client id, or for an assertion sent without one, its (unverified)
    /// `sub`. Not proven: the audit log says so.
    pub(crate) fn audit_client(&self) -> Option<String> {
        match self {
            Self::Assertion {
                client_id: None,
                assertion,
            } => assertion::claimed_subject_of(assertion),
            other => other.claimed_client_id().map(str::to_owned),
        }
    }

    /// Finds the one credential in `headers` and `form`.
    pub(crate) fn from_request(headers: &HeaderMap, form: &Form) -> Result<Self, CredentialError> {
        let authorization = headers.get_all(header::AUTHORIZATION).iter().collect::<Vec<_>>();
        if authorization.len() > 1 {
            return Err(CredentialError::SeveralAuthorizationHeaders);
        }
        let form_client_id = form.single("client_id")?;
        let form_secret = form.single("client_secret")?;
        let assertion = form.single("client_assertion")?;
        let assertion_type = form.single("client_assertion_type")?;

        let presented = usize::from(!authorization.is_empty())
            + usize::from(form_secret.is_some())
            + usize::from(assertion.is_some() || assertion_type.is_some());
        if presented > 1 {
            return Err(CredentialError::SeveralMethods);
        }

        if let Some(value) = authorization.first() {
            let (client_id, secret) =
                parse_basic(value.as_bytes()).ok_or(CredentialError::UnreadableBasic)?;
            if form_client_id.is_some_and(|id| id != client_id) {
                return Err(CredentialError::ClientIdMismatch);
            }
            return Ok(Self::Basic { client_id, secret });
        }
        if let Some(secret) = form_secret {
            let client_id = form_client_id.ok_or(CredentialError::SecretWithoutClientId)?;
            return Ok(Self::Post {
                client_id: client_id.to_owned(),
                secret: Zeroizing::new(secret.to_owned()),
            });
        }
        if assertion_type == Some(aws_iam::AWS_IAM_ASSERTION_TYPE) {
            let assertion = assertion.ok_or(CredentialError::MissingAssertion)?;
            let client_id = form_client_id.ok_or(CredentialError::AwsIamWithoutClientId)?;
            return Ok(Self::AwsIam {
                client_id: client_id.to_owned(),
                assertion: assertion.to_owned(),
            });
        }
        if assertion.is_some() || assertion_type.is_some() {
            if assertion_type != Some(JWT_BEARER) {
                return Err(CredentialError::UnsupportedAssertionType);
            }
            let assertion = assertion.ok_or(CredentialError::MissingAssertion)?;
            return Ok(Self::Assertion {
                client_id: form_client_id.map(str::to_owned),
                assertion: assertion.to_owned(),
            });
        }
        Err(CredentialError::NoCredential)
    }
}

/// Why a request presents no one readable client credential (RFC 6749
/// §2.3: one method per request). The token route answers each as RFC 6749
/// `invalid_request`, or `invalid_client` where no credential can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialError {
    /// More than one `Authorization` header.
    SeveralAuthorizationHeaders,
    /// A parameter a credential is read from appears more than once.
    Form(FormError),
    /// More than one method presented: a header, a secret, an assertion.
    SeveralMethods,
    /// An `Authorization` header that is not a readable `Basic` credential.
    UnreadableBasic,
    /// The form's `client_id` is not the `Authorization` header's.
    ClientIdMismatch,
    /// `client_secret` without `client_id`.
    SecretWithoutClientId,
    /// A `client_assertion_type` without its `client_assertion`.
    MissingAssertion,
    /// An AWS IAM assertion without `client_id`.
    AwsIamWithoutClientId,
    /// A `client_assertion_type` other than JWT bearer or AWS IAM.
    UnsupportedAssertionType,
    /// No credential at all.
    NoCredential,
}

impl From<FormError> for CredentialError {
    fn from(error: FormError) -> Self {
        Self::Form(error)
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
pub(crate) fn parse_basic(value: &[u8]) -> Option<(String, Zeroizing<String>)> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    );
    let decoded = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let mut id = form_decode(id);
    let secret = form_decode(secret);
    if id.is_empty() || secret.is_empty() {
        return None;
    }
    // The id is no secret: moved out of its zeroizing wrapper.
    Some((std::mem::take(&mut *id), secret))
}

/// `application/x-www-form-urlencoded` decoding of one value (RFC 6749
/// §2.3.1 encodes the id and secret so): `+` is a space, `%XX` a byte, and
/// every other character stands for itself (a lone `%`, and `&` or `=`,
/// which would end a value in a form body). Bytes that are not UTF-8 become
/// U+FFFD, as in the form parser. Every copy of the text is zeroized.
fn form_decode(text: &str) -> Zeroizing<String> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i..i + 2).map(|h| (hex(h[0]), hex(h[1]))) {
                Some((Some(high), Some(low))) => {
                    // Two hex digits: below 256.
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
    }
    match String::from_utf8(std::mem::take(&mut *out)) {
        Ok(text) => Zeroizing::new(text),
        Err(error) => {
            let bytes = Zeroizing::new(error.into_bytes());
            Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

/// Why authentication failed; goes to the audit log, never to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// Unknown client, no such credential registered, or a wrong one (indistinguishable).
    BadCredential,
    /// The client has no keys registered for `private_key_jwt`.
    NoKeys,
    /// The assertion was refused; the text says why.
    Assertion(&'static str),
    /// The assertion's `jti` (or signed request) was seen before.
    Replayed,
    /// STS said the caller is someone no connector is bound to.
    UnboundPrincipal,
}

impl AuthFailure {
    /// Short reason code for metrics and the audit log.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::BadCredential => "bad_client_credentials",
            Self::NoKeys => "no_client_keys",
            Self::Assertion(reason) => reason,
            Self::Replayed => "assertion_replayed",
            Self::UnboundPrincipal => "aws_principal_not_bound",
        }
    }
}

/// Checks credentials against the registry.
#[derive(Debug, Clone)]
pub(crate) struct Authenticator {
    connectors: Arc<Connectors>,
    rules: AssertionRules,
    replay: Arc<dyn ReplayStore>,
    aws_iam: Option<AwsIam>,
    /// The upstream issuers and the bindings to them, if any.
    federation: Option<Arc<Federation>>,
    /// One health for the replay store, learned from real calls.
    replay_health: Arc<Health>,
}

/// What AWS IAM authentication needs: where STS is, and an HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct AwsIam {
    /// The `[aws_iam]` configuration.
    pub config: AwsIamConfig,
    /// The issuer the signed request must name.
    pub issuer: String,
    /// HTTP client (no redirects).
    pub client: reqwest::Client,
}

/// Why no connector was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// The credential does not prove a registered connector (401).
    Failed(AuthFailure),
    /// The check could not be completed (a backend failed); retry later (503).
    Unavailable {
        /// Why, for the audit log.
        reason: &'static str,
        /// When to retry.
        retry_after: std::time::Duration,
    },
}

impl From<AuthFailure> for AuthError {
    fn from(failure: AuthFailure) -> Self {
        Self::Failed(failure)
    }
}

impl Authenticator {
    /// An authenticator over `connectors`.
    pub(crate) fn new(
        connectors: Arc<Connectors>,
        rules: AssertionRules,
        replay: Arc<dyn ReplayStore>,
        aws_iam: Option<AwsIam>,
        federation: Option<Federation>,
    ) -> Self {
        Self {
            connectors,
            rules,
            replay,
            aws_iam,
            federation: federation.map(Arc::new),
            replay_health: Arc::new(Health::default()),
        }
    }

    /// The upstream issuers, if any are configured.
    pub(crate) fn federation(&self) -> Option<&Federation> {
        self.federation.as_deref()
    }

    /// The connector an upstream identity token proves (a token exchange's
    /// subject token, or a client assertion of an upstream issuer): the
    /// token verified, bound to exactly one connector, and for a one-time
    /// entry recorded as used (after the binding, so that tokens bound to
    /// no one never reach the store). A `client_id` the request names must
    /// be the bound connector's.
    pub(crate) async fn federated(
        &self,
        token: &str,
        client_id: Option<&str>,
        now: u64,
    ) -> Result<federated::Bound, FederatedError> {
        let federation = self
            .federation
            .as_ref()
            .ok_or(FederatedError::Refused(FederatedRefusal {
                reason: "upstream_unknown_issuer",
                description: "no upstream issuer is trusted",
                entry: None,
                subject: None,
            }))?;
        let bound = federation.check(token).await?;
        if client_id.is_some_and(|id| id != bound.connector.id) {
            return Err(FederatedError::Refused(FederatedRefusal {
                reason: "upstream_client_mismatch",
                description: "the subject token is bound to another client than client_id",
                entry: Some(Arc::clone(&bound.identity.entry)),
                subject: Some(bound.identity.subject.clone()),
            }));
        }
        if let Some((key, until)) = &bound.one_time {
            match self.first_use(key, *until, now).await {
                Ok(()) => {}
                Err(AuthError::Failed(_)) => {
                    return Err(FederatedError::Refused(FederatedRefusal {
                        reason: "upstream_replayed",
                        description: "the subject token was already exchanged",
                        entry: Some(Arc::clone(&bound.identity.entry)),
                        subject: Some(bound.identity.subject.clone()),
                    }))
                }
                Err(AuthError::Unavailable { reason, retry_after }) => {
                    return Err(FederatedError::Unavailable { reason, retry_after })
                }
            }
        }
        Ok(bound)
    }

    /// Whether one-time uses can be recorded (for `/readyz`): what the last
    /// call found, and after a failure a probe at most every
    /// [`Health::PROBE_INTERVAL`]. A failed probe is logged with its detail;
    /// the error's text is for logs, not for a public answer (an AWS error
    /// names the account, the role and the table).
    pub(crate) async fn replay_ready(&self) -> Result<(), StoreError> {
        if !self.replay_health.is_healthy() && self.replay_health.probe_due() {
            let probe = self.replay.ready().await;
            self.replay_health.record(probe.is_ok());
            if let Err(error) = &probe {
                tracing::warn!(store = self.replay.kind(), %error, "readiness: the replay store probe failed");
            }
            probe?;
        }
        if self.replay_health.is_healthy() {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "the {} replay store failed its last call",
                self.replay.kind()
            )))
        }
    }

    /// The registry.
    pub(crate) fn connectors(&self) -> &Arc<Connectors> {
        &self.connectors
    }

    /// The connector `credential` proves, or why not.
    pub(crate) async fn authenticate(
        &self,
        credential: &Credential,
        now: u64,
    ) -> Result<Arc<ConnectorConfig>, AuthError> {
        match credential {
            Credential::Basic { client_id, secret } | Credential::Post { client_id, secret } => Ok(self
                .connectors
                .check_secret(client_id, secret)
                .cloned()
                .ok_or(AuthFailure::BadCredential)?),
            Credential::Assertion { client_id, assertion } => {
                let checked = assertion::check(
                    assertion,
                    client_id.as_deref(),
                    &self.connectors,
                    &self.rules,
                    now,
                )?;
                let key = ReplayKey::assertion(&self.rules.issuer, &checked.connector.id, &checked.jti);
                self.first_use(&key, checked.remember_until, now).await?;
                Ok(checked.connector)
            }
            Credential::AwsIam { client_id, assertion } => {
                self.authenticate_aws(client_id, assertion, now).await
            }
        }
    }

    /// Records a one-time credential; a replay is an authentication failure,
    /// a store that cannot record it a 503 (never an accepted login).
    async fn first_use(&self, key: &ReplayKey, until: u64, now: u64) -> Result<(), AuthError> {
        let result = self.replay.first_use(key, until, now).await;
        self.replay_health.record(result.is_ok());
        match result {
            Ok(FirstUse::Fresh) => Ok(()),
            Ok(FirstUse::Replayed) => Err(AuthFailure::Replayed.into()),
            Err(error) => Err(AuthError::Unavailable {
                reason: match error {
                    StoreError::Full(_) => "replay_store_full",
                    StoreError::Unavailable(_) => "replay_store_unavailable",
                },
                retry_after: REPLAY_RETRY_AFTER,
            }),
        }
    }

    async fn authenticate_aws(
        &self,
        client_id: &str,
        assertion: &str,
        now: u64,
    ) -> Result<Arc<ConnectorConfig>, AuthError> {
        let aws = self
            .aws_iam
            .as_ref()
            .ok_or(AuthFailure::Assertion("aws_iam_disabled"))?;
        // Local checks, then STS; only a signature STS vouched for, of a
        // principal bound to the client, is recorded, so forged requests and
        // strangers' own credentials never reach the store.
        let request = aws_iam::parse(assertion, &aws.issuer, &aws.config, now)?;
        let caller = match aws_iam::ask_sts(&aws.client, &aws.config, &request).await {
            aws_iam::StsOutcome::Caller(caller) => caller,
            aws_iam::StsOutcome::Refused => return Err(AuthFailure::Assertion("sts_refused").into()),
            aws_iam::StsOutcome::Unavailable => {
                return Err(AuthError::Unavailable {
                    reason: "sts_unavailable",
                    retry_after: aws_iam::RETRY_AFTER,
                })
            }
        };
        // The binding before the store: anyone can have AWS credentials of
        // their own, and a principal bound to no connector must not cost a
        // write nor fill the store. The connector is looked up only after
        // STS answered, so that an unknown client id and an unbound
        // principal take the same path (neither touches the store).
        let connector = match self.connectors.get(client_id) {
            Some(c) if aws_iam::principal_matches(&caller, &c.aws_principals, &c.aws_principal_ids) => {
                c.clone()
            }
            _ => return Err(AuthFailure::UnboundPrincipal.into()),
        };
        // A signed request stays valid at STS for its whole skew window, so
        // each one is accepted once, like a client assertion's jti.
        let remember_until = request.signed_at + aws.config.max_clock_skew.as_secs();
        self.first_use(&ReplayKey::aws_signature(&request.signature), remember_until, now)
            .await?;
        Ok(connector)
    }
}

/// A retry hint when the replay store cannot record a use.
const REPLAY_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    /// `Authorization: Basic` of `pair`, as a client sends it.
    fn header(pair: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }

    #[test]
    fn basic_header_forms() {
        let (id, secret) = parse_basic(header("demo:s3cret").as_bytes()).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("demo", "s3cret"));
        let (id, secret) = parse_basic(header("a%3Ab:x%2By+z").as_bytes()).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("a:b", "x+y z"));
        assert!(parse_basic(b"Basic !!!").is_none());
        assert!(parse_basic(header("no-colon").as_bytes()).is_none());
        assert!(parse_basic(header(":secret").as_bytes()).is_none());
        assert!(parse_basic(b"Bearer abc").is_none());
        assert!(parse_basic(b"Basic").is_none());
        assert!(parse_basic(&[0xff, 0xfe]).is_none());
    }

    /// Found by the fuzz target `basic` (the header must mean exactly the
    /// id and secret it encodes): an unencoded '&' cut the id or secret
    /// short, so "s3cret&anything" passed for the secret "s3cret".
    #[test]
    fn fuzz_regression_basic_ampersand_is_literal() {
        let (id, secret) = parse_basic(header("demo:s3cret&x").as_bytes()).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("demo", "s3cret&x"));
        let (id, secret) = parse_basic(header("a&b=c:%26&").as_bytes()).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("a&b=c", "&&"));
    }

    /// The same decoding as the form parser's, on what trips decoders up.
    #[test]
    fn form_decode_matches_the_form_parser() {
        for text in [
            "plain",
            "a+b",
            "%41%42",
            "%4",
            "%",
            "%%41",
            "%zz",
            "%e2%82%ac",
            "%ff%fe",
            "%C3",
            "a=b",
            "x%2By+z",
            "%2",
            "100%",
            "%%",
            "+%2B+",
            "é",
            "",
        ] {
            let expected = form_urlencoded::parse(format!("v={}", text.replace('&', "%26")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            assert_eq!(form_decode(text).as_str(), expected, "{text:?}");
        }
    }
}
