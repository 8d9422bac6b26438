//! Token exchange (RFC 8693): the connector presents the identity its
//! platform already gives it, a *subject token*, and gets an access token in
//! exchange. No client secret, no key: the subject token is the credential.
//!
//! | piece | job |
//! |---|---|
//! | [`SubjectTokenSource`] | the trait: where subject tokens come from |
//! | [`AwsWebIdentity`] | AWS STS `GetWebIdentityToken` (IAM outbound identity federation) with the IAM credentials of the standard chain (feature `aws-web-identity`, default) |
//! | [`SubjectTokenFile`] | a file re-read for every exchange: a Kubernetes projected service-account token, spiffe-helper's JWT-SVID file |
//! | [`TokenExchange`] | the [`TokenSource`]: one exchange per [`token`](TokenSource::token) call; put a [`CachedTokenSource`](crate::CachedTokenSource) in front |
//!
//! The request (RFC 8693 §2.1), form-encoded to the token endpoint, with no
//! client authentication and no `client_id`:
//!
//! ```text
//! grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//! subject_token=<the subject token>
//! subject_token_type=urn:ietf:params:oauth:token-type:jwt   (the source's type)
//! audience=<aud> | resource=<uri>                            (optional)
//! scope=<scope>                                              (optional)
//! ```
//!
//! The answer must be an RFC 6749 token response whose `issued_token_type`
//! is [`TOKEN_TYPE_ACCESS_TOKEN`] and whose `token_type` is `Bearer`;
//! errors are read as for `client_credentials` ([`EndpointError`](crate::EndpointError)),
//! with hints for this grant.
//!
//! ```no_run
//! # async fn run() -> Result<(), connector_client::Error> {
//! use connector_client::token_exchange::{SubjectTokenFile, TokenExchange};
//! use connector_client::{CachedTokenSource, Endpoint};
//!
//! // A Kubernetes projected service-account token, re-read for every exchange.
//! let subject = SubjectTokenFile::new("/var/run/secrets/tokens/connector");
//! let source = TokenExchange::builder(Endpoint::Issuer("https://tokens.example.com".into()), subject)
//!     .audience("https://control.example.com")
//!     .build()?;
//! let tokens = CachedTokenSource::new(source)?;
//! # drop(tokens); Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use zeroize::Zeroizing;

#[cfg(feature = "aws-web-identity")]
mod aws_web_identity;
mod file;

#[cfg(feature = "aws-web-identity")]
pub use aws_web_identity::{
    AwsSigningAlgorithm, AwsWebIdentity, AwsWebIdentityBuilder, DEFAULT_DURATION, MAX_DURATION, MIN_DURATION,
};
pub use file::{SubjectTokenFile, MAX_SUBJECT_TOKEN_BYTES};

use crate::error::{SubjectTokenError, SubjectTokenProblem};
use crate::token_endpoint::{shared_setters, Endpoint, Grant, SharedSettings, TokenEndpoint, TokenParams};
use crate::{AccessToken, Error, TokenSource};

/// `grant_type` of a token exchange (RFC 8693 §2.1).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of a JWT (RFC 8693 §3): what every source here hands out.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The token type of an OAuth 2.0 access token (RFC 8693 §3): the
/// `issued_token_type` a [`TokenExchange`] expects.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A subject token and its RFC 8693 token type.
///
/// `Debug` shows the type and never the token; there is no `Display`. The
/// text is zeroized on drop.
///
/// ```
/// use connector_client::token_exchange::SubjectToken;
/// let token = SubjectToken::jwt("eyJhbGciOiJFUzM4NCJ9.e30.c2ln");
/// assert_eq!(token.token_type(), "urn:ietf:params:oauth:token-type:jwt");
/// assert!(!format!("{token:?}").contains("eyJ"));
/// ```
pub struct SubjectToken {
    token: Zeroizing<String>,
    token_type: Cow<'static, str>,
}

impl SubjectToken {
    /// A token of type `token_type` (an RFC 8693 token type URI).
    pub fn new(token: impl Into<String>, token_type: impl Into<Cow<'static, str>>) -> Self {
        Self {
            token: Zeroizing::new(token.into()),
            token_type: token_type.into(),
        }
    }

    /// A JWT ([`TOKEN_TYPE_JWT`]).
    pub fn jwt(token: impl Into<String>) -> Self {
        Self::new(token, TOKEN_TYPE_JWT)
    }

