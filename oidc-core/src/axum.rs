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
//! [`VerifiedToken`] and [`TrustedToken`] accept bearer tokens only: a
//! DPoP-bound token (`cnf`) presented as `Bearer` is refused (RFC 9449
//! §7.2), and so is any token of a policy that
//! [requires](crate::dpop::DpopMode::Required) DPoP. [`DpopToken`] and
//! [`DpopTrustedToken`] accept both schemes by the policy's rules (see
//! [`verify::dpop`](crate::verify::dpop)), with a [`DpopResource`] (the
//! proof verifier and the origin clients reach the server by) in the
//! router state. Their refusals are [`DpopRejection`]s: `401` with
//! `WWW-Authenticate: DPoP error="invalid_dpop_proof"` for a bad proof,
//! `DPoP error="use_dpop_nonce"` and a `DPoP-Nonce` header when the server's
//! nonce is missing or stale, `Bearer error="invalid_token"` or
//! `DPoP error="invalid_token"` for a refused token, as RFC 9449 §7.1 and
//! RFC 6750 §3 say; nothing more (the reason is logged).
//!
//! ```
//! use std::sync::Arc;
//! use axum::extract::FromRef;
//! use axum::{routing::get, Json, Router};
//! use oidc_core::axum::{shared_verifier, DpopResource, DpopToken, SharedDpop, SharedVerifier};
//! use oidc_core::dpop::{DpopMode, DpopVerifier};
//! use oidc_core::{AccessTokenClaims, JwkSet, Policy};
//!
//! #[derive(Clone)]
//! struct State {
//!     verifier: SharedVerifier,
//!     dpop: SharedDpop,
//! }
//! impl FromRef<State> for SharedVerifier {
//!     fn from_ref(state: &State) -> Self { state.verifier.clone() }
//! }
//! impl FromRef<State> for SharedDpop {
//!     fn from_ref(state: &State) -> Self { state.dpop.clone() }
//! }
//!
//! async fn poll(DpopToken(request): DpopToken<AccessTokenClaims>) -> Json<String> {
//!     Json(request.token().claims().sub.clone())
//! }
//!
//! let policy = Policy::builder("https://tokens.example.com", ["https://api.example.com"])
//!     .dpop(DpopMode::Required)
//!     .build()
//!     .unwrap();
//! let proofs = DpopVerifier::builder().build().unwrap();
//! let state = State {
//!     verifier: shared_verifier(policy, JwkSet::default()),
//!     dpop: Arc::new(DpopResource::new("https://api.example.com", proofs).unwrap()),
//! };
//! let app: Router = Router::new().route("/poll", get(poll)).with_state(state);
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
use ::axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use ::axum::http::request::Parts;
use ::axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use ::axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::dpop::{DpopMode, DpopVerifier, HtuError, NormalizedUrl};
use crate::verify::dpop::{Authorized, PresentedRequest, RequestError, Scheme};
#[cfg(feature = "remote")]
use crate::verify::trust::{Trusted, TrustedIssuers};
use crate::verify::{KeyLookupError, KeySource, Policy, VerificationCache, Verified, Verifier, VerifyError};
use crate::AccessTokenClaims;

/// The `DPoP` request header (RFC 9449 §4.1).
pub const DPOP_HEADER: HeaderName = HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header (RFC 9449 §8).
pub const DPOP_NONCE_HEADER: HeaderName = HeaderName::from_static("dpop-nonce");

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
    /// The token is valid but may not be used as a bearer token: it is
    /// DPoP-bound (RFC 9449 §7.2), or its issuer requires DPoP.
    NotBearer(RequestError),
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        let challenge = match self {
            Self::Missing => "Bearer",
            Self::Malformed | Self::Invalid(_) | Self::NotBearer(_) => "Bearer error=\"invalid_token\"",
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
            Ok(verified) => {
                bearer_only(
                    verified.binding().is_bound(),
                    verifier.policy().dpop(),
                    parts,
                    None,
                )?;
                Ok(Self(verified))
            }
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
            Ok(verified) => {
                let bound = verified.verified().binding().is_bound();
                bearer_only(bound, verified.dpop(), parts, Some(verified.issuer_name()))?;
                Ok(Self(verified))
            }
            Err((issuer, error)) => Err(refused(error, parts, issuer.as_deref())),
        }
    }
}

