//! Issuing access tokens: [`Issuer`] turns a [`TokenRequest`] into a signed
//! RFC 9068 token with the key set's active signer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::claims::{Attributes, BearerToken, Confirmation, Jti};
use crate::clock::{SystemClock, WallClock};
use crate::keys::SignError;
use crate::{jws, Algorithm, KeySet};

/// Token lifetimes: the default, and the cap no request can exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    default: Duration,
    max: Duration,
}

impl Default for Lifetime {
    /// 300 s by default, at most 900 s.
    fn default() -> Self {
        Self {
            default: Duration::from_secs(300),
            max: Duration::from_secs(900),
        }
    }
}

impl Lifetime {
    /// A lifetime policy; `default` must be at least one second and not above `max`.
    pub fn new(default: Duration, max: Duration) -> Result<Self, IssueError> {
        if default.as_secs() == 0 || default > max {
            return Err(IssueError::InvalidLifetime { default, max });
        }
        Ok(Self { default, max })
    }

    /// The default lifetime.
    pub fn default_ttl(&self) -> Duration {
        self.default
    }

    /// The cap.
    pub fn max_ttl(&self) -> Duration {
        self.max
    }
}

/// What a token is for: who it names and where it may be used.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequest {
    /// `sub`: the connector id.
    pub subject: String,
    /// `client_id`: the OAuth client that authenticated.
    pub client_id: String,
    /// `aud`: one audience, already checked against what the connector may ask for.
    pub audience: String,
    /// `scope`: granted scopes, space separated.
    pub scope: Option<String>,
    /// Connector attributes, as private claims.
    pub attributes: Attributes,
    /// Requested lifetime; the default when `None`, never above the cap.
    pub ttl: Option<Duration>,
}

impl TokenRequest {
    /// A request for `subject` (also the `client_id`) and `audience`.
    pub fn new(subject: impl Into<String>, audience: impl Into<String>) -> Self {
        let subject = subject.into();
        Self {
            client_id: subject.clone(),
            subject,
            audience: audience.into(),
            scope: None,
            attributes: Attributes::default(),
            ttl: None,
        }
    }
}

/// A signed token and what the audit log and the token response need to know about it.
#[derive(Clone)]
pub struct IssuedToken {
    /// The compact JWS.
    pub token: BearerToken,
    /// Its `jti`.
    pub jti: String,
    /// The signing key.
    pub kid: String,
    /// The signing algorithm.
    pub alg: Algorithm,
    /// `iat` (Unix seconds).
    pub issued_at: u64,
    /// `exp` (Unix seconds).
    pub expires_at: u64,
}

impl IssuedToken {
    /// Seconds from issue to expiry: the `expires_in` of the token response.
    pub fn expires_in(&self) -> u64 {
        self.expires_at - self.issued_at
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &self.token)
            .field("jti", &self.jti)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a token was not issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The key set has no active key.
    #[error("no signing key is active")]
    NoActiveKey,
    /// The active key's publication ends too soon to sign a useful token.
    #[error("the active key's publication ends in {remaining_secs} s; no token can be issued until the next key is active")]
    KeyRetiring {
        /// Seconds until its publication ends.
        remaining_secs: u64,
    },
    /// The signer failed.
    #[error("signing failed: {0}")]
    Sign(SignError),
    /// A signer that waits on a service took longer than the issuer's
    /// sign deadline ([`Issuer::with_sign_deadline`]).
    #[error("signing took longer than {0:?}")]
    SignTimedOut(Duration),
    /// A field of the request is empty or malformed.
    #[error("invalid token request: {0}")]
    InvalidRequest(&'static str),
    /// `default` is zero or above `max`.
    #[error("invalid lifetime: default {default:?} must be at least 1 s and at most the maximum {max:?}")]
    InvalidLifetime {
        /// The default.
        default: Duration,
        /// The cap.
        max: Duration,
    },
}

/// Issues access tokens for one issuer URL with a key set.
///
/// ```
/// # tokio_test_block_on(async {
/// use std::sync::Arc;
/// use oidc_core::keys::LocalSigner;
/// use oidc_core::{Algorithm, Issuer, KeySet, Lifetime, TokenRequest};
///
/// let (signer, _pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
/// let issuer = Issuer::new("https://tokens.example.com", Arc::new(KeySet::single(Arc::new(signer))), Lifetime::default()).unwrap();
/// let issued = issuer.issue(&TokenRequest::new("connector-1", "https://api.example.com")).await.unwrap();
/// assert_eq!(issued.expires_in(), 300);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Issuer {
    issuer: Arc<str>,
    keys: Arc<KeySet>,
    lifetime: Lifetime,
    clock: Arc<dyn WallClock>,
    /// How long a signer that is not [in process](crate::keys::Signer::signs_in_process) may take.
    sign_deadline: Option<Duration>,
}

