//! What every grant shares with the token endpoint: where it is (a URL, or
//! an issuer's discovery document), the HTTPS client that reaches it, and
//! how a token request is sent and its answer read (RFC 6749 §5.1 and §5.2).
//! [`ClientCredentials`](crate::ClientCredentials) and
//! [`TokenExchange`](crate::TokenExchange) differ only in the form they post.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use oidc_core::dpop::{DpopKey, DpopProof, DPOP_SCHEME};
use oidc_core::http::{self, PlainHttp};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

pub(crate) mod discovery;
pub(crate) mod response;

use response::{parse_error_response, parse_token_response_with};

use crate::error::{ConfigError, TransportError};
use crate::{retry_after, AccessToken, Error};

/// Default timeout of a whole token or discovery request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest token or discovery response read; a real one is a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest lifetime taken from `expires_in`; longer values are cut to this, so
/// that a nonsense value cannot overflow the clock arithmetic.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(365 * 24 * 3600);

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

impl Endpoint {
    /// The token service's name as an audience, without a request: the
    /// issuer, or the token URL's origin (`https://host[:port]`), as
    /// [`TokenEndpoint::default_audience`] names it before discovery.
    pub(crate) fn audience(&self) -> Result<String, ConfigError> {
        match self {
            Endpoint::Issuer(issuer) => Ok(issuer.clone()),
            Endpoint::TokenUrl(url) => {
                let url = Url::parse(url).map_err(|e| ConfigError::InvalidUrl {
                    what: "token URL",
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
                Ok(url.origin().ascii_serialization())
            }
        }
    }
}

/// Which request parameter names the resource a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `audience`: our token endpoint, Auth0, Okta, RFC 8693 and others.
    Audience(String),
    /// `resource` (RFC 8707): Keycloak, Azure AD v1, Ping and others.
    Resource(String),
}

impl Target {
    /// Adds the parameter to a form.
    pub(crate) fn append_to(&self, form: &mut url::form_urlencoded::Serializer<'_, String>) {
        match self {
            Target::Audience(audience) => form.append_pair("audience", audience),
            Target::Resource(resource) => form.append_pair("resource", resource),
        };
    }
}

// The grant lives with the errors it explains (error.rs imports nothing
// from here).
pub(crate) use crate::error::Grant;

/// How the HTTP client is made: the builders' shared settings.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    /// A client given by the caller, used as it is.
    pub(crate) client: Option<reqwest::Client>,
    /// Timeout of one whole request, for a client built here.
    pub(crate) timeout: Duration,
    /// Plain http beyond loopback (test networks only).
    pub(crate) allow_plain_http: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            client: None,
            timeout: DEFAULT_TIMEOUT,
            allow_plain_http: false,
        }
    }
}

/// What every grant asks for the same way: the token's target and scope,
/// and the lifetime assumed when an answer has no `expires_in`.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenParams {
    pub(crate) target: Option<Target>,
    pub(crate) scope: Option<String>,
    pub(crate) default_lifetime: Option<Duration>,
}

impl TokenParams {
    /// Adds the target and the scope to a form.
    pub(crate) fn append_to(&self, form: &mut url::form_urlencoded::Serializer<'_, String>) {
        if let Some(target) = &self.target {
            target.append_to(form);
        }
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
    }

    /// What the answer must hold.
    pub(crate) fn expect(&self, issued_token_type: Option<&'static str>) -> Expect {
        Expect {
            default_lifetime: self.default_lifetime,
            issued_token_type,
            dpop: false,
        }
    }
}

/// What the builders of every grant set the same way; each holds one as its
/// `shared` field, set through [`shared_setters!`].
#[derive(Debug, Default)]
pub(crate) struct SharedSettings {
    pub(crate) params: TokenParams,
    pub(crate) http: HttpSettings,
    /// The DPoP key tokens are bound to (RFC 9449), if any.
    pub(crate) dpop: Option<Arc<DpopKey>>,
}