/// Refuses a verified token that may not be used as a bearer token.
fn bearer_only(
    bound: bool,
    mode: DpopMode,
    parts: &Parts,
    issuer: Option<&str>,
) -> Result<(), BearerRejection> {
    let error = if bound {
        RequestError::BoundTokenAsBearer
    } else if mode == DpopMode::Required {
        RequestError::DpopRequired
    } else {
        return Ok(());
    };
    tracing::info!(
        reason = error.reason(),
        path = parts.uri.path(),
        issuer,
        "bearer token refused"
    );
    Err(BearerRejection::NotBearer(error))
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

/// What the DPoP extractors need besides the token verifier: the proof
/// verifier, and the origin clients reach this server by
/// (`https://api.example.com`), which with the request's path is the URL a
/// proof's `htu` must name. The origin is configured, never taken from the
/// request's `Host`: a proof made for another server must not pass here.
#[derive(Debug, Clone)]
pub struct DpopResource {
    proofs: DpopVerifier,
    origin: String,
    algs: String,
}

/// The [`DpopResource`] the DPoP extractors take from the router state.
pub type SharedDpop = Arc<DpopResource>;

impl DpopResource {
    /// `origin`: scheme, host and port (if not the default) as clients
    /// address this server, without a path.
    pub fn new(origin: &str, proofs: DpopVerifier) -> Result<Self, HtuError> {
        let normalized = NormalizedUrl::parse(origin)?;
        // Nothing after the authority: no path, query or fragment.
        let authority = normalized.as_str().split_once("://").map_or("", |(_, rest)| rest);
        if origin.contains(['?', '#']) || authority.find('/') != authority.len().checked_sub(1) {
            return Err(HtuError::Authority);
        }
        let origin = normalized.as_str().trim_end_matches('/').to_owned();
        let algs = proofs
            .algorithms()
            .iter()
            .map(|alg| alg.name())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self { proofs, origin, algs })
    }

    /// The proof verifier.
    pub fn proofs(&self) -> &DpopVerifier {
        &self.proofs
    }

    /// The origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn rejection(&self, error: RequestError) -> DpopRejection {
        DpopRejection {
            error,
            algs: self.algs.clone(),
            nonce: self.proofs.fresh_nonce(),
        }
    }
}

/// Extracts a request's token, bearer or DPoP-bound with its proof, verified
/// by the [`SharedVerifier`] of the router state under its policy (its
/// [`dpop`](crate::verify::PolicyBuilder::dpop) mode included), with the
/// [`SharedDpop`] of the state; see the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct DpopToken<C = AccessTokenClaims>(pub Authorized<Verified<C>>);

/// [`DpopToken`] through the [`TrustedIssuers`] of the router state: each
/// issuer entry's `dpop` mode applies to its tokens (features `axum` and
/// `remote`).
#[cfg(feature = "remote")]
#[derive(Debug, Clone, PartialEq)]
pub struct DpopTrustedToken<C = AccessTokenClaims>(pub Authorized<Trusted<C>>);

/// Why a DPoP extractor refused a request: `401` with the challenges RFC
/// 9449 §7.1 and RFC 6750 §3 describe (and a fresh `DPoP-Nonce` with a
/// `DPoP` challenge when nonces are on), or `503` with `Retry-After` when
/// the replay store could not record the proof. The body is empty; the
/// detail is here for handlers that take `Result<DpopToken<C>, DpopRejection>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopRejection {
    error: RequestError,
    algs: String,
    nonce: Option<String>,
}

impl DpopRejection {
    /// Why.
    pub fn error(&self) -> &RequestError {
        &self.error
    }

    /// The `WWW-Authenticate` challenges, in order.
    pub fn challenges(&self) -> Vec<String> {
        let dpop = |error: Option<&str>| match error {
            Some(error) => format!("DPoP error=\"{error}\", algs=\"{}\"", self.algs),
            None => format!("DPoP algs=\"{}\"", self.algs),
        };
        let invalid = |scheme: Scheme| match scheme {
            Scheme::Bearer => "Bearer error=\"invalid_token\"".to_owned(),
            Scheme::Dpop => dpop(Some("invalid_token")),
        };
        match &self.error {
            RequestError::MissingCredentials | RequestError::DpopNotAccepted => {
                vec![dpop(None), "Bearer".to_owned()]
            }
            RequestError::MalformedAuthorization(scheme) | RequestError::Token { scheme, .. } => {
                vec![invalid(*scheme)]
            }
            RequestError::BoundTokenAsBearer => vec![invalid(Scheme::Bearer)],
            RequestError::DpopRequired
            | RequestError::UnboundTokenAsDpop
            | RequestError::UnsupportedBinding => vec![invalid(Scheme::Dpop)],
            RequestError::Proof(error) => vec![dpop(Some(error.error_code()))],
            _ => vec![dpop(Some("invalid_dpop_proof"))],
        }
    }
}

