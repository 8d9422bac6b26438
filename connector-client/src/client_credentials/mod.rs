//! [`ClientCredentials`]: the OAuth 2.0 `client_credentials` grant (RFC 6749
//! §4.4) against any token endpoint, found directly or through discovery.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use oidc_core::http::{self, PlainHttp};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

pub(crate) mod discovery;
mod private_key_jwt;
pub(crate) mod response;

pub use private_key_jwt::PrivateKeyJwt;
use response::{parse_error_response, parse_token_response};

use crate::error::{ConfigError, TransportError};
use crate::{retry_after, AccessToken, ClientSecret, Error, TokenSource};

/// Lifetime of a `private_key_jwt` client assertion: short, since it is made
/// fresh for every request and a captured one should be useless quickly.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// The `typ` of our client assertions (draft-ietf-oauth-rfc7523bis), so that
/// a verifier can never mistake one for an access token (`at+jwt`).
pub const ASSERTION_TYP: &str = "client-authentication+jwt";

/// Default timeout of a whole token or discovery request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest token or discovery response read; a real one is a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest lifetime taken from `expires_in`; longer values are cut to this, so
/// that a nonsense value cannot overflow the clock arithmetic.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(365 * 24 * 3600);

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Where the token endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The token endpoint URL itself.
    TokenUrl(String),
    /// The issuer; the token endpoint is read from its discovery document
    /// (`/.well-known/openid-configuration`, else RFC 8414's
    /// `/.well-known/oauth-authorization-server`), whose `issuer` must equal
    /// this string byte for byte.
    Issuer(String),
}

/// How the client proves who it is to the token endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: id and secret in an `Authorization: Basic` header.
    ClientSecretBasic(ClientSecret),
    /// `client_secret_post`: id and secret in the form body.
    ClientSecretPost(ClientSecret),
    /// `private_key_jwt` (RFC 7523): a short-lived JWT signed with the client's key.
    PrivateKeyJwt(PrivateKeyJwt),
    /// AWS IAM: a SigV4-signed `sts:GetCallerIdentity` for this token service
    /// (feature `aws-iam`; `oidc-server`'s `aws_iam` method).
    #[cfg(feature = "aws-iam")]
    AwsIam(crate::aws_iam::AwsIam),
}

/// Which request parameter names the resource a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `audience`: our token endpoint, Auth0, Okta and others.
    Audience(String),
    /// `resource` (RFC 8707): Keycloak, Azure AD v1, Ping and others.
    Resource(String),
}

/// Builds a [`ClientCredentials`]; see [`ClientCredentials::builder`].
#[derive(Debug)]
#[must_use]
pub struct ClientCredentialsBuilder {
    endpoint: Endpoint,
    client_id: String,
    auth: ClientAuth,
    target: Option<Target>,
    scope: Option<String>,
    assertion_audience: Option<String>,
    http: Option<reqwest::Client>,
    timeout: Duration,
    default_lifetime: Option<Duration>,
    allow_plain_http: bool,
}

impl ClientCredentialsBuilder {
    /// Asks for a token for `audience` (the `audience` parameter).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.target = Some(Target::Audience(audience.into()));
        self
    }

    /// Asks for a token for `resource` (RFC 8707 `resource` parameter), for
    /// servers that name the target that way. Replaces [`audience`](Self::audience).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.target = Some(Target::Resource(resource.into()));
        self
    }

    /// Asks for `scope` (space separated).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The `aud` of `private_key_jwt` assertions. By default: the issuer when
    /// the endpoint is discovered, else the token URL's origin
    /// (`https://host[:port]`), which is the issuer of a server at the root.
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// Uses this HTTP client instead of building one (its TLS, proxy, timeout
    /// and redirect settings then apply as they are).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Timeout of one whole request (default [`DEFAULT_TIMEOUT`]); ignored
    /// with [`http_client`](Self::http_client).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The lifetime to assume when a server omits `expires_in` (RFC 6749 makes
    /// it optional). Without this, such a response is an error: guessing a
    /// lifetime means either refreshing needlessly or using expired tokens.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = Some(lifetime);
        self
    }

    /// Allows plain `http://` URLs for hosts other than loopback, which sends
    /// the client's credentials and tokens unencrypted. For test networks only.
    pub fn danger_allow_plain_http(mut self) -> Self {
        self.allow_plain_http = true;
        self
    }

    /// Checks the configuration and builds the source. Does no I/O: discovery
    /// happens on the first [`token`](TokenSource::token) call.
    pub fn build(self) -> Result<ClientCredentials, Error> {
        if self.client_id.is_empty() {
            return Err(ConfigError::Empty("client id").into());
        }
        let endpoint = match &self.endpoint {
            Endpoint::TokenUrl(url) => {
                ResolvedEndpoint::TokenUrl(parse_url("token URL", url, self.allow_plain_http)?)
            }
            Endpoint::Issuer(issuer) => {
                let url = parse_url("issuer", issuer, self.allow_plain_http)?;
                ResolvedEndpoint::Issuer {
                    issuer: issuer.clone(),
                    url,
                    discovered: OnceCell::new(),
                }
            }
        };
        let secret_empty = match &self.auth {
            ClientAuth::ClientSecretBasic(s) | ClientAuth::ClientSecretPost(s) => s.expose().is_empty(),
            ClientAuth::PrivateKeyJwt(_) => false,
            #[cfg(feature = "aws-iam")]
            ClientAuth::AwsIam(_) => false,
        };
        if secret_empty {
            return Err(ConfigError::Empty("client secret").into());
        }
        let http = match self.http {
            Some(client) => client,
            None => http::client_builder()
                .map_err(|e| ConfigError::HttpClient(e.to_string()))?
                .timeout(self.timeout)
                .connect_timeout(self.timeout.min(Duration::from_secs(5)))
                // Never follow a redirect with credentials in the request.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("connector-client/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ConfigError::HttpClient(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(ClientCredentials {
            http,
            endpoint,
            client_id: self.client_id,
            auth: self.auth,
            target: self.target,
            scope: self.scope,
            assertion_audience: self.assertion_audience,
            default_lifetime: self.default_lifetime,
            allow_plain_http: self.allow_plain_http,
        })
    }
}

