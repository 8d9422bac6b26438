//! The crate's one error type, [`Error`], and the per-cause types it wraps.
//!
//! Errors are `Clone`: a [`CachedTokenSource`](crate::CachedTokenSource) keeps
//! the cause of its last failed refresh and hands it to every caller that asks
//! for a token while no valid one is left.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use oidc_core::http::{FailureKind, RequestFailure, UrlError};
use oidc_core::keys::{KeyError, SignError};

/// Longest piece of server-chosen text (an `error_description`, an issuer we
/// did not expect) copied into an error message. Longer text is cut, and
/// control characters are replaced, so that a hostile or broken server cannot
/// flood or forge log lines.
const MAX_SERVER_TEXT: usize = 200;

/// Anything that can go wrong while getting an access token.
///
/// Match on the variant for the kind of cause; [`is_retryable`](Self::is_retryable)
/// and [`retry_after`](Self::retry_after) say whether and when trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client is configured in a way that cannot work (a bad URL, a missing
    /// file, an unusable key). Fix the configuration; retrying will not help.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The token endpoint or the discovery document could not be reached, or
    /// the connection broke (DNS, TCP, TLS, timeout).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The token endpoint refused the request (RFC 6749 §5.2 error, or an HTTP
    /// error status without one).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The token endpoint answered 200, but not with a usable token response.
    #[error(transparent)]
    InvalidResponse(#[from] InvalidResponse),
    /// Discovery of the token endpoint from the issuer failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The `private_key_jwt` client assertion could not be signed.
    #[error("cannot sign the client assertion: {0}")]
    Assertion(#[from] SignError),
    /// The DPoP proof (RFC 9449) of a token request could not be signed.
    #[error("cannot sign the DPoP proof: {0}")]
    DpopProof(SignError),
    /// The subject token of a token exchange could not be obtained (from
    /// AWS STS, or from its file).
    #[error(transparent)]
    SubjectToken(#[from] SubjectTokenError),
    /// A [`CachedTokenSource`](crate::CachedTokenSource) has no valid token to
    /// give and refreshing it is failing; carries the last cause.
    #[error(transparent)]
    Unavailable(#[from] UnavailableError),
    /// An error from a [`TokenSource`](crate::TokenSource) implemented outside this crate.
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl Error {
    /// Whether the same request may succeed later without a configuration
    /// change: network failures, 5xx, 429 and `temporarily_unavailable` are;
    /// `invalid_client`, `invalid_scope` and configuration errors are not.
    ///
    /// A [`CachedTokenSource`](crate::CachedTokenSource) keeps retrying both
    /// kinds (a refused client may be registered a minute later), but waits
    /// longer after an error that is not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Config(_) => false,
            Error::Transport(_) => true,
            Error::Endpoint(e) => e.is_retryable(),
            // A proxy's HTML error page, a truncated body: usually transient.
            Error::InvalidResponse(_) => true,
            Error::Discovery(e) => e.is_retryable(),
            Error::Assertion(e) | Error::DpopProof(e) => matches!(e, SignError::Unavailable { .. }),
            Error::SubjectToken(e) => e.is_retryable(),
            Error::Unavailable(e) => e.cause().is_retryable(),
            Error::Source(e) => e.retryable,
        }
    }

    /// How long the server asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Endpoint(e) => e.retry_after,
            Error::Assertion(SignError::Unavailable { retry_after, .. }) => *retry_after,
            Error::Unavailable(e) => e.cause().retry_after(),
            Error::Source(e) => e.retry_after,
            _ => None,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL does not parse.
    #[error("{what} {url:?} is not a valid URL: {reason}")]
    InvalidUrl {
        /// Which URL (`"token URL"`, `"issuer"`, ...).
        what: &'static str,
        /// The text given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A URL that would send credentials in the clear.
    #[error("{what} {url} must use https (plain http is accepted only for loopback hosts)")]
    InsecureUrl {
        /// Which URL.
        what: &'static str,
        /// The URL.
        url: String,
    },
    /// A required value is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A file could not be read.
    #[error("cannot read {what} from {path}: {reason}")]
    ReadFile {
        /// What the file holds (`"client secret"`, `"private key"`).
        what: &'static str,
        /// The path.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The private key for `private_key_jwt` was refused.
    #[error("private key refused: {0}")]
    Key(KeyError),
    /// The DPoP key (RFC 9449) could not be made or loaded.
    #[error("DPoP key refused: {0}")]
    DpopKey(KeyError),
    /// The HTTPS client could not be built.
    #[error("{0}")]
    HttpClient(String),
    /// AWS credentials or region could not be set up.
    #[error("AWS: {0}")]
    Aws(String),
    /// A refresh policy whose numbers contradict each other.
    #[error("invalid refresh policy: {0}")]
    RefreshPolicy(&'static str),
    /// A [`CachedTokenSource`](crate::CachedTokenSource) was built outside a Tokio runtime.
    #[error("a CachedTokenSource must be built inside a Tokio runtime (it spawns its refresh task there)")]
    NoRuntime,
}

impl From<UrlError> for ConfigError {
    fn from(error: UrlError) -> Self {
        match error {
            UrlError::Invalid { what, url, reason } => Self::InvalidUrl { what, url, reason },
            UrlError::Insecure { what, url } => Self::InsecureUrl { what, url },
            UrlError::Credentials { what } => Self::InvalidUrl {
                what,
                url: "(not shown)".into(),
                reason: "a URL must not carry a user name or password".into(),
            },
        }
    }
}

/// What kind of transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No connection could be made (DNS, refused, TLS handshake).
    Connect,
    /// The request or the connection timed out.
    Timeout,
    /// The response was larger than this client accepts.
    TooLarge,
    /// Anything else (connection reset, malformed HTTP).
    Other,
}

/// A request did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    url: String,
    kind: TransportErrorKind,
    detail: String,
}

impl TransportError {
    pub(crate) fn from_reqwest(url: &str, error: &reqwest::Error) -> Self {
        Self::failed(url, RequestFailure::from_reqwest(error))
    }

    pub(crate) fn failed(url: &str, failure: RequestFailure) -> Self {
        let kind = match failure.kind {
            FailureKind::Timeout => TransportErrorKind::Timeout,
            FailureKind::Connect => TransportErrorKind::Connect,
            FailureKind::Other => TransportErrorKind::Other,
        };
        Self {
            url: url.to_owned(),
            kind,
            detail: failure.detail,
        }
    }

    pub(crate) fn too_large(url: &str, limit: usize) -> Self {
        Self {
            url: url.to_owned(),
            kind: TransportErrorKind::TooLarge,
            detail: format!("response body is larger than {limit} bytes"),
        }
    }

    /// The URL requested.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What kind of failure.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TransportErrorKind::Connect => "cannot connect to",
            TransportErrorKind::Timeout => "timed out talking to",
            TransportErrorKind::TooLarge => "refused the answer of",
            TransportErrorKind::Other => "request failed for",
        };
        write!(f, "{what} {}: {}", self.url, self.detail)
    }
}

impl StdError for TransportError {}

/// The grant a request is for: it decides what an error code is explained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Grant {
    /// `client_credentials` (RFC 6749 §4.4).
    #[default]
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693).
    TokenExchange,
}

