//! The token endpoint's refusals (RFC 6749 §5.2): each a named case with a
//! fixed status, body and headers. Internal causes are logged, never echoed.
//! What the form reader and client authentication found wrong arrives here
//! as their own errors ([`FormError`], [`CredentialError`]) and becomes the
//! RFC 6749 answer.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::CredentialError;
use crate::form::FormError;

/// A refusal of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Malformed request (400 `invalid_request`); the text is safe to show.
    InvalidRequest(&'static str),
    /// Client authentication failed (401 `invalid_client`). Unknown client and
    /// wrong credential look exactly the same.
    InvalidClient,
    /// `grant_type` is neither `client_credentials` nor, with upstream
    /// issuers configured, token exchange (400 `unsupported_grant_type`).
    UnsupportedGrantType,
    /// A token exchange's subject token fails a check (400
    /// `invalid_grant`, RFC 8693 §2.2.2); the text is safe to show and
    /// never holds the token.
    InvalidGrant(&'static str),
    /// A requested scope is not allowed (400 `invalid_scope`).
    InvalidScope,
    /// The requested audience or resource is not allowed (400 `invalid_target`).
    InvalidTarget(&'static str),
    /// Too many failed authentications from this client or peer (429).
    TooManyFailures {
        /// When to try again.
        retry_after: Duration,
    },
    /// The signer or a backend is down (503 `temporarily_unavailable`).
    TemporarilyUnavailable {
        /// When to try again.
        retry_after: Duration,
    },
    /// The body is not `application/x-www-form-urlencoded` (415).
    UnsupportedMediaType,
    /// The body is over the limit (413).
    PayloadTooLarge,
    /// A DPoP proof is missing (for a connector that requires one) or
    /// refused (400 `invalid_dpop_proof`, RFC 9449 §5); with a fresh
    /// `DPoP-Nonce` when server nonces are on.
    InvalidDpopProof {
        /// A fixed text, safe to show.
        description: &'static str,
        /// The `DPoP-Nonce` to send, when nonces are on.
        nonce: Option<String>,
    },
    /// The proof has no current server nonce (400 `use_dpop_nonce`,
    /// RFC 9449 §8): retry with this one (`DPoP-Nonce`).
    UseDpopNonce {
        /// The `DPoP-Nonce` to send.
        nonce: String,
    },
}

#[derive(Serialize)]
struct Body {
    error: &'static str,
    error_description: &'static str,
}

impl TokenError {
    /// The RFC 6749 `error` code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::UnsupportedMediaType | Self::PayloadTooLarge => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::TooManyFailures { .. } | Self::TemporarilyUnavailable { .. } => "temporarily_unavailable",
            Self::InvalidDpopProof { .. } => "invalid_dpop_proof",
            Self::UseDpopNonce { .. } => "use_dpop_nonce",
        }
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TemporarilyUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn description(&self) -> &'static str {
        match self {
            Self::InvalidRequest(text) | Self::InvalidTarget(text) | Self::InvalidGrant(text) => text,
            Self::InvalidClient => "client authentication failed",
            Self::UnsupportedGrantType => {
                "this grant_type is not supported (the discovery document's grant_types_supported lists those that are)"
            }
            Self::InvalidScope => "a requested scope is not allowed for this client",
            Self::TooManyFailures { .. } => "too many failed authentication attempts; retry later",
            Self::TemporarilyUnavailable { .. } => "the token service cannot sign right now; retry later",
            Self::UnsupportedMediaType => "the body must be application/x-www-form-urlencoded",
            Self::PayloadTooLarge => "the request body is too large",
            Self::InvalidDpopProof { description, .. } => description,
            Self::UseDpopNonce { .. } => "the DPoP proof must carry the server's nonce: retry with the DPoP-Nonce sent",
        }
    }
}

impl From<FormError> for TokenError {
    fn from(error: FormError) -> Self {
        match error {
            FormError::Repeated => Self::InvalidRequest("a request parameter appears more than once"),
        }
    }
}

impl From<CredentialError> for TokenError {
    fn from(error: CredentialError) -> Self {
        match error {
            CredentialError::Form(error) => error.into(),
            CredentialError::SeveralAuthorizationHeaders => {
                Self::InvalidRequest("more than one Authorization header")
            }
            CredentialError::SeveralMethods => {
                Self::InvalidRequest("more than one client authentication method")
            }
            CredentialError::ClientIdMismatch => {
                Self::InvalidRequest("client_id does not match the Authorization header")
            }
            CredentialError::SecretWithoutClientId => Self::InvalidRequest("client_secret without client_id"),
            CredentialError::MissingAssertion => Self::InvalidRequest("client_assertion is missing"),
            CredentialError::AwsIamWithoutClientId => {
                Self::InvalidRequest("client_id is required with the AWS IAM assertion type")
            }
            CredentialError::UnsupportedAssertionType => Self::InvalidRequest(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            // Nothing readable to authenticate: a failed authentication (401).
            CredentialError::UnreadableBasic | CredentialError::NoCredential => Self::InvalidClient,
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.code(),
            error_description: self.description(),
        };
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        match self {
            Self::InvalidClient => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"token\", charset=\"UTF-8\""),
                );
            }
            Self::TooManyFailures { retry_after } | Self::TemporarilyUnavailable { retry_after } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
            }
            Self::InvalidDpopProof {
                nonce: Some(nonce), ..
            }
            | Self::UseDpopNonce { nonce } => {
                // A nonce is base64url: always a valid header value.
                if let Ok(value) = HeaderValue::from_str(&nonce) {
                    headers.insert(super::dpop::DPOP_NONCE, value);
                }
            }
            _ => {}
        }
        response
    }
}