/// The setters every grant's builder has (a struct with a
/// `shared: SharedSettings` field), written once.
macro_rules! shared_setters {
    () => {
        /// Asks for a token for `audience` (the `audience` parameter).
        pub fn audience(mut self, audience: impl Into<String>) -> Self {
            self.shared.params.target = Some($crate::token_endpoint::Target::Audience(audience.into()));
            self
        }

        /// Asks for a token for `resource` (RFC 8707 `resource` parameter),
        /// for servers that name the target that way. Replaces
        /// [`audience`](Self::audience).
        pub fn resource(mut self, resource: impl Into<String>) -> Self {
            self.shared.params.target = Some($crate::token_endpoint::Target::Resource(resource.into()));
            self
        }

        /// Asks for `scope` (space separated).
        pub fn scope(mut self, scope: impl Into<String>) -> Self {
            self.shared.params.scope = Some(scope.into());
            self
        }

        /// Uses this HTTP client instead of building one (its TLS, proxy,
        /// timeout and redirect settings then apply as they are).
        pub fn http_client(mut self, client: reqwest::Client) -> Self {
            self.shared.http.client = Some(client);
            self
        }

        /// Timeout of one whole request to the token endpoint (default
        /// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT)); ignored with
        /// [`http_client`](Self::http_client).
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.shared.http.timeout = timeout;
            self
        }

        /// The lifetime to assume when a server omits `expires_in` (RFC 6749
        /// makes it optional). Without this, such a response is an error:
        /// guessing a lifetime means either refreshing needlessly or using
        /// expired tokens.
        pub fn default_lifetime(mut self, lifetime: std::time::Duration) -> Self {
            self.shared.params.default_lifetime = Some(lifetime);
            self
        }

        /// Binds every token to `key` with DPoP (RFC 9449): each token
        /// request carries a proof signed by it, the answer must be a
        /// `token_type: DPoP` token (a server that ignores the proof and
        /// answers with a bearer token is an error), and the token carries the
        /// key so that [`BearerAuth`](crate::BearerAuth) signs a proof for
        /// every request it sends. A `use_dpop_nonce` answer is retried once
        /// with the server's `DPoP-Nonce`; the latest nonce is kept for the
        /// next request. Pass a [`DpopKey`](crate::DpopKey) or an
        /// `Arc<DpopKey>` (to share it).
        pub fn dpop(mut self, key: impl Into<std::sync::Arc<$crate::DpopKey>>) -> Self {
            self.shared.dpop = Some(key.into());
            self
        }

        /// Allows plain `http://` URLs for hosts other than loopback, which
        /// sends the credentials and tokens unencrypted. For test networks only.
        pub fn danger_allow_plain_http(mut self) -> Self {
            self.shared.http.allow_plain_http = true;
            self
        }
    };
}
pub(crate) use shared_setters;

/// What a 200 answer must hold besides RFC 6749's members.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expect {
    /// The lifetime assumed when `expires_in` is absent (else that is an error).
    pub(crate) default_lifetime: Option<Duration>,
    /// The `issued_token_type` required (RFC 8693 §2.2.1), if any.
    pub(crate) issued_token_type: Option<&'static str>,
    /// A DPoP-bound token (`token_type: DPoP`) instead of a bearer token.
    pub(crate) dpop: bool,
}

/// The `DPoP-Nonce` response header (RFC 9449 §8).
pub(crate) const DPOP_NONCE: &str = "dpop-nonce";

/// Longest nonce kept from a server; a longer one is ignored.
pub(crate) const MAX_NONCE_LEN: usize = 512;

/// A server's nonce, if the header holds a usable one (visible ASCII, bounded).
pub(crate) fn nonce_from(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let value = headers.get(DPOP_NONCE)?.to_str().ok()?;
    let usable =
        !value.is_empty() && value.len() <= MAX_NONCE_LEN && value.bytes().all(|b| b.is_ascii_graphic());
    usable.then(|| value.to_owned())
}

