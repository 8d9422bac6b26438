//! [`BearerAuth`]: `reqwest-middleware` that puts the token on every request
//! (with a DPoP proof when the token is bound to a key) and, when the server
//! answers 401, gets a new token (or the server's DPoP nonce) and retries once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::Extensions;
use oidc_core::dpop::{DpopProof, DPOP_SCHEME};
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Request, Response, StatusCode};
use reqwest_middleware::{Middleware, Next};

use crate::token_endpoint::nonce_from;
use crate::{AccessToken, TokenSource, TokenType};

/// Servers whose DPoP nonce is remembered; beyond this many, the map starts afresh.
const MAX_NONCE_ORIGINS: usize = 64;

/// Middleware for [`reqwest_middleware::ClientWithMiddleware`] that sets
/// `Authorization: Bearer <token>` from a [`TokenSource`].
///
/// A DPoP-bound token ([`AccessToken::is_dpop_bound`], from a source built
/// with `.dpop(key)`) goes as `Authorization: DPoP <token>` with a fresh
/// `DPoP` proof signed by its key (RFC 9449 §7.1: `htm` the request's method,
/// `htu` its URL without query or fragment, `ath` the token's hash, and the
/// server's latest `DPoP-Nonce` if it gave one). A 401 whose
/// `WWW-Authenticate: DPoP` says `error="use_dpop_nonce"` with a
/// `DPoP-Nonce` header is repeated once with a proof carrying that nonce;
/// nonces are remembered per origin for the requests that follow.
///
/// On a 401 it [invalidates](TokenSource::invalidate) the token it sent,
/// asks the source for a token again (with a [`CachedTokenSource`](crate::CachedTokenSource)
/// that is one fetch, however many requests failed at once) and repeats the
/// request once. A second 401 is returned to the caller as it is. Requests
/// whose body cannot be cloned (streams) are not repeated.
///
/// An `Authorization` header already on the request is replaced. Use the
/// client only for the service the token is meant for: the token goes to
/// every host it sends to (reqwest does drop it on cross-host redirects).
///
/// ```no_run
/// # async fn run(tokens: connector_client::CachedTokenSource) -> Result<(), Box<dyn std::error::Error>> {
/// use connector_client::BearerAuth;
///
/// let client = reqwest_middleware::ClientBuilder::new(connector_client::http_client_builder()?.build()?)
///     .with(BearerAuth::new(tokens))
///     .build();
/// let response = client.get("https://control.example.com/v1/actions").send().await?;
/// # drop(response); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BearerAuth<S> {
    source: S,
    /// The latest `DPoP-Nonce` of each origin (shared by clones).
    nonces: Arc<Mutex<HashMap<String, String>>>,
}

impl<S: TokenSource> BearerAuth<S> {
    /// Authenticates requests with tokens from `source`.
    pub fn new(source: S) -> Self {
        Self {
            source,
            nonces: Arc::default(),
        }
    }

    /// The token source.
    pub fn source(&self) -> &S {
        &self.source
    }

    async fn token(&self) -> reqwest_middleware::Result<AccessToken> {
        self.source
            .token()
            .await
            .map_err(reqwest_middleware::Error::middleware)
    }
}

impl<S> BearerAuth<S> {
    fn nonce(&self, request: &Request) -> Option<String> {
        let origin = request.url().origin().ascii_serialization();
        // A poisoned lock still holds a whole map.
        let nonces = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        nonces.get(&origin).cloned()
    }

    /// Keeps the server's `DPoP-Nonce`, if the response has one; says whether it did.
    fn remember_nonce(&self, origin: String, response: &Response) -> bool {
        let Some(nonce) = nonce_from(response.headers()) else {
            return false;
        };
        let mut nonces = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        if nonces.len() >= MAX_NONCE_ORIGINS && !nonces.contains_key(&origin) {
            nonces.clear();
        }
        nonces.insert(origin, nonce);
        true
    }

    /// Sets `Authorization` (and, for a DPoP-bound token, a fresh `DPoP` proof).
    fn authorize(&self, request: &mut Request, token: &AccessToken) -> reqwest_middleware::Result<()> {
        // Sources check that tokens are visible ASCII, so this fails only for a
        // foreign TokenSource that hands out something a header cannot carry.
        let mut value = HeaderValue::try_from(format!(
            "{} {}",
            token.token_type().scheme(),
            token.secret().as_str()
        ))
        .map_err(reqwest_middleware::Error::middleware)?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
        if let Some(key) = token.dpop_key() {
            let nonce = self.nonce(request);
            let mut proof = DpopProof::builder(key, request.method().as_str(), request.url().as_str())
                .access_token(token.secret().as_str());
            if let Some(nonce) = &nonce {
                proof = proof.nonce(nonce);
            }
            let proof = proof.sign().map_err(reqwest_middleware::Error::middleware)?;
            let value =
                HeaderValue::try_from(proof.into_string()).map_err(reqwest_middleware::Error::middleware)?;
            request.headers_mut().insert(DPOP_SCHEME, value);
        } else {
            request.headers_mut().remove(DPOP_SCHEME);
        }
        Ok(())
    }
}

/// Whether a 401 asks for a DPoP nonce (RFC 9449 §9): a `DPoP` challenge
/// with `error="use_dpop_nonce"`.
fn asks_for_nonce(response: &Response) -> bool {
    response.headers().get_all(WWW_AUTHENTICATE).iter().any(|value| {
        let Ok(text) = value.to_str() else {
            return false;
        };
        let text = text.trim_start();
        text.get(..DPOP_SCHEME.len())
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(DPOP_SCHEME))
            && text.contains("error=\"use_dpop_nonce\"")
    })
}

#[async_trait::async_trait]
impl<S: TokenSource + 'static> Middleware for BearerAuth<S> {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let token = self.token().await?;
        let retry = request.try_clone();
        let origin = request.url().origin().ascii_serialization();
        self.authorize(&mut request, &token)?;
        let response = next.clone().run(request, extensions).await?;
        let bound = token.token_type() == TokenType::Dpop;
        let new_nonce = bound && self.remember_nonce(origin.clone(), &response);
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(mut retry) = retry else {
            return Ok(response);
        };
        if new_nonce && asks_for_nonce(&response) {
            tracing::debug!(url = %retry.url(), "use_dpop_nonce: retrying once with the server's nonce");
            self.authorize(&mut retry, &token)?;
            drop(response);
            let response = next.run(retry, extensions).await?;
            self.remember_nonce(origin, &response);
            return Ok(response);
        }
        tracing::debug!(url = %retry.url(), "401 with the current token; refreshing it and retrying once");
        self.source.invalidate(&token);
        let fresh = self.token().await?;
        self.authorize(&mut retry, &fresh)?;
        // Let the connection be reused rather than left half-read.
        drop(response);
        let response = next.run(retry, extensions).await?;
        if fresh.is_dpop_bound() {
            self.remember_nonce(origin, &response);
        }
        Ok(response)
    }
}
