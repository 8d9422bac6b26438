//! An axum extractor for verified access tokens (`axum` feature).
//!
//! [`VerifiedToken<C>`] reads `Authorization: Bearer <token>`, verifies it with
//! the [`SharedVerifier`] found in the router state (through [`FromRef`]) and
//! yields the [`Verified`] claims. Anything else ends the request with a `401`
//! whose body is empty and whose challenge says only what RFC 6750 §3 allows:
//! `Bearer` when no bearer token was sent, `Bearer error="invalid_token"` when
//! one was and it was refused. Why it was refused (expired, wrong audience,
//! unknown key, ...) goes to the log, never to the caller, who could otherwise
//! probe the verifier one claim at a time.
//!
//! ```
//! use axum::{routing::get, Json, Router};
//! use oidc_core::axum::{shared_verifier, VerifiedToken};
//! use oidc_core::{AccessTokenClaims, JwkSet, Policy};
//!
//! async fn whoami(VerifiedToken(token): VerifiedToken<AccessTokenClaims>) -> Json<String> {
//!     Json(token.claims().sub.clone())
//! }
//!
//! let policy = Policy::builder("https://tokens.example.com", ["https://api.example.com"]).build().unwrap();
//! let verifier = shared_verifier(policy, JwkSet::default());
//! let app: Router = Router::new().route("/whoami", get(whoami)).with_state(verifier);
//! # drop(app);
//! ```
//!
//! With many issuers (features `axum` and `remote`), [`TrustedToken<C>`] does
//! the same with the [trust registry](crate::verify::trust::TrustedIssuers)
//! found in the router state, and yields the issuer entry's name with the
//! claims:
//!
//! ```
//! # #[cfg(feature = "remote")] {
//! use axum::{routing::get, Json, Router};
//! use oidc_core::axum::TrustedToken;
//! use oidc_core::verify::trust::{IssuerEntry, TrustedIssuers};
//! use oidc_core::AccessTokenClaims;
//!
//! async fn whoami(TrustedToken(token): TrustedToken<AccessTokenClaims>) -> Json<(String, String)> {
//!     Json((token.issuer_name().to_owned(), token.claims().sub.clone()))
//! }
//!
//! let trusted = TrustedIssuers::builder()
//!     .issuer(IssuerEntry::builder("acme", "https://tokens.acme.example", ["https://api.example.com"]).build().unwrap())
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new().route("/whoami", get(whoami)).with_state(trusted);
//! # drop(app);
//! # }
//! ```

use std::sync::Arc;

use ::axum::extract::{FromRef, FromRequestParts};
use ::axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use ::axum::http::request::Parts;
use ::axum::http::{HeaderMap, HeaderValue, StatusCode};
use ::axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

#[cfg(feature = "remote")]
use crate::verify::trust::{Trusted, TrustedIssuers};
use crate::verify::{KeyLookupError, KeySource, Policy, VerificationCache, Verified, Verifier, VerifyError};
use crate::AccessTokenClaims;

/// The verifier the extractor takes from the router state: any key source,
/// behind one pointer so that handlers and state stay non-generic.
pub type SharedVerifier = Arc<Verifier<Arc<dyn KeySource>>>;

/// Builds a [`SharedVerifier`] from a policy and any key source (a
/// [`JwkSet`](crate::JwkSet), a remote JWKS, ...).
pub fn shared_verifier(policy: Policy, keys: impl KeySource + 'static) -> SharedVerifier {
    Arc::new(Verifier::new(policy, Arc::new(keys) as Arc<dyn KeySource>))
}

/// [`shared_verifier`] with a [`VerificationCache`]: repeated tokens (a
/// connector polling with the same token until it refreshes it) are served
/// from the cache while their time, policy and key still hold.
pub fn shared_verifier_with_cache(
    policy: Policy,
    keys: impl KeySource + 'static,
    cache: VerificationCache,
) -> SharedVerifier {
    Arc::new(Verifier::new(policy, Arc::new(keys) as Arc<dyn KeySource>).with_cache(cache))
}

/// Extracts the verified claims of the request's bearer token; see the
/// [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken<C = AccessTokenClaims>(pub Verified<C>);