/// A token source's DPoP key and the latest nonce its token endpoint gave.
struct DpopState {
    key: Arc<DpopKey>,
    nonce: Mutex<Option<String>>,
}

impl DpopState {
    fn nonce(&self) -> Option<String> {
        // A poisoned lock only means another request panicked mid-update of
        // a plain Option: the value is still whole.
        self.nonce.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_nonce(&self, nonce: String) {
        *self.nonce.lock().unwrap_or_else(|e| e.into_inner()) = Some(nonce);
    }
}

/// A token endpoint: its URL (known, or discovered once and kept) and the
/// client that reaches it.
pub(crate) struct TokenEndpoint {
    http: reqwest::Client,
    endpoint: ResolvedEndpoint,
    allow_plain_http: bool,
    grant: Grant,
    dpop: Option<DpopState>,
}

enum ResolvedEndpoint {
    TokenUrl(Url),
    Issuer {
        issuer: String,
        url: Url,
        discovered: OnceCell<Url>,
    },
}

impl TokenEndpoint {
    /// Checks the URL and builds the HTTP client (no I/O).
    pub(crate) fn new(
        endpoint: &Endpoint,
        settings: HttpSettings,
        dpop: Option<Arc<DpopKey>>,
        grant: Grant,
    ) -> Result<Self, Error> {
        let endpoint = match endpoint {
            Endpoint::TokenUrl(url) => {
                ResolvedEndpoint::TokenUrl(parse_url("token URL", url, settings.allow_plain_http)?)
            }
            Endpoint::Issuer(issuer) => {
                let url = parse_url("issuer", issuer, settings.allow_plain_http)?;
                ResolvedEndpoint::Issuer {
                    issuer: issuer.clone(),
                    url,
                    discovered: OnceCell::new(),
                }
            }
        };
        let http = match settings.client {
            Some(client) => client,
            None => http::client_builder()
                .map_err(|e| ConfigError::HttpClient(e.to_string()))?
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
                // Never follow a redirect with credentials in the request.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("connector-client/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ConfigError::HttpClient(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(Self {
            http,
            endpoint,
            allow_plain_http: settings.allow_plain_http,
            grant,
            dpop: dpop.map(|key| DpopState {
                key,
                nonce: Mutex::new(None),
            }),
        })
    }

    /// The DPoP key's thumbprint, if tokens are bound to one (for `Debug`).
    pub(crate) fn dpop_jkt(&self) -> Option<&str> {
        self.dpop.as_ref().map(|d| d.key.thumbprint())
    }

    /// Runs `attempt` (one whole token request, made afresh: a new client
    /// assertion, a new proof) and, when the server answered
    /// `use_dpop_nonce` with a new `DPoP-Nonce`, runs it once more, now
    /// with that nonce (RFC 9449 §8).
    pub(crate) async fn with_nonce_retry<F, Fut>(&self, mut attempt: F) -> Result<AccessToken, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<AccessToken, Error>>,
    {
        let Some(dpop) = &self.dpop else {
            return attempt().await;
        };
        let before = dpop.nonce();
        match attempt().await {
            Err(Error::Endpoint(e))
                if e.status() == 400
                    && e.oauth_error() == Some("use_dpop_nonce")
                    && dpop.nonce().is_some_and(|now| Some(&now) != before.as_ref()) =>
            {
                tracing::debug!(
                    token_endpoint = e.url(),
                    "use_dpop_nonce: retrying once with the server's nonce"
                );
                attempt().await
            }
            other => other,
        }
    }