/// The token endpoint answered with an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError {
    url: String,
    status: u16,
    error: Option<String>,
    description: Option<String>,
    retry_after: Option<Duration>,
    grant: Grant,
}

impl EndpointError {
    pub(crate) fn new(url: &str, status: u16) -> Self {
        Self {
            url: url.to_owned(),
            status,
            error: None,
            description: None,
            retry_after: None,
            grant: Grant::ClientCredentials,
        }
    }

    /// Says which grant was asked for, so that the message explains its code.
    pub(crate) fn with_grant(mut self, grant: Grant) -> Self {
        self.grant = grant;
        self
    }

    pub(crate) fn with_oauth(mut self, error: &str, description: Option<&str>) -> Self {
        self.error = Some(server_text(error));
        self.description = description.map(|d| server_text(&without_credentials(d)));
        self
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The token endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The RFC 6749 `error` code (`invalid_client`, ...), when the body had one.
    pub fn oauth_error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The `error_description`, when the body had one (trimmed to 200 characters).
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// `Retry-After`, when the response had one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// 5xx, 408, 429 and the "try later" OAuth codes are retryable; other 4xx are not.
    pub fn is_retryable(&self) -> bool {
        matches!(self.status, 408 | 429 | 500..=599)
            || matches!(
                self.error.as_deref(),
                Some("temporarily_unavailable" | "server_error" | "slow_down")
            )
    }

    fn hint(&self) -> Option<&'static str> {
        let code = self.error.as_deref()?;
        Some(match (self.grant, code) {
            (_, "invalid_scope") => "ask only for scopes this client is allowed",
            (_, "invalid_target") => "ask only for an audience or resource this client is allowed",
            (Grant::ClientCredentials, "invalid_client") => "check the client id and its secret or key",
            (Grant::ClientCredentials, "unauthorized_client") => {
                "this client may not use the client_credentials grant"
            }
            (Grant::ClientCredentials, "unsupported_grant_type") => {
                "the server does not offer client_credentials"
            }
            // RFC 8693 §2.2.2: a subject token the server does not accept is
            // answered `invalid_request`; many servers say `invalid_grant`.
            (Grant::TokenExchange, "invalid_request" | "invalid_grant") => {
                "the subject token may have been refused: check its issuer, subject, audience and \
                 expiry against what the server trusts"
            }
            (Grant::TokenExchange, "invalid_client") => {
                "the server wants client authentication for token exchange; a subject token is sent \
                 without any"
            }
            (Grant::TokenExchange, "unauthorized_client") => {
                "the subject token's identity may not use token exchange here"
            }
            (Grant::TokenExchange, "unsupported_grant_type") => {
                "the server does not offer token exchange (RFC 8693)"
            }
            _ => return None,
        })
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token endpoint {} answered {}", self.url, self.status)?;
        if let Some(error) = &self.error {
            write!(f, " {error}")?;
        }
        if let Some(description) = &self.description {
            write!(f, ": {description}")?;
        }
        if let Some(hint) = self.hint() {
            write!(f, " ({hint})")?;
        }
        if let Some(retry_after) = self.retry_after {
            write!(f, "; retry after {} s", retry_after.as_secs())?;
        }
        Ok(())
    }
}

