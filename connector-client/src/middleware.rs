//! [`BearerAuth`]: `reqwest-middleware` that puts the token on every request
//! and, when the server answers 401, gets a new token and retries once.

use http::Extensions;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Request, Response, StatusCode};
use reqwest_middleware::{Middleware, Next};

use crate::{AccessToken, TokenSource};

/// Middleware for [`reqwest_middleware::ClientWithMiddleware`] that sets
/// `Authorization: Bearer <token>` from a [`TokenSource`].
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
}

impl<S: TokenSource> BearerAuth<S> {
    /// Authenticates requests with tokens from `source`.
    pub fn new(source: S) -> Self {
        Self { source }
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

fn authorize(request: &mut Request, token: &AccessToken) -> reqwest_middleware::Result<()> {
    // Sources check that tokens are visible ASCII, so this fails only for a
    // foreign TokenSource that hands out something a header cannot carry.
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.secret().as_str()))
        .map_err(reqwest_middleware::Error::middleware)?;
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
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
        authorize(&mut request, &token)?;
        let response = next.clone().run(request, extensions).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(mut retry) = retry else {
            return Ok(response);
        };
        tracing::debug!(url = %retry.url(), "401 with the current token; refreshing it and retrying once");
        self.source.invalidate(&token);
        let fresh = self.token().await?;
        authorize(&mut retry, &fresh)?;
        // Let the connection be reused rather than left half-read.
        drop(response);
        next.run(retry, extensions).await
    }
}
