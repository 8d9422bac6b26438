//! [`ClientCredentials`]: the OAuth 2.0 `client_credentials` grant (RFC 6749
//! §4.4) against any token endpoint, found directly or through discovery.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::HeaderValue;
use reqwest::Url;
use zeroize::Zeroizing;

mod private_key_jwt;

pub use private_key_jwt::PrivateKeyJwt;

use crate::error::ConfigError;
use crate::token_endpoint::{shared_setters, Endpoint, Grant, SharedSettings, TokenEndpoint, TokenParams};
use crate::{AccessToken, ClientSecret, Error, TokenSource};

/// Lifetime of a `private_key_jwt` client assertion: short, since it is made
/// fresh for every request and a captured one should be useless quickly.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// The `typ` of our client assertions (draft-ietf-oauth-rfc7523bis), so that
/// a verifier can never mistake one for an access token (`at+jwt`).
pub const ASSERTION_TYP: &str = "client-authentication+jwt";

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

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

/// Builds a [`ClientCredentials`]; see [`ClientCredentials::builder`].
#[derive(Debug)]
#[must_use]
pub struct ClientCredentialsBuilder {
    endpoint: Endpoint,
    client_id: String,
    auth: ClientAuth,
    assertion_audience: Option<String>,
    shared: SharedSettings,
}

impl ClientCredentialsBuilder {
    shared_setters!();

    /// The `aud` of `private_key_jwt` assertions. By default: the issuer when
    /// the endpoint is discovered, else the token URL's origin
    /// (`https://host[:port]`), which is the issuer of a server at the root.
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// Checks the configuration and builds the source. Does no I/O: discovery
    /// happens on the first [`token`](TokenSource::token) call.
    pub fn build(self) -> Result<ClientCredentials, Error> {
        if self.client_id.is_empty() {
            return Err(ConfigError::Empty("client id").into());
        }
        let secret_empty = match &self.auth {
            ClientAuth::ClientSecretBasic(s) | ClientAuth::ClientSecretPost(s) => s.expose().is_empty(),
            ClientAuth::PrivateKeyJwt(_) => false,
            #[cfg(feature = "aws-iam")]
            ClientAuth::AwsIam(_) => false,
        };
        if secret_empty {
            return Err(ConfigError::Empty("client secret").into());
        }
        let endpoint = TokenEndpoint::new(
            &self.endpoint,
            self.shared.http,
            self.shared.dpop,
            Grant::ClientCredentials,
        )?;
        Ok(ClientCredentials {
            endpoint,
            client_id: self.client_id,
            auth: self.auth,
            params: self.shared.params,
            assertion_audience: self.assertion_audience,
        })
    }
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
    endpoint: TokenEndpoint,
    client_id: String,
    auth: ClientAuth,
    params: TokenParams,
    assertion_audience: Option<String>,
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
            assertion_audience: None,
            shared: SharedSettings::default(),
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token endpoint, discovering it first if needed (once; the result is kept).
    pub async fn token_endpoint(&self) -> Result<&Url, Error> {
        self.endpoint.url().await
    }

    /// The form body and, for `client_secret_basic`, the `Authorization` header.
    fn request_body(
        &self,
        assertion: Option<&str>,
    ) -> Result<(Zeroizing<String>, Option<HeaderValue>), Error> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        self.params.append_to(&mut form);
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
        self.endpoint.with_nonce_retry(|| self.request_token_once()).await
    }

    async fn request_token_once(&self) -> Result<AccessToken, Error> {
        let url = self.token_endpoint().await?;
        // Signing may be remote (KMS), so it happens here; the form is then
        // built in a plain function, since its serializer is not `Send`.
        let assertion = match &self.auth {
            ClientAuth::PrivateKeyJwt(key) => {
                let audience = match &self.assertion_audience {
                    Some(audience) => audience.clone(),
                    None => self.endpoint.default_audience(url),
                };
                Some(key.assertion(&self.client_id, &audience).await?)
            }
            // The issuer header names the token service the same way a JWT
            // assertion's audience does.
            #[cfg(feature = "aws-iam")]
            ClientAuth::AwsIam(aws) => {
                let issuer = match &self.assertion_audience {
                    Some(issuer) => issuer.clone(),
                    None => self.endpoint.default_audience(url),
                };
                Some(aws.assertion(&issuer).await?)
            }
            _ => None,
        };
        let (body, authorization) = self.request_body(assertion.as_deref())?;
        drop(assertion);
        tracing::debug!(token_endpoint = %url, client_id = %self.client_id, "requesting an access token");
        self.endpoint
            .request(url, &body, authorization, self.params.expect(None))
            .await
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("endpoint", &self.endpoint.configured())
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("params", &self.params)
            .field("dpop_jkt", &self.endpoint.dpop_jkt())
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