impl StdError for EndpointError {}

/// A 200 answer that is not a usable token response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidResponse {
    url: String,
    problem: ResponseProblem,
}

/// What is wrong with a token response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseProblem {
    /// The body is not a JSON object.
    NotJson(String),
    /// A required member is absent or has the wrong type.
    Member(&'static str),
    /// `token_type` is not `Bearer` (or, for a request with a DPoP proof, not `DPoP`).
    TokenType(String),
    /// A request with a DPoP proof was answered with a token of another
    /// type (`Bearer`): the server ignored the proof, and the token would be
    /// usable by anyone who copies it. Refused rather than used unbound.
    NotDpopBound(String),
    /// `expires_in` is absent, zero, negative or not a number.
    ExpiresIn(String),
    /// `access_token` is empty or has characters an HTTP header cannot carry.
    AccessToken,
    /// The token expired (by its `expires_in`) before it could be used.
    ExpiredOnArrival {
        /// Its lifetime.
        expires_in: Duration,
    },
    /// A token exchange issued another kind of token than asked (RFC 8693
    /// `issued_token_type`).
    IssuedTokenType {
        /// What the server says it issued.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
}

impl InvalidResponse {
    pub(crate) fn new(url: &str, problem: ResponseProblem) -> Self {
        Self {
            url: url.to_owned(),
            problem,
        }
    }

    /// The URL that answered (empty when the token came from a source other than HTTP).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What is wrong.
    pub fn problem(&self) -> &ResponseProblem {
        &self.problem
    }
}

impl fmt::Display for InvalidResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.url.is_empty() {
            f.write_str("token response is unusable: ")?;
        } else {
            write!(f, "token response from {} is unusable: ", self.url)?;
        }
        match &self.problem {
            ResponseProblem::NotJson(reason) => write!(f, "not a JSON object ({reason})"),
            ResponseProblem::Member(name) => write!(f, "{name:?} is missing or not a string"),
            ResponseProblem::TokenType(found) => {
                write!(f, "token_type is {:?}, expected \"Bearer\"", server_text(found))
            }
            ResponseProblem::NotDpopBound(found) => write!(
                f,
                "token_type is {:?}, expected \"DPoP\": the request carried a DPoP proof but the \
                 server ignored it (it may not support DPoP, or not for this client) and issued a \
                 token that is not bound to the key; refusing to use it as a bearer token",
                server_text(found)
            ),
            ResponseProblem::ExpiresIn(found) => write!(
                f,
                "expires_in is {}, expected a positive number of seconds",
                server_text(found)
            ),
            ResponseProblem::AccessToken => f.write_str("access_token is empty or not printable ASCII"),
            ResponseProblem::ExpiredOnArrival { expires_in } => write!(
                f,
                "the token's lifetime of {} ms was over before it arrived",
                expires_in.as_millis()
            ),
            ResponseProblem::IssuedTokenType { found, expected } => write!(
                f,
                "issued_token_type is {:?}, expected {expected:?}",
                server_text(found)
            ),
        }
    }
}