    /// The token text, to send.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// Its RFC 8693 token type.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectToken")
            .field("token_type", &self.token_type)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// Where subject tokens come from: asked once per exchange, so a source
/// hands out a fresh (or freshly read) token every time.
#[async_trait]
pub trait SubjectTokenSource: Send + Sync + fmt::Debug {
    /// A subject token to present now.
    async fn subject_token(&self) -> Result<SubjectToken, Error>;
}

#[async_trait]
impl<T: SubjectTokenSource + ?Sized> SubjectTokenSource for Arc<T> {
    async fn subject_token(&self) -> Result<SubjectToken, Error> {
        (**self).subject_token().await
    }
}

#[async_trait]
impl<T: SubjectTokenSource + ?Sized> SubjectTokenSource for Box<T> {
    async fn subject_token(&self) -> Result<SubjectToken, Error> {
        (**self).subject_token().await
    }
}

/// Checks the text of a token a source read or received: visible ASCII
/// only, after surrounding white space (a file's line break) is dropped.
/// Returns the token without that white space.
pub(crate) fn checked_token<'a>(origin: &str, text: &'a [u8]) -> Result<&'a str, SubjectTokenError> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(SubjectTokenError::new(origin, SubjectTokenProblem::Empty));
    }
    if !text.iter().all(u8::is_ascii_graphic) {
        return Err(SubjectTokenError::new(origin, SubjectTokenProblem::NotAToken));
    }
    std::str::from_utf8(text).map_err(|_| SubjectTokenError::new(origin, SubjectTokenProblem::NotAToken))
}

/// Builds a [`TokenExchange`]; see [`TokenExchange::builder`].
#[derive(Debug)]
#[must_use]
pub struct TokenExchangeBuilder {
    endpoint: Endpoint,
    subject: Arc<dyn SubjectTokenSource>,
    shared: SharedSettings,
}

impl TokenExchangeBuilder {
    shared_setters!();

    /// Checks the configuration and builds the source. Does no I/O: neither
    /// discovery nor the subject token happen before the first
    /// [`token`](TokenSource::token) call.
    pub fn build(self) -> Result<TokenExchange, Error> {
        let endpoint = TokenEndpoint::new(
            &self.endpoint,
            self.shared.http,
            self.shared.dpop,
            Grant::TokenExchange,
        )?;
        Ok(TokenExchange {
            endpoint,
            subject: self.subject,
            params: self.shared.params,
        })
    }
}

/// Gets access tokens by token exchange (RFC 8693): on every
/// [`token`](TokenSource::token) call, a fresh subject token from its
/// [`SubjectTokenSource`], then one request to the token endpoint. No
/// caching: put a [`CachedTokenSource`](crate::CachedTokenSource) in front.
pub struct TokenExchange {
    endpoint: TokenEndpoint,
    subject: Arc<dyn SubjectTokenSource>,
    params: TokenParams,
}

impl TokenExchange {
    /// Starts a configuration: where the token endpoint is, and where the
    /// subject tokens come from.
    pub fn builder(endpoint: Endpoint, subject: impl SubjectTokenSource + 'static) -> TokenExchangeBuilder {
        TokenExchangeBuilder {
            endpoint,
            subject: Arc::new(subject),
            shared: SharedSettings::default(),
        }
    }

    /// The token endpoint, discovering it first if needed (once; the result is kept).
    pub async fn token_endpoint(&self) -> Result<&reqwest::Url, Error> {
        self.endpoint.url().await
    }

    /// The form body of an exchange of `subject`.
    fn request_body(&self, subject: &SubjectToken) -> Zeroizing<String> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", GRANT_TYPE);
        form.append_pair("subject_token", subject.expose());
        form.append_pair("subject_token_type", subject.token_type());
        self.params.append_to(&mut form);
        Zeroizing::new(form.finish())
    }

    async fn exchange(&self) -> Result<AccessToken, Error> {
        self.endpoint.with_nonce_retry(|| self.exchange_once()).await
    }

    async fn exchange_once(&self) -> Result<AccessToken, Error> {
        // Discovery first: no subject token is made for an endpoint that
        // cannot be found.
        let url = self.endpoint.url().await?;
        let subject = self.subject.subject_token().await?;
        if subject.expose().is_empty() || subject.token_type().is_empty() {
            return Err(
                SubjectTokenError::new("the subject token source", SubjectTokenProblem::Empty).into(),
            );
        }
        let body = self.request_body(&subject);
        tracing::debug!(
            token_endpoint = %url,
            subject_token_type = subject.token_type(),
            "exchanging a subject token for an access token"
        );
        drop(subject);
        let expect = self.params.expect(Some(TOKEN_TYPE_ACCESS_TOKEN));
        self.endpoint.request(url, &body, None, expect).await
    }
}