enum ResolvedEndpoint {
    TokenUrl(Url),
    Issuer {
        issuer: String,
        url: Url,
        discovered: OnceCell<Url>,
    },
}

/// Gets tokens from an OAuth 2.0 token endpoint with the `client_credentials`
/// grant: one request per [`token`](TokenSource::token) call, no caching (put
/// a [`CachedTokenSource`](crate::CachedTokenSource) in front).
///
/// ```no_run
/// # async fn run() -> Result<(), connector_client::Error> {
/// use connector_client::{ClientAuth, ClientCredentials, ClientSecret, Endpoint, TokenSource};
///
/// let source = ClientCredentials::builder(
///     Endpoint::Issuer("https://tokens.example.com".into()),
///     "connector-1",
///     ClientAuth::ClientSecretBasic(ClientSecret::from_file("/run/secrets/client-secret")?),
/// )
/// .audience("https://api.example.com")
/// .build()?;
/// let token = source.token().await?;
/// # drop(token); Ok(()) }
/// ```
pub struct ClientCredentials {
    http: reqwest::Client,
    endpoint: ResolvedEndpoint,
    client_id: String,
    auth: ClientAuth,
    target: Option<Target>,
    scope: Option<String>,
    assertion_audience: Option<String>,
    default_lifetime: Option<Duration>,
    allow_plain_http: bool,
}