impl StdError for InvalidResponse {}

/// Discovery of the token endpoint failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryError {
    url: String,
    problem: DiscoveryProblem,
}

/// What went wrong in discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryProblem {
    /// Neither well-known document answered 200 (the status of the last one).
    Status(u16),
    /// The document is not a JSON object.
    NotJson(String),
    /// The document's `issuer` is not byte-equal to the configured issuer.
    IssuerMismatch {
        /// What the document says.
        found: String,
    },
    /// The document has no `token_endpoint` string.
    NoTokenEndpoint,
    /// The `token_endpoint` is not a usable URL (or not https for a remote host).
    BadTokenEndpoint(String),
}

impl DiscoveryError {
    pub(crate) fn new(url: &str, problem: DiscoveryProblem) -> Self {
        Self {
            url: url.to_owned(),
            problem,
        }
    }

    /// The discovery URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What went wrong.
    pub fn problem(&self) -> &DiscoveryProblem {
        &self.problem
    }

    fn is_retryable(&self) -> bool {
        matches!(self.problem, DiscoveryProblem::Status(status) if status == 408 || status == 429 || status >= 500)
            || matches!(self.problem, DiscoveryProblem::NotJson(_))
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "discovery at {} failed: ", self.url)?;
        match &self.problem {
            DiscoveryProblem::Status(status) => write!(f, "answered HTTP {status}"),
            DiscoveryProblem::NotJson(reason) => write!(f, "not a JSON object ({reason})"),
            DiscoveryProblem::IssuerMismatch { found } => write!(
                f,
                "the document names issuer {:?}, which is not the configured issuer (they must match byte for byte)",
                server_text(found)
            ),
            DiscoveryProblem::NoTokenEndpoint => f.write_str("the document has no token_endpoint"),
            DiscoveryProblem::BadTokenEndpoint(reason) => write!(f, "token_endpoint {reason}"),
        }
    }
}

impl StdError for DiscoveryError {}