impl fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchange")
            .field("endpoint", &self.endpoint.configured())
            .field("subject", &self.subject)
            .field("params", &self.params)
            .field("dpop_jkt", &self.endpoint.dpop_jkt())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for TokenExchange {
    async fn token(&self) -> Result<AccessToken, Error> {
        self.exchange().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str);

    #[async_trait]
    impl SubjectTokenSource for Fixed {
        async fn subject_token(&self) -> Result<SubjectToken, Error> {
            Ok(SubjectToken::jwt(self.0))
        }
    }

    fn form(body: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn the_request_is_rfc_8693s() {
        let source = TokenExchange::builder(
            Endpoint::TokenUrl("https://t.example/token".into()),
            Fixed("unused"),
        )
        .build()
        .unwrap();
        let token = SubjectToken::jwt("eyJ+/=.e30.sig");
        assert_eq!(
            form(&source.request_body(&token)),
            [
                ("grant_type", GRANT_TYPE),
                ("subject_token", "eyJ+/=.e30.sig"),
                ("subject_token_type", TOKEN_TYPE_JWT),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        // Encoded as a form: `+`, `/` and `=` survive the trip.
        assert!(source
            .request_body(&token)
            .contains("subject_token=eyJ%2B%2F%3D.e30.sig"));

        let source = TokenExchange::builder(
            Endpoint::TokenUrl("https://t.example/token".into()),
            Fixed("unused"),
        )
        .audience("https://control.example.com")
        .scope("actions:read poll")
        .build()
        .unwrap();
        let token = SubjectToken::new("opaque", "urn:ietf:params:oauth:token-type:id_token");
        let sent = form(&source.request_body(&token));
        assert_eq!(sent.len(), 5, "{sent:?}");
        assert_eq!(sent[2].1, "urn:ietf:params:oauth:token-type:id_token");
        assert_eq!(sent[3], ("audience".into(), "https://control.example.com".into()));
        assert_eq!(sent[4], ("scope".into(), "actions:read poll".into()));
        assert!(!sent.iter().any(|(k, _)| k.starts_with("client")), "{sent:?}");

        let resource =
            TokenExchange::builder(Endpoint::TokenUrl("https://t.example/token".into()), Fixed("x"))
                .audience("a")
                .resource("urn:control")
                .build()
                .unwrap();
        let sent = form(&resource.request_body(&token));
        assert_eq!(sent[3], ("resource".into(), "urn:control".into()));
        assert!(!sent.iter().any(|(k, _)| k == "audience"));
    }

    #[test]
    fn debug_never_shows_a_token() {
        let source = TokenExchange::builder(
            Endpoint::Issuer("https://t.example".into()),
            SubjectTokenFile::new("/var/run/token"),
        )
        .build()
        .unwrap();
        let shown = format!("{source:?}");
        assert!(shown.contains("/var/run/token"), "{shown}");
        let token = SubjectToken::jwt("eyJhbGciOiJFUzM4NCJ9.payload.signature");
        let shown = format!("{token:?}");
        assert!(!shown.contains("payload"), "{shown}");
        assert!(shown.contains(TOKEN_TYPE_JWT), "{shown}");
    }

    #[test]
    fn insecure_endpoints_are_refused() {
        let err = TokenExchange::builder(Endpoint::TokenUrl("http://t.example/token".into()), Fixed("x"))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, Error::Config(crate::ConfigError::InsecureUrl { .. })),
            "{err}"
        );
    }

    #[test]
    fn tokens_are_visible_ascii() {
        assert_eq!(checked_token("o", b"  a.b.c\n").unwrap(), "a.b.c");
        assert_eq!(
            checked_token("o", b"\r\n \t").unwrap_err().problem(),
            &SubjectTokenProblem::Empty
        );
        for bad in [&b"a b"[..], b"a\x00b", "é".as_bytes(), b"a\nb"] {
            assert_eq!(
                checked_token("o", bad).unwrap_err().problem(),
                &SubjectTokenProblem::NotAToken,
                "{bad:?}"
            );
        }
    }
}