impl IntoResponse for DpopRejection {
    fn into_response(self) -> Response {
        if let RequestError::Proof(error) = &self.error {
            if error.is_unavailable() {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(RETRY_AFTER, HeaderValue::from_static("1"))],
                )
                    .into_response();
            }
        }
        let challenges = self.challenges();
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        let headers = response.headers_mut();
        for challenge in &challenges {
            if let Ok(value) = HeaderValue::from_str(challenge) {
                headers.append(WWW_AUTHENTICATE, value);
            }
        }
        let nonce = self.nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok());
        if let Some(nonce) = nonce.filter(|_| challenges.iter().any(|c| c.starts_with("DPoP"))) {
            headers.insert(DPOP_NONCE_HEADER, nonce);
        }
        response
    }
}

/// The one value of header `name`: `Ok(None)` when absent, `Err` when
/// repeated or not ASCII.
fn single_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    value.to_str().map(Some).map_err(|_| ())
}

/// The request's URL as clients address it, the presented request, or a
/// refusal.
fn presented<'a>(parts: &'a Parts, url: &'a str) -> Result<PresentedRequest<'a>, RequestError> {
    let mut request = PresentedRequest::new(parts.method.as_str(), url);
    match single_header(&parts.headers, &AUTHORIZATION) {
        Ok(Some(value)) => request = request.authorization(value),
        Ok(None) => {}
        Err(()) => return Err(RequestError::MalformedAuthorization(Scheme::Bearer)),
    }
    match single_header(&parts.headers, &DPOP_HEADER) {
        Ok(Some(value)) => request = request.dpop(value),
        Ok(None) => {}
        Err(()) => return Err(RequestError::MalformedProofHeader),
    }
    Ok(request)
}

/// Logs why a request was refused and makes the rejection.
fn dpop_refused(
    resource: &DpopResource,
    error: RequestError,
    parts: &Parts,
    issuer: Option<&str>,
) -> DpopRejection {
    let reason = error.reason();
    let path = parts.uri.path();
    let operator = match &error {
        RequestError::Token { error, .. } => matches!(
            error,
            VerifyError::Key(KeyLookupError::Unavailable(_)) | VerifyError::IssuerLookup(_)
        ),
        RequestError::Proof(error) => error.is_unavailable(),
        _ => false,
    };
    if operator {
        tracing::warn!(reason, %error, path, issuer, "token not verifiable");
    } else {
        tracing::info!(reason, %error, path, issuer, "token refused");
    }
    resource.rejection(error)
}

impl<S, C> FromRequestParts<S> for DpopToken<C>
where
    S: Send + Sync,
    SharedVerifier: FromRef<S>,
    SharedDpop: FromRef<S>,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = DpopRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = SharedVerifier::from_ref(state);
        let resource = SharedDpop::from_ref(state);
        let url = format!("{}{}", resource.origin, parts.uri.path());
        let request = presented(parts, &url).map_err(|e| dpop_refused(&resource, e, parts, None))?;
        match verifier
            .verify_presented::<C>(&request, Some(&resource.proofs))
            .await
        {
            Ok(authorized) => Ok(Self(authorized)),
            Err(error) => Err(dpop_refused(&resource, error, parts, None)),
        }
    }
}

#[cfg(feature = "remote")]
impl<S, C> FromRequestParts<S> for DpopTrustedToken<C>
where
    S: Send + Sync,
    TrustedIssuers: FromRef<S>,
    SharedDpop: FromRef<S>,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = DpopRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let trusted = TrustedIssuers::from_ref(state);
        let resource = SharedDpop::from_ref(state);
        let url = format!("{}{}", resource.origin, parts.uri.path());
        let request = presented(parts, &url).map_err(|e| dpop_refused(&resource, e, parts, None))?;
        match trusted
            .verify_presented::<C>(&request, Some(&resource.proofs))
            .await
        {
            Ok(authorized) => Ok(Self(authorized)),
            Err((issuer, error)) => Err(dpop_refused(&resource, error, parts, issuer.as_deref())),
        }
    }
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