/// The subject token of a token exchange could not be obtained: what was
/// asked ([`origin`](Self::origin)) and what went wrong. It never holds the
/// token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTokenError {
    origin: String,
    problem: SubjectTokenProblem,
}

/// What went wrong while getting a subject token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectTokenProblem {
    /// The file could not be read (missing, not allowed, not a file). Retryable:
    /// the platform may not have written it yet.
    Read(String),
    /// The file holds nothing but white space. Retryable: a writer that
    /// writes in place (spiffe-helper) may be halfway.
    Empty,
    /// The file is larger than the limit (bytes), so it is not read.
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The token has characters no token has (control characters, white
    /// space inside, bytes outside visible ASCII); they are not shown.
    NotAToken,
    /// The platform refused to issue a token: its error code and message.
    Refused {
        /// The code (`AccessDenied`, `OutboundWebIdentityFederationDisabledException`, ...).
        code: String,
        /// Its message, shortened.
        message: String,
        /// Whether asking again later may work (throttling, a service error).
        retryable: bool,
    },
    /// The platform could not be asked (no credentials, network, timeout)
    /// or answered without a usable token. Retryable.
    Unavailable(String),
}

impl SubjectTokenError {
    pub(crate) fn new(origin: impl Into<String>, problem: SubjectTokenProblem) -> Self {
        Self {
            origin: origin.into(),
            problem,
        }
    }

    /// Where the token was to come from (`subject token file /var/run/token`,
    /// `AWS STS GetWebIdentityToken (us-east-1)`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// What went wrong.
    pub fn problem(&self) -> &SubjectTokenProblem {
        &self.problem
    }

    /// Whether trying again later may work without a configuration change.
    pub fn is_retryable(&self) -> bool {
        match &self.problem {
            SubjectTokenProblem::Read(_) | SubjectTokenProblem::Empty => true,
            SubjectTokenProblem::TooLarge { .. } | SubjectTokenProblem::NotAToken => false,
            SubjectTokenProblem::Refused { retryable, .. } => *retryable,
            SubjectTokenProblem::Unavailable(_) => true,
        }
    }
}

impl fmt::Display for SubjectTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot get the subject token from {}: {}",
            self.origin, self.problem
        )
    }
}

impl fmt::Display for SubjectTokenProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectTokenProblem::Read(reason) => f.write_str(reason),
            SubjectTokenProblem::Empty => f.write_str("the file is empty"),
            SubjectTokenProblem::TooLarge { limit } => {
                write!(f, "the file is larger than {limit} bytes, more than any token")
            }
            SubjectTokenProblem::NotAToken => f.write_str(
                "it holds characters a token cannot have (white space inside, control characters or \
                 bytes beyond visible ASCII)",
            ),
            SubjectTokenProblem::Refused { code, message, .. } => {
                write!(f, "refused with {}", server_text(code))?;
                if !message.is_empty() {
                    write!(f, ": {}", server_text(message))?;
                }
                Ok(())
            }
            SubjectTokenProblem::Unavailable(reason) => f.write_str(reason),
        }
    }
}

impl StdError for SubjectTokenError {}

/// Why a [`CachedTokenSource`](crate::CachedTokenSource) has no token to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoTokenReason {
    /// No token was ever obtained.
    NeverObtained,
    /// The last token expired this long ago.
    Expired {
        /// Time since expiry on the local clock; zero while the token is in
        /// its last few seconds, which are not handed out.
        ago: Duration,
    },
    /// The last token was refused by a server and dropped ([`invalidate`](crate::TokenSource::invalidate)).
    Refused,
}

/// No valid token, and refreshing is failing. [`cause`](Self::cause) is the
/// error of the last attempt.
#[derive(Debug, Clone)]
pub struct UnavailableError {
    reason: NoTokenReason,
    failures: u32,
    retry_in: Option<Duration>,
    cause: Arc<Error>,
}