impl ClientCredentials {
    /// Starts a configuration: where the endpoint is, who the client is, how it authenticates.
    pub fn builder(
        endpoint: Endpoint,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            endpoint,
            client_id: client_id.into(),
            auth,
            target: None,
            scope: None,
            assertion_audience: None,
            http: None,
            timeout: DEFAULT_TIMEOUT,
            default_lifetime: None,
            allow_plain_http: false,
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token endpoint, discovering it first if needed (once; the result is kept).
    pub async fn token_endpoint(&self) -> Result<&Url, Error> {
        match &self.endpoint {
            ResolvedEndpoint::TokenUrl(url) => Ok(url),
            ResolvedEndpoint::Issuer {
                issuer,
                url,
                discovered,
            } => {
                discovered
                    .get_or_try_init(|| {
                        discovery::token_endpoint(&self.http, issuer, url, self.allow_plain_http)
                    })
                    .await
            }
        }
    }

    fn default_assertion_audience(&self, token_url: &Url) -> String {
        match &self.endpoint {
            ResolvedEndpoint::Issuer { issuer, .. } => issuer.clone(),
            ResolvedEndpoint::TokenUrl(_) => token_url.origin().ascii_serialization(),
        }
    }

    /// The form body and, for `client_secret_basic`, the `Authorization` header.
    fn request_body(
        &self,
        assertion: Option<&str>,
    ) -> Result<(Zeroizing<String>, Option<HeaderValue>), Error> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        match &self.target {
            Some(Target::Audience(audience)) => {
                form.append_pair("audience", audience);
            }
            Some(Target::Resource(resource)) => {
                form.append_pair("resource", resource);
            }
            None => {}
        }
        let mut authorization = None;
        match &self.auth {
            ClientAuth::ClientSecretBasic(secret) => {
                // RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
                let pair = Zeroizing::new(format!(
                    "{}:{}",
                    form_encode(&self.client_id),
                    Zeroizing::new(form_encode(secret.expose())).as_str()
                ));
                let encoded =
                    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
                // Cannot fail: base64 output is visible ASCII.
                let mut value = HeaderValue::try_from(format!("Basic {}", encoded.as_str()))
                    .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
                value.set_sensitive(true);
                authorization = Some(value);
            }
            ClientAuth::ClientSecretPost(secret) => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", secret.expose());
            }
            ClientAuth::PrivateKeyJwt(_) => {
                if let Some(assertion) = assertion {
                    form.append_pair("client_assertion_type", ASSERTION_TYPE);
                    form.append_pair("client_assertion", assertion);
                }
            }
            #[cfg(feature = "aws-iam")]
            ClientAuth::AwsIam(_) => {
                if let Some(assertion) = assertion {
                    form.append_pair("client_id", &self.client_id);
                    form.append_pair("client_assertion_type", crate::aws_iam::ASSERTION_TYPE);
                    form.append_pair("client_assertion", assertion);
                }
            }
        }
        // reqwest takes the body by value and copies it into its buffers,
        // where it cannot be wiped; the copy here at least is.
        let body = Zeroizing::new(form.finish());
        Ok((body, authorization))
    }

    async fn request_token(&self) -> Result<AccessToken, Error> {
        let url = self.token_endpoint().await?;
        // Signing may be remote (KMS), so it happens here; the form is then
        // built in a plain function, since its serializer is not `Send`.
        let assertion = match &self.auth {
            ClientAuth::PrivateKeyJwt(key) => {
                let audience = match &self.assertion_audience {
                    Some(audience) => audience.clone(),
                    None => self.default_assertion_audience(url),
                };
                Some(key.assertion(&self.client_id, &audience).await?)
            }
            // The issuer header names the token service the same way a JWT
            // assertion's audience does.
            #[cfg(feature = "aws-iam")]
            ClientAuth::AwsIam(aws) => {
                let issuer = match &self.assertion_audience {
                    Some(issuer) => issuer.clone(),
                    None => self.default_assertion_audience(url),
                };
                Some(aws.assertion(&issuer).await?)
            }
            _ => None,
        };
        let (body, authorization) = self.request_body(assertion.as_deref())?;
        drop(assertion);
        let mut request = self
            .http
            .post(url.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.as_str().to_owned());
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        tracing::debug!(token_endpoint = %url, client_id = %self.client_id, "requesting an access token");
        let response = request
            .send()
            .await
            .map_err(|e| TransportError::from_reqwest(url.as_str(), &e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after::parse(v, SystemTime::now()));
        let body = read_capped(response, url.as_str()).await?;
        if status.is_success() {
            parse_token_response(url.as_str(), &body, self.default_lifetime)
        } else {
            Err(parse_error_response(url.as_str(), status, &body, retry_after).into())
        }
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = match &self.endpoint {
            ResolvedEndpoint::TokenUrl(url) => url.as_str(),
            ResolvedEndpoint::Issuer { issuer, .. } => issuer.as_str(),
        };
        f.debug_struct("ClientCredentials")
            .field("endpoint", &endpoint)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("target", &self.target)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for ClientCredentials {
    async fn token(&self) -> Result<AccessToken, Error> {
        self.request_token().await
    }
}

fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Parses `text` as a URL that requests carry credentials to: the
/// workspace's rule ([`http::checked_url`]), with plain http beyond loopback
/// only when the builder was told so.
fn parse_url(what: &'static str, text: &str, allow_plain_http: bool) -> Result<Url, ConfigError> {
    let plain_http = if allow_plain_http {
        PlainHttp::DangerAnywhere
    } else {
        PlainHttp::LoopbackOnly
    };
    http::checked_url(what, text, plain_http).map_err(ConfigError::from)
}

async fn read_capped(response: reqwest::Response, url: &str) -> Result<Vec<u8>, Error> {
    http::read_capped(response, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| match e {
            http::ReadError::TooLarge { limit } => TransportError::too_large(url, limit).into(),
            http::ReadError::Body(failure) => TransportError::failed(url, failure).into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_except_loopback() {
        assert!(parse_url("x", "https://t.example/token", false).is_ok());
        assert!(parse_url("x", "http://127.0.0.1:8080/token", false).is_ok());
        assert!(parse_url("x", "http://[::1]:8080/token", false).is_ok());
        assert!(parse_url("x", "http://localhost/token", false).is_ok());
        assert_eq!(
            parse_url("token URL", "http://t.example/token", false),
            Err(ConfigError::InsecureUrl {
                what: "token URL",
                url: "http://t.example/token".into()
            })
        );
        assert!(parse_url("x", "http://t.example/token", true).is_ok());
        assert!(parse_url("x", "ftp://t.example/token", true).is_err());
        assert!(matches!(
            parse_url("x", "not a url", false),
            Err(ConfigError::InvalidUrl { .. })
        ));
    }
}