/// Tokens shorter-lived than this (or than half the lifetime asked for, for
/// lifetimes under 20 s) are not worth issuing near a key's retirement.
const MIN_TTL_SECS: u64 = 10;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<&'a Confirmation>,
    #[serde(flatten)]
    attributes: &'a Map<String, Value>,
}

impl Issuer {
    /// An issuer named `issuer` (the exact `iss` value) signing with `keys`.
    pub fn new(issuer: impl Into<String>, keys: Arc<KeySet>, lifetime: Lifetime) -> Result<Self, IssueError> {
        let issuer = issuer.into();
        if issuer.is_empty() {
            return Err(IssueError::InvalidRequest("the issuer URL is empty"));
        }
        Ok(Self {
            issuer: issuer.into(),
            keys,
            lifetime,
            clock: Arc::new(SystemClock),
            sign_deadline: None,
        })
    }

    /// Bounds each signature by a signer that waits on a service (KMS) to
    /// `deadline`: past it, issuing fails with [`IssueError::SignTimedOut`]
    /// instead of waiting on, so a caller can answer "try again later" within
    /// its own time limit. A local key signs without the timer. Needs a Tokio
    /// runtime with its time driver.
    pub fn with_sign_deadline(mut self, deadline: Duration) -> Self {
        self.sign_deadline = Some(deadline);
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key set.
    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// The lifetime policy.
    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }

    /// Signs a token for `request`.
    pub async fn issue(&self, request: &TokenRequest) -> Result<IssuedToken, IssueError> {
        self.issue_with_confirmation(request, None).await
    }