impl UnavailableError {
    pub(crate) fn new(
        reason: NoTokenReason,
        failures: u32,
        retry_in: Option<Duration>,
        cause: Arc<Error>,
    ) -> Self {
        Self {
            reason,
            failures,
            retry_in,
            cause,
        }
    }

    /// Why there is no token.
    pub fn reason(&self) -> NoTokenReason {
        self.reason
    }

    /// Consecutive failed attempts.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Time until the next attempt, if one is scheduled.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in
    }

    /// The error of the last attempt.
    pub fn cause(&self) -> &Error {
        &self.cause
    }
}

impl fmt::Display for UnavailableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no valid access token: ")?;
        match self.reason {
            NoTokenReason::NeverObtained => f.write_str("none obtained yet")?,
            NoTokenReason::Expired { ago } => write!(f, "the last one expired {} s ago", ago.as_secs())?,
            NoTokenReason::Refused => f.write_str("the last one was refused by the server")?,
        }
        let plural = if self.failures == 1 { "" } else { "s" };
        write!(f, " and {} attempt{plural} failed", self.failures)?;
        if let Some(retry_in) = self.retry_in {
            write!(f, " (next in {} ms)", retry_in.as_millis())?;
        }
        write!(f, "; last error: {}", self.cause)
    }
}

impl StdError for UnavailableError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.cause)
    }
}

/// An error from a [`TokenSource`](crate::TokenSource) implemented outside
/// this crate, with what the retry logic needs to know about it.
///
/// ```
/// use std::time::Duration;
/// use connector_client::{Error, SourceError};
///
/// let io = std::io::Error::other("metadata service is down");
/// let err: Error = SourceError::new(io).with_retry_after(Duration::from_secs(5)).into();
/// assert!(err.is_retryable());
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone)]
pub struct SourceError {
    inner: Arc<dyn StdError + Send + Sync>,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl SourceError {
    /// Wraps `error`; retryable unless marked [`permanent`](Self::permanent).
    pub fn new(error: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(error),
            retryable: true,
            retry_after: None,
        }
    }

    /// Marks the error as one that retrying will not fix.
    pub fn permanent(mut self) -> Self {
        self.retryable = false;
        self
    }

    /// Asks the caller to wait at least `retry_after` before trying again.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl StdError for SourceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source()
    }
}

/// Server-chosen text made safe for one log line: control characters become
/// `?`, and anything past [`MAX_SERVER_TEXT`] characters is cut.
pub(crate) fn server_text(text: &str) -> String {
    oidc_core::text::one_line(text, MAX_SERVER_TEXT)
}

/// Longest piece of a word in an `error_description` kept as it is: a
/// token, a secret or a key is a long unbroken run of base64 characters,
/// while words, host names and URL path segments are short.
const MAX_PLAIN_PIECE: usize = 24;