/// Why the extractor refused a request. Every variant answers `401` with an
/// empty body; the variants differ only in the challenge, and carry the
/// detail for handlers that take `Result<VerifiedToken<C>, BearerRejection>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BearerRejection {
    /// No `Authorization` header with the `Bearer` scheme: answered with the
    /// bare `Bearer` challenge (RFC 6750 §3.1: no error code when no
    /// credentials were sent).
    Missing,
    /// An `Authorization` header that is not one well-formed bearer
    /// credential (several headers, non-ASCII, empty token).
    Malformed,
    /// The token was refused by the verifier.
    Invalid(VerifyError),
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        let challenge = match self {
            Self::Missing => "Bearer",
            Self::Malformed | Self::Invalid(_) => "Bearer error=\"invalid_token\"",
        };
        (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, HeaderValue::from_static(challenge))],
        )
            .into_response()
    }
}

impl<S, C> FromRequestParts<S> for VerifiedToken<C>
where
    S: Send + Sync,
    SharedVerifier: FromRef<S>,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = BearerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = SharedVerifier::from_ref(state);
        let token = request_token(parts)?;
        match verifier.verify::<C>(token).await {
            Ok(verified) => Ok(Self(verified)),
            Err(error) => Err(refused(error, parts, None)),
        }
    }
}

/// Extracts a token verified by the [`TrustedIssuers`] of the router state:
/// the claims and the name of the issuer entry (features `axum` and
/// `remote`). Refusals are those of [`VerifiedToken`]; the log line also
/// names the entry when the issuer was known.
#[cfg(feature = "remote")]
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedToken<C = AccessTokenClaims>(pub Trusted<C>);

#[cfg(feature = "remote")]
impl<S, C> FromRequestParts<S> for TrustedToken<C>
where
    S: Send + Sync,
    TrustedIssuers: FromRef<S>,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = BearerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let trusted = TrustedIssuers::from_ref(state);
        let token = request_token(parts)?;
        match trusted.verify_named::<C>(token).await {
            Ok(verified) => Ok(Self(verified)),
            Err((issuer, error)) => Err(refused(error, parts, issuer.as_deref())),
        }
    }
}

/// The bearer token of the request, or its rejection (logged).
fn request_token(parts: &Parts) -> Result<&str, BearerRejection> {
    bearer_token(&parts.headers).inspect_err(|rejection| {
        tracing::debug!(
            path = parts.uri.path(),
            refusal = ?rejection,
            "request without a usable bearer token"
        );
    })
}

/// Logs why a token was refused and makes the rejection.
fn refused(error: VerifyError, parts: &Parts, issuer: Option<&str>) -> BearerRejection {
    let reason = error.reason();
    let path = parts.uri.path();
    if matches!(
        error,
        VerifyError::Key(KeyLookupError::Unavailable(_)) | VerifyError::IssuerLookup(_)
    ) {
        // Not the caller's fault: the operator needs to see it.
        tracing::warn!(reason, %error, path, issuer, "bearer token not verifiable");
    } else {
        tracing::info!(reason, %error, path, issuer, "bearer token refused");
    }
    BearerRejection::Invalid(error)
}

/// The token of the one `Authorization: Bearer` header (scheme matched
/// without regard to case, RFC 7235 §2.1).
fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerRejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(BearerRejection::Missing)?;
    if values.next().is_some() {
        return Err(BearerRejection::Malformed);
    }
    let value = value.to_str().map_err(|_| BearerRejection::Malformed)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerRejection::Missing);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(BearerRejection::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer_token(&headers(&["Bearer abc.def.ghi"])), Ok("abc.def.ghi"));
        assert_eq!(bearer_token(&headers(&["bearer  abc"])), Ok("abc"));
        assert_eq!(bearer_token(&headers(&["BEARER abc"])), Ok("abc"));
        assert_eq!(bearer_token(&headers(&[])), Err(BearerRejection::Missing));
        assert_eq!(
            bearer_token(&headers(&["Basic dXNlcjpwdw=="])),
            Err(BearerRejection::Missing)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer"])),
            Err(BearerRejection::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer "])),
            Err(BearerRejection::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a b"])),
            Err(BearerRejection::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(BearerRejection::Malformed)
        );
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, HeaderValue::from_bytes(b"Bearer \xff").unwrap());
        assert_eq!(bearer_token(&map), Err(BearerRejection::Malformed));
    }

    #[test]
    fn rejections_say_nothing_more() {
        for (rejection, challenge) in [
            (BearerRejection::Missing, "Bearer"),
            (BearerRejection::Malformed, "Bearer error=\"invalid_token\""),
            (
                BearerRejection::Invalid(VerifyError::MissingKid),
                "Bearer error=\"invalid_token\"",
            ),
        ] {
            let response = rejection.into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.headers()[WWW_AUTHENTICATE], challenge);
            assert_eq!(response.headers().len(), 1, "{:?}", response.headers());
        }
    }
}
