//! [`AccessToken`] and the [`TokenSource`] trait every way of getting one implements.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oidc_core::BearerToken;

use crate::Error;

/// An access token as the token endpoint granted it.
///
/// Cheap to clone (one reference count): a cached read hands out clones.
/// `Debug` never shows the token text; there is no `Display`. Write it out
/// deliberately with [`secret`](Self::secret).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<Granted>);

#[derive(Clone, PartialEq, Eq)]
struct Granted {
    token: BearerToken,
    expires_in: Duration,
    scope: Option<String>,
}

impl AccessToken {
    /// A token valid for `expires_in` from when it was requested.
    pub fn new(token: impl Into<String>, expires_in: Duration) -> Self {
        Self(Arc::new(Granted {
            token: BearerToken::new(token.into()),
            expires_in,
            scope: None,
        }))
    }

    /// Adds the granted scope (space separated).
    pub fn with_scope(self, scope: impl Into<String>) -> Self {
        let Granted {
            token, expires_in, ..
        } = Arc::unwrap_or_clone(self.0);
        Self(Arc::new(Granted {
            token,
            expires_in,
            scope: Some(scope.into()),
        }))
    }

    /// The token, to put in an `Authorization: Bearer` header.
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
    }
}
