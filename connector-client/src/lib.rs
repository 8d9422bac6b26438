//! Access tokens for connectors: get one from an OAuth 2.0 token endpoint,
//! keep it fresh in the background, and put it on every request.
//!
//! | piece | job |
//! |---|---|
//! | [`TokenSource`] | the trait: `async fn token() -> Result<AccessToken>` |
//! | [`ClientCredentials`] | the `client_credentials` grant against any RFC 6749 endpoint, found directly or by discovery; `client_secret_basic`, `client_secret_post`, `private_key_jwt` |
//! | [`TokenExchange`] | token exchange (RFC 8693): a subject token the platform gives the connector ([`token_exchange::AwsWebIdentity`], [`token_exchange::SubjectTokenFile`]) for an access token, no client secret |
//! | [`CachedTokenSource`] | lock-free reads of one shared token, background refresh ahead of expiry, single-flight fetches, backoff with jitter and `Retry-After` |
//! | [`BearerAuth`] | `reqwest-middleware`: `Authorization: Bearer`, one refresh and one retry on 401; for a DPoP-bound token `Authorization: DPoP` with a fresh proof, one retry with the server's `DPoP-Nonce` |
//! | [`DpopKey`] | DPoP (RFC 9449): give a key to a grant's builder (`.dpop(key)`) and every token is bound to it; a copied token is useless without the key |
//! | [`TokenFile`] | a token on disk that readers always find whole: temporary file with the final mode, `fsync`, rename; an info file with `expires_at` (Unix) |
//! | [`FileSink`] | keeps a [`TokenFile`] holding a [`CachedTokenSource`]'s current token; removes it once that token expires with no fresh one (Unix) |
//! | [`cli`] | the command-line flags and `get` shared by the `connector-token` binary and the examples (feature `cli`) |
//! | [`timer`] | the time source; [`ManualTimer`](timer::ManualTimer) lets tests move time by hand |
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use connector_client::{BearerAuth, CachedTokenSource, ClientAuth, ClientCredentials, ClientSecret, Endpoint};
//!
//! let source = ClientCredentials::builder(
//!     Endpoint::TokenUrl("https://tokens.example.com/token".into()),
//!     "connector-1",
//!     ClientAuth::ClientSecretBasic(ClientSecret::from_file("/run/secrets/client-secret")?),
//! )
//! .audience("https://control.example.com")
//! .build()?;
//! let tokens = CachedTokenSource::new(source)?;
//!
//! let client = reqwest_middleware::ClientBuilder::new(connector_client::http_client_builder()?.build()?)
//!     .with(BearerAuth::new(tokens.clone()))
//!     .build();
//! let actions = client.get("https://control.example.com/v1/actions").send().await?;
//! # drop(actions); Ok(()) }
//! ```
//!
//! # Refreshing
//!
//! A token of lifetime `L` (its `expires_in`, counted on the local monotonic
//! clock from when it was requested) is refreshed in the background at
//! 75–80% of `L` (jittered), and at least 30 s before expiry when `L`
//! allows. While refreshing fails, the still-valid token keeps being served
//! and attempts back off exponentially (1 s doubling to 60 s, jittered, never
//! sooner than `Retry-After`). Once it has expired, `token()` fails with
//! [`Error::Unavailable`], which names the last cause. See [`RefreshPolicy`].
//!
//! # Features
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `aws-iam` | yes | [`ClientAuth::AwsIam`]: authenticate with the IAM credentials the connector already has (AWS SDK credential chain, SigV4), no static secret |
//! | `aws-web-identity` | yes | [`token_exchange::AwsWebIdentity`]: subject tokens from AWS STS `GetWebIdentityToken` (the STS SDK, which the AWS credential chain builds anyway) |
//! | `cli` | yes | the `connector-token` binary (`get`, `agent`, `exec`) and the [`cli`] module; pulls in clap, tracing-subscriber, rustix (signals to a child) and Tokio's `signal` and `process` features |
//!
//! Always: an HTTP client (reqwest on rustls with ring, from `oidc-core`'s
//! `http` feature) and Tokio for the refresh task. A library user who needs
//! neither the binary nor AWS builds with `default-features = false`.
//!
//! # The `connector-token` binary
//!
//! For connectors in any language: `connector-token agent --out PATH` keeps
//! `PATH` holding a fresh token ([`FileSink`] over [`TokenFile`]),
//! `connector-token exec -- COMMAND` runs the connector as a child with
//! `CONNECTOR_TOKEN_FILE` set, `connector-token get` prints one token. See
//! `docs/connector-token.md`; install with `cargo install --path connector-client`.
//!
//! # What it does not do
//!
//! It does not verify or even parse the access token: to the client it is an
//! opaque string (verification is the resource server's job, with
//! `oidc-core`'s verifier). It never logs a token or a secret: both are
//! redacted in `Debug` and have no `Display`.

#[cfg(feature = "aws-iam")]
pub mod aws_iam;
pub mod cache;
#[cfg(feature = "cli")]
pub mod cli;
mod client_credentials;
mod error;
#[cfg(unix)]
pub mod file_sink;
// The fuzz targets' entry points: only in the fuzz build (fuzz/run.sh and
// fuzz/.cargo/config.toml pass `--cfg fuzzing`), never in a release binary.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod middleware;
mod retry_after;
mod secret;
pub mod timer;
mod token;
mod token_endpoint;
pub mod token_exchange;
#[cfg(unix)]
pub mod token_file;

pub use cache::{
    CacheDropped, CachedTokenSource, CachedTokenSourceBuilder, RefreshPolicy, RefreshStatus, TokenChanges,
};
pub use client_credentials::{
    ClientAuth, ClientCredentials, ClientCredentialsBuilder, PrivateKeyJwt, ASSERTION_LIFETIME, ASSERTION_TYP,
};
pub use error::{
    ConfigError, DiscoveryError, DiscoveryProblem, EndpointError, Error, InvalidResponse, NoTokenReason,
    ResponseProblem, SourceError, SubjectTokenError, SubjectTokenProblem, TransportError, TransportErrorKind,
    UnavailableError,
};
#[cfg(unix)]
pub use file_sink::{FileSink, FileState};
pub use middleware::BearerAuth;
/// DPoP (RFC 9449) keys and proofs, re-exported from `oidc-core`: give a
/// [`DpopKey`] to a grant's builder (`.dpop(key)`) to get DPoP-bound tokens.
pub use oidc_core::dpop::{DpopKey, DpopProof};
/// The HTTPS client configuration shared by the workspace (reqwest on rustls
/// with ring, platform trust store): use it for the client that carries
/// [`BearerAuth`], since reqwest here is built without a default TLS provider.
pub use oidc_core::http::client_builder as http_client_builder;
pub use secret::ClientSecret;
pub use token::{AccessToken, TokenSource, TokenType};
pub use token_endpoint::{Endpoint, DEFAULT_TIMEOUT, MAX_EXPIRES_IN, MAX_RESPONSE_BYTES};
pub use token_exchange::{TokenExchange, TokenExchangeBuilder};
#[cfg(unix)]
pub use token_file::{FileMode, Owner, TokenFile, TokenFileError, TokenInfo};