/// `error_description` without what looks like a credential: a server that
/// echoes the request (a subject token, an assertion, a secret) would
/// otherwise put it into our error values and logs. Every word (a run of
/// base64, base64url and URL characters) with a piece between `.` or `/`
/// longer than [`MAX_PLAIN_PIECE`] becomes `[redacted]`.
pub(crate) fn without_credentials(text: &str) -> String {
    let word_char = |c: char| c.is_ascii_alphanumeric() || "-_.+/~%".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(word_char) {
        out.push_str(&rest[..start]);
        let word = &rest[start..];
        let end = word.find(|c: char| !word_char(c)).unwrap_or(word.len());
        let (word, after) = word.split_at(end);
        if word.split(['.', '/']).any(|piece| piece.len() > MAX_PLAIN_PIECE) {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_credentials_are_redacted_from_descriptions() {
        let jwt = "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhcm46YXdzOmlhbTo6MTIzIn0.c2lnbmF0dXJlc2lnbmF0dXJl";
        let secret = "dod9hZz4fzoRYgPJx0rnI1jIEneM8juVuLFNsAz1t2M";
        let err = EndpointError::new("https://t.example/token", 400).with_oauth(
            "invalid_grant",
            Some(&format!("subject_token {jwt} refused; client_secret={secret}.")),
        );
        let description = err.description().unwrap_or_default();
        assert_eq!(
            description,
            "subject_token [redacted] refused; client_secret=[redacted]"
        );
        assert!(!err.to_string().contains("eyJ"), "{err}");
        // Ordinary text, host names, URLs and ids stay readable.
        for plain in [
            "client authentication failed",
            "the issuer https://tokens.example.com/.well-known/openid-configuration is unknown",
            "audience urn:connector:poll-service not allowed for demo-connector",
        ] {
            assert_eq!(without_credentials(plain), plain);
        }
    }

    #[test]
    fn server_text_is_one_bounded_line() {
        assert_eq!(server_text("bad\r\nforged line"), "bad??forged line");
        let long = "x".repeat(500);
        let cut = server_text(&long);
        assert_eq!(cut.chars().count(), MAX_SERVER_TEXT + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn endpoint_error_reads_well() {
        let err = EndpointError::new("https://t.example/token", 401)
            .with_oauth("invalid_client", Some("client authentication failed"));
        assert_eq!(
            err.to_string(),
            "token endpoint https://t.example/token answered 401 invalid_client: client authentication \
             failed (check the client id and its secret or key)"
        );
        assert!(!err.is_retryable());
        let err = EndpointError::new("https://t.example/token", 503)
            .with_oauth("temporarily_unavailable", None)
            .with_retry_after(Some(Duration::from_secs(7)));
        assert!(err.is_retryable());
        assert!(err.to_string().ends_with("; retry after 7 s"), "{err}");
    }

    #[test]
    fn token_exchange_errors_are_explained_for_token_exchange() {
        let err = EndpointError::new("https://t.example/token", 400)
            .with_oauth("unsupported_grant_type", None)
            .with_grant(Grant::TokenExchange);
        assert!(
            err.to_string()
                .ends_with("(the server does not offer token exchange (RFC 8693))"),
            "{err}"
        );
        let err = EndpointError::new("https://t.example/token", 400)
            .with_oauth("invalid_grant", Some("token expired"))
            .with_grant(Grant::TokenExchange);
        assert!(
            err.to_string()
                .contains("invalid_grant: token expired (the subject token may"),
            "{err}"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn subject_token_errors_read_well() {
        let err = Error::from(SubjectTokenError::new(
            "subject token file /var/run/token",
            SubjectTokenProblem::Empty,
        ));
        assert_eq!(
            err.to_string(),
            "cannot get the subject token from subject token file /var/run/token: the file is empty"
        );
        assert!(err.is_retryable());
        let refused = Error::from(SubjectTokenError::new(
            "AWS STS GetWebIdentityToken (us-east-1)",
            SubjectTokenProblem::Refused {
                code: "AccessDenied".into(),
                message: "not authorized\nforged".into(),
                retryable: false,
            },
        ));
        assert_eq!(
            refused.to_string(),
            "cannot get the subject token from AWS STS GetWebIdentityToken (us-east-1): refused with \
             AccessDenied: not authorized?forged"
        );
        assert!(!refused.is_retryable());
    }

    #[test]
    fn unavailable_names_its_cause() {
        let cause = Arc::new(Error::from(EndpointError::new("https://t.example/token", 502)));
        let err = Error::from(UnavailableError::new(
            NoTokenReason::Expired {
                ago: Duration::from_secs(42),
            },
            3,
            Some(Duration::from_millis(1500)),
            cause,
        ));
        assert_eq!(
            err.to_string(),
            "no valid access token: the last one expired 42 s ago and 3 attempts failed (next in 1500 ms); \
             last error: token endpoint https://t.example/token answered 502"
        );
        assert!(err.is_retryable());
        assert!(err.source().is_some());
    }
}