    /// The token endpoint, discovering it first if needed (once; the result is kept).
    pub(crate) async fn url(&self) -> Result<&Url, Error> {
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

    /// What was configured: the token URL or the issuer (for `Debug` and logs).
    pub(crate) fn configured(&self) -> &str {
        match &self.endpoint {
            ResolvedEndpoint::TokenUrl(url) => url.as_str(),
            ResolvedEndpoint::Issuer { issuer, .. } => issuer.as_str(),
        }
    }

    /// Who the token service is, as an audience: the issuer when the endpoint
    /// is discovered, else the token URL's origin (`https://host[:port]`),
    /// which is the issuer of a server at the root.
    pub(crate) fn default_audience(&self, token_url: &Url) -> String {
        match &self.endpoint {
            ResolvedEndpoint::Issuer { issuer, .. } => issuer.clone(),
            ResolvedEndpoint::TokenUrl(_) => token_url.origin().ascii_serialization(),
        }
    }

    /// POSTs `body` (a form) to `url` and reads the answer: a token, or the
    /// endpoint's error.
    pub(crate) async fn request(
        &self,
        url: &Url,
        body: &Zeroizing<String>,
        authorization: Option<HeaderValue>,
        expect: Expect,
    ) -> Result<AccessToken, Error> {
        // reqwest takes the body by value and copies it into its buffers,
        // where it cannot be wiped; the caller's copy at least is.
        let mut request = self
            .http
            .post(url.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.as_str().to_owned());
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let mut expect = expect;
        if let Some(dpop) = &self.dpop {
            let nonce = dpop.nonce();
            let mut proof = DpopProof::builder(&dpop.key, "POST", url.as_str());
            if let Some(nonce) = &nonce {
                proof = proof.nonce(nonce);
            }
            let proof = proof.sign().map_err(Error::DpopProof)?;
            // Cannot fail: a compact JWS is base64url and dots.
            let value = HeaderValue::try_from(proof.into_string())
                .map_err(|e| Error::DpopProof(oidc_core::keys::SignError::Refused(e.to_string())))?;
            request = request.header(DPOP_SCHEME, value);
            expect.dpop = true;
        }
        let response = request
            .send()
            .await
            .map_err(|e| TransportError::from_reqwest(url.as_str(), &e))?;
        let status = response.status();
        if let Some(dpop) = &self.dpop {
            if let Some(nonce) = nonce_from(response.headers()) {
                dpop.set_nonce(nonce);
            }
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after::parse(v, SystemTime::now()));
        let body = read_capped(response, url.as_str()).await?;
        if status.is_success() {
            let token = parse_token_response_with(url.as_str(), &body, expect)?;
            Ok(match &self.dpop {
                Some(dpop) => token.with_dpop_key(dpop.key.clone()),
                None => token,
            })
        } else {
            Err(parse_error_response(url.as_str(), status, &body, retry_after)
                .with_grant(self.grant)
                .into())
        }
    }
}

/// Parses `text` as a URL that requests carry credentials to: the
/// workspace's rule ([`http::checked_url`]), with plain http beyond loopback
/// only when the builder was told so.
pub(crate) fn parse_url(what: &'static str, text: &str, allow_plain_http: bool) -> Result<Url, ConfigError> {
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

    #[test]
    fn the_default_audience_names_the_token_service() {
        let settings = HttpSettings::default;
        let url = Url::parse("https://t.example:8443/oauth/token").unwrap();
        let direct = TokenEndpoint::new(
            &Endpoint::TokenUrl(url.to_string()),
            settings(),
            None,
            Grant::ClientCredentials,
        )
        .unwrap();
        assert_eq!(direct.default_audience(&url), "https://t.example:8443");
        let discovered = TokenEndpoint::new(
            &Endpoint::Issuer("https://t.example/tenant".into()),
            settings(),
            None,
            Grant::TokenExchange,
        )
        .unwrap();
        assert_eq!(discovered.default_audience(&url), "https://t.example/tenant");
        assert_eq!(
            Endpoint::TokenUrl(url.to_string()).audience().unwrap(),
            "https://t.example:8443"
        );
        assert_eq!(
            Endpoint::Issuer("https://t.example/tenant".into())
                .audience()
                .unwrap(),
            "https://t.example/tenant"
        );
        assert!(Endpoint::TokenUrl("nonsense".into()).audience().is_err());
    }
}
