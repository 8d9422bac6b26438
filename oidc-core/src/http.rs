//! The one HTTPS client configuration of the workspace (JWKS, discovery, token
//! endpoints): reqwest on rustls with ring, so that the workspace keeps a
//! single crypto stack, and the platform's trust store.

use std::sync::Arc;

use rustls_platform_verifier::BuilderVerifierExt;

/// Why the HTTPS client could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot set up the HTTPS client: {0}")]
pub struct HttpClientError(String);

impl HttpClientError {
    /// An error with this explanation.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// A reqwest builder with TLS configured; add timeouts and redirect policy to taste.
///
/// ```
/// let client = oidc_core::http::client_builder().unwrap().build().unwrap();
/// # drop(client);
/// ```
pub fn client_builder() -> Result<reqwest::ClientBuilder, HttpClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpClientError(e.to_string()))?
        .with_platform_verifier()
        .map_err(|e| HttpClientError(e.to_string()))?
        .with_no_client_auth();
    Ok(reqwest::Client::builder().tls_backend_preconfigured(tls))
}
