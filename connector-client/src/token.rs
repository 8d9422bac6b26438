//! [`AccessToken`] and the [`TokenSource`] trait every way of getting one implements.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oidc_core::dpop::DpopKey;
use oidc_core::BearerToken;

use crate::Error;

/// An access token as the token endpoint granted it.
///
/// Cheap to clone (one reference count): a cached read hands out clones.
/// `Debug` never shows the token text; there is no `Display`. Write it out
/// deliberately with [`secret`](Self::secret).
///
/// A DPoP-bound token (RFC 9449, `token_type: DPoP`) carries the key it is
/// bound to ([`dpop_key`](Self::dpop_key)), so that whoever sends it (the
/// [`BearerAuth`](crate::BearerAuth) middleware) can sign a proof for each
/// request.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<Granted>);

#[derive(Clone)]
struct Granted {
    token: BearerToken,
    expires_in: Duration,
    scope: Option<String>,
    dpop: Option<Arc<DpopKey>>,
}

impl PartialEq for Granted {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token
            && self.expires_in == other.expires_in
            && self.scope == other.scope
            && self.dpop.as_ref().map(|k| k.thumbprint()) == other.dpop.as_ref().map(|k| k.thumbprint())
    }
}

impl Eq for Granted {}

/// How a token is presented (its `token_type`, RFC 6749 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// `Authorization: Bearer <token>` (RFC 6750): whoever holds it can use it.
    Bearer,
    /// `Authorization: DPoP <token>` with a proof of the bound key on every
    /// request (RFC 9449).
    Dpop,
}

impl TokenType {
    /// The `Authorization` scheme: `Bearer` or `DPoP`.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop => oidc_core::dpop::DPOP_SCHEME,
        }
    }
}

impl AccessToken {
    /// A token valid for `expires_in` from when it was requested.
    pub fn new(token: impl Into<String>, expires_in: Duration) -> Self {
        Self(Arc::new(Granted {
            token: BearerToken::new(token.into()),
            expires_in,
            scope: None,
            dpop: None,
        }))
    }

    /// Adds the granted scope (space separated).
    pub fn with_scope(self, scope: impl Into<String>) -> Self {
        let mut granted = Arc::unwrap_or_clone(self.0);
        granted.scope = Some(scope.into());
        Self(Arc::new(granted))
    }

    /// Marks the token as DPoP-bound to `key` (`token_type: DPoP`): it is
    /// then sent as `Authorization: DPoP` with a proof signed by `key`.
    pub fn with_dpop_key(self, key: Arc<DpopKey>) -> Self {
        let mut granted = Arc::unwrap_or_clone(self.0);
        granted.dpop = Some(key);
        Self(Arc::new(granted))
    }

    /// `Bearer`, or `DPoP` for a token bound to a key.
    pub fn token_type(&self) -> TokenType {
        match self.0.dpop {
            Some(_) => TokenType::Dpop,
            None => TokenType::Bearer,
        }
    }

    /// Whether the token is DPoP-bound (needs a proof of [`dpop_key`](Self::dpop_key)).
    pub fn is_dpop_bound(&self) -> bool {
        self.0.dpop.is_some()
    }

    /// The key a DPoP-bound token is bound to.
    pub fn dpop_key(&self) -> Option<&Arc<DpopKey>> {
        self.0.dpop.as_ref()
    }

    /// The token, to put in an `Authorization` header (scheme:
    /// [`token_type`](Self::token_type)).
    pub fn secret(&self) -> &BearerToken {
        &self.0.token
    }

    /// The lifetime granted (`expires_in`), counted from the request.
    pub fn expires_in(&self) -> Duration {
        self.0.expires_in
    }

    /// The granted scope, if the server said.
    pub fn scope(&self) -> Option<&str> {
        self.0.scope.as_deref()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &self.0.token)
            .field("expires_in", &self.0.expires_in)
            .field("scope", &self.0.scope)
            .field("token_type", &self.token_type())
            .field("dpop_jkt", &self.0.dpop.as_ref().map(|k| k.thumbprint()))
            .finish()
    }
}

/// Something that hands out access tokens: a token endpoint
/// ([`ClientCredentials`](crate::ClientCredentials)), a cache in front of one
/// ([`CachedTokenSource`](crate::CachedTokenSource)), or your own.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A token to use now.
    async fn token(&self) -> Result<AccessToken, Error>;

    /// Tells the source that a server refused `token` (HTTP 401), so that it
    /// is not handed out again. Sources that do not cache ignore this.
    fn invalidate(&self, token: &AccessToken) {
        let _ = token;
    }
}

#[async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    async fn token(&self) -> Result<AccessToken, Error> {
        (**self).token().await
    }

    fn invalidate(&self, token: &AccessToken) {
        (**self).invalidate(token)
    }
}

#[async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Box<T> {
    async fn token(&self) -> Result<AccessToken, Error> {
        (**self).token().await
    }

    fn invalidate(&self, token: &AccessToken) {
        (**self).invalidate(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let token = AccessToken::new("eyJhbGciOiJFUzI1NiJ9.secret.sig", Duration::from_secs(300));
        let shown = format!("{token:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("300"), "{shown}");
        assert!(shown.contains("Bearer"), "{shown}");
    }

    #[test]
    fn a_dpop_bound_token_carries_its_key_and_never_shows_it() {
        let key = Arc::new(DpopKey::generate().unwrap());
        let pem = key.pem().as_str().to_owned();
        let token = AccessToken::new("eyJhbGciOiJFUzI1NiJ9.secret.sig", Duration::from_secs(300))
            .with_dpop_key(key.clone())
            .with_scope("poll");
        assert_eq!(token.token_type(), TokenType::Dpop);
        assert_eq!(token.token_type().scheme(), "DPoP");
        assert!(token.is_dpop_bound());
        assert_eq!(token.scope(), Some("poll"));
        assert_eq!(token.dpop_key().map(|k| k.thumbprint()), Some(key.thumbprint()));
        let shown = format!("{token:?}");
        assert!(!shown.contains("secret"), "{shown}");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!shown.contains(&body[..20]), "{shown}");
        assert!(shown.contains(key.thumbprint()), "{shown}");
        // Another key makes another token.
        let other = AccessToken::new("eyJhbGciOiJFUzI1NiJ9.secret.sig", Duration::from_secs(300))
            .with_dpop_key(Arc::new(DpopKey::generate().unwrap()))
            .with_scope("poll");
        assert_ne!(token, other);
        let plain = AccessToken::new("t", Duration::from_secs(1));
        assert_eq!(plain.token_type(), TokenType::Bearer);
        assert!(plain.dpop_key().is_none());
    }
}