    /// Signs a token for `request`, bound to a key when `cnf` is given: a
    /// DPoP-bound token (RFC 9449 §6) carries `cnf: {"jkt": <thumbprint>}`
    /// ([`Confirmation::jkt`]) and is then refused without a proof signed by
    /// that key. A `cnf` naming no key (no member, or an empty `jkt`) is refused.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use oidc_core::claims::Confirmation;
    /// use oidc_core::dpop::DpopKey;
    /// use oidc_core::keys::LocalSigner;
    /// use oidc_core::{Algorithm, Issuer, KeySet, Lifetime, TokenRequest};
    ///
    /// let (signer, _pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
    /// let issuer = Issuer::new("https://tokens.example.com", Arc::new(KeySet::single(Arc::new(signer))), Lifetime::default()).unwrap();
    /// let dpop_key = DpopKey::generate().unwrap();
    /// let cnf = Confirmation::jkt(dpop_key.thumbprint());
    /// let request = TokenRequest::new("connector-1", "https://api.example.com");
    /// let issued = issuer.issue_with_confirmation(&request, Some(&cnf)).await.unwrap();
    /// # drop(issued);
    /// # });
    /// ```
    pub async fn issue_with_confirmation(
        &self,
        request: &TokenRequest,
        cnf: Option<&Confirmation>,
    ) -> Result<IssuedToken, IssueError> {
        if cnf.is_some_and(|cnf| match &cnf.jkt {
            Some(jkt) => jkt.is_empty(),
            None => cnf.other.is_empty(),
        }) {
            return Err(IssueError::InvalidRequest("cnf names no key"));
        }
        if request.subject.is_empty() {
            return Err(IssueError::InvalidRequest("subject is empty"));
        }
        if request.client_id.is_empty() {
            return Err(IssueError::InvalidRequest("client_id is empty"));
        }
        if request.audience.is_empty() {
            return Err(IssueError::InvalidRequest("audience is empty"));
        }
        let state = self.keys.current();
        let active = state.active().ok_or(IssueError::NoActiveKey)?;

        let now = self.clock.now();
        let ttl = request
            .ttl
            .unwrap_or(self.lifetime.default)
            .min(self.lifetime.max)
            .min(active.max_lifetime().unwrap_or(Duration::MAX))
            .as_secs()
            .max(1);
        let mut exp = now.saturating_add(ttl);
        if let Some(limit) = active.expires_by() {
            if limit < exp {
                let remaining_secs = limit.saturating_sub(now);
                if remaining_secs < MIN_TTL_SECS.min(ttl.div_ceil(2)) {
                    return Err(IssueError::KeyRetiring { remaining_secs });
                }
                exp = limit;
            }
        }
        // A failing RNG is a signer that cannot work right now.
        let jti = Jti::random()
            .map_err(|e| {
                IssueError::Sign(SignError::Unavailable {
                    reason: e.to_string(),
                    retry_after: None,
                })
            })?
            .into_string();
        let claims = Claims {
            iss: &self.issuer,
            sub: &request.subject,
            aud: &request.audience,
            client_id: &request.client_id,
            iat: now,
            nbf: now,
            exp,
            jti: &jti,
            scope: request.scope.as_deref().filter(|s| !s.is_empty()),
            cnf,
            attributes: request.attributes.as_map(),
        };
        let payload =
            serde_json::to_vec(&claims).map_err(|_| IssueError::InvalidRequest("claims do not serialize"))?;
        let signer = active.signer();
        let signing = jws::sign(active.encoded_header(), &payload, signer.as_ref());
        let token = match self.sign_deadline {
            Some(deadline) if !signer.signs_in_process() => tokio::time::timeout(deadline, signing)
                .await
                .map_err(|_| IssueError::SignTimedOut(deadline))?,
            _ => signing.await,
        }
        .map_err(IssueError::Sign)?;
        Ok(IssuedToken {
            token: BearerToken::new(token),
            jti,
            kid: active.signer().kid().to_owned(),
            alg: active.signer().algorithm(),
            issued_at: now,
            expires_at: exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualWallClock;
    use crate::keys::LocalSigner;
    use crate::keys::{Signer, VerifyingKey};
    use crate::keyset::{ActiveKey, KeySetState};

    const NOW: u64 = 1_700_000_000;

    /// An issuer whose key's tokens must expire by `limit`.
    fn issuer(limit: u64) -> Issuer {
        let (signer, _) = LocalSigner::generate(Algorithm::ES256).expect("a key");
        let state = KeySetState::new(Some(ActiveKey::new(Arc::new(signer), Some(limit))), Vec::new())
            .expect("one key");
        let lifetime = Lifetime::new(Duration::from_secs(300), Duration::from_secs(900)).expect("lifetime");
        Issuer::new("https://issuer.test", Arc::new(KeySet::new(state)), lifetime)
            .expect("issuer")
            .with_clock(Arc::new(ManualWallClock::new(NOW)))
    }

    async fn exp(issuer: &Issuer, ttl: u64) -> Result<u64, IssueError> {
        let request = TokenRequest {
            ttl: Some(Duration::from_secs(ttl)),
            ..TokenRequest::new("c", "https://api.test")
        };
        issuer.issue(&request).await.map(|t| t.expires_at)
    }

    #[tokio::test]
    async fn the_keys_limit_shortens_tokens_and_refuses_only_what_is_not_worth_issuing() {
        // Far from the limit: the lifetime asked for.
        assert_eq!(exp(&issuer(NOW + 1000), 300).await, Ok(NOW + 300));
        // Near it: shortened to the limit.
        assert_eq!(exp(&issuer(NOW + 50), 300).await, Ok(NOW + 50));
        // Closer than 10 s: refused.
        assert_eq!(
            exp(&issuer(NOW + 9), 300).await,
            Err(IssueError::KeyRetiring { remaining_secs: 9 })
        );
        // A short lifetime is worth issuing with half of it left, not less.
        assert_eq!(exp(&issuer(NOW + 2), 4).await, Ok(NOW + 2));
        assert_eq!(
            exp(&issuer(NOW + 1), 4).await,
            Err(IssueError::KeyRetiring { remaining_secs: 1 })
        );
    }

    /// A signer waiting on a service that never answers.
    #[derive(Debug)]
    struct Unanswered(VerifyingKey);

    #[async_trait::async_trait]
    impl Signer for Unanswered {
        fn verifying_key(&self) -> &VerifyingKey {
            &self.0
        }
        async fn sign(&self, _: &[u8]) -> Result<Vec<u8>, SignError> {
            std::future::pending().await
        }
    }

    fn issuer_with(signer: Arc<dyn Signer>, deadline: Duration) -> Issuer {
        let keys = KeySet::single(signer);
        Issuer::new("https://issuer.test", Arc::new(keys), Lifetime::default())
            .expect("issuer")
            .with_sign_deadline(deadline)
    }

    #[tokio::test]
    async fn a_remote_signer_past_the_sign_deadline_fails_cleanly() {
        let (local, _) = LocalSigner::generate(Algorithm::ES256).expect("a key");
        let remote = Arc::new(Unanswered(local.verifying_key().clone()));
        let deadline = Duration::from_millis(50);
        let started = std::time::Instant::now();
        let result = issuer_with(remote, deadline)
            .issue(&TokenRequest::new("c", "https://api.test"))
            .await;
        assert_eq!(result.map(|_| ()), Err(IssueError::SignTimedOut(deadline)));
        assert!(started.elapsed() >= deadline);
    }

    #[test]
    fn a_local_key_signs_without_the_timer() {
        // No time driver: a timer would panic here.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (local, _) = LocalSigner::generate(Algorithm::ES256).expect("a key");
        let issuer = issuer_with(Arc::new(local), Duration::from_millis(1));
        let issued = runtime.block_on(issuer.issue(&TokenRequest::new("c", "https://api.test")));
        assert!(issued.is_ok());
    }
}
