//! Requests that present a token (RFC 6750, RFC 9449 §7): the control
//! plane's view of bearer and DPoP-bound tokens.
//!
//! [`Verifier::verify_request`] (and, with `remote`,
//! `TrustedIssuers::verify_request`) takes what a request presents
//! ([`PresentedRequest`]: method, URL, the `Authorization` and `DPoP`
//! header values), verifies the token (through the verification cache, if
//! one is on) and then applies RFC 9449:
//!
//! - `Authorization: DPoP <token>`: the token must be bound (`cnf.jkt`), and
//!   the `DPoP` proof must pass every check of [`DpopVerifier`] for this
//!   method and URL with `ath` = the token's hash, be signed by the key
//!   whose thumbprint is `cnf.jkt`, and not have been used before;
//! - `Authorization: Bearer <token>`: the token must not be bound (a
//!   bound token presented as bearer is refused, RFC 9449 §7.2), and the
//!   policy must not [require](crate::dpop::DpopMode::Required) DPoP.
//!
//! A proof is recorded in the replay store only once everything else has
//! passed, so a refused request never spends a proof, and only the holder
//! of a valid bound token and its key can add to the store.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use oidc_core::claims::Confirmation;
//! use oidc_core::dpop::{DpopKey, DpopProof, DpopVerifier};
//! use oidc_core::keys::{LocalSigner, Signer};
//! use oidc_core::verify::dpop::{PresentedRequest, RequestError};
//! use oidc_core::{AccessTokenClaims, Algorithm, Issuer, JwkSet, KeySet, Lifetime, Policy, TokenRequest, Verifier};
//!
//! let (signer, _pem) = LocalSigner::generate(Algorithm::ES256).unwrap();
//! let jwks = JwkSet::from_keys([signer.verifying_key().clone()]).unwrap();
//! let issuer = Issuer::new("https://tokens.example.com", Arc::new(KeySet::single(Arc::new(signer))), Lifetime::default()).unwrap();
//! let key = DpopKey::generate().unwrap();
//! let request = TokenRequest::new("connector-1", "https://api.example.com");
//! let token = issuer.issue_with_confirmation(&request, Some(&Confirmation::jkt(key.thumbprint()))).await.unwrap().token;
//!
//! let policy = Policy::builder("https://tokens.example.com", ["https://api.example.com"]).build().unwrap();
//! let verifier = Verifier::new(policy, jwks);
//! let proofs = DpopVerifier::builder().build().unwrap();
//! let url = "https://api.example.com/poll";
//!
//! let proof = DpopProof::builder(&key, "GET", url).access_token(token.as_str()).sign().unwrap();
//! let authorization = format!("DPoP {}", token.as_str());
//! let presented = PresentedRequest::new("GET", url)
//!     .authorization(&authorization)
//!     .dpop(proof.as_str());
//! let ok = verifier.verify_request::<AccessTokenClaims>(&presented, &proofs).await.unwrap();
//! assert_eq!(ok.token().claims().sub, "connector-1");
//!
//! // The same token without its key, as a bearer token: refused.
//! let bearer = format!("Bearer {}", token.as_str());
//! let stolen = PresentedRequest::new("GET", url).authorization(&bearer);
//! assert!(matches!(
//!     verifier.verify_request::<AccessTokenClaims>(&stolen, &proofs).await,
//!     Err(RequestError::BoundTokenAsBearer)
//! ));
//! # });
//! ```

use std::fmt;

use serde::de::DeserializeOwned;

use super::{KeySource, Verified, Verifier, VerifyError};
use crate::claims::TokenBinding;
use crate::dpop::{DpopError, DpopMode, DpopVerifier, ProofTarget, VerifiedProof};
#[cfg(feature = "remote")]
use crate::verify::trust::{Trusted, TrustedIssuers};

/// What a request presents: its method and URL (as clients reach the
/// server), and the values of its `Authorization` and `DPoP` headers.
#[derive(Clone, Copy)]
pub struct PresentedRequest<'a> {
    method: &'a str,
    url: &'a str,
    authorization: Option<&'a str>,
    dpop: Option<&'a str>,
}

impl fmt::Debug for PresentedRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The header values are credentials: only whether they are there.
        f.debug_struct("PresentedRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("authorization", &self.authorization.is_some())
            .field("dpop", &self.dpop.is_some())
            .finish()
    }
}

impl<'a> PresentedRequest<'a> {
    /// A request with `method` to `url` (scheme, host and path as the
    /// client addressed them; a query is ignored).
    pub fn new(method: &'a str, url: &'a str) -> Self {
        Self {
            method,
            url,
            authorization: None,
            dpop: None,
        }
    }

    /// The `Authorization` header's value.
    pub fn authorization(mut self, value: &'a str) -> Self {
        self.authorization = Some(value);
        self
    }

    /// The `DPoP` header's value (one header; a request with several is
    /// refused before this).
    pub fn dpop(mut self, value: &'a str) -> Self {
        self.dpop = Some(value);
        self
    }
}

/// The `Authorization` scheme a token was presented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449 §7.1).
    Dpop,
}

impl Scheme {
    /// `Bearer` or `DPoP`, as written in a challenge.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop => crate::dpop::DPOP_SCHEME,
        }
    }
}

/// A request whose token (and proof, for DPoP) passed: the verified token
/// (`T` is [`Verified`] or `Trusted`), the scheme, and the proof.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorized<T> {
    token: T,
    scheme: Scheme,
    proof: Option<VerifiedProof>,
}

impl<T> Authorized<T> {
    /// The verified token.
    pub fn token(&self) -> &T {
        &self.token
    }

    /// The verified token, by value.
    pub fn into_token(self) -> T {
        self.token
    }

    /// The scheme it was presented with.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The proof, for a DPoP request.
    pub fn proof(&self) -> Option<&VerifiedProof> {
        self.proof.as_ref()
    }
}

/// Why a request's token was refused. [`reason`](Self::reason) is a stable
/// code for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No `Authorization` header with the `Bearer` or `DPoP` scheme.
    #[error("no bearer or DPoP token was presented")]
    MissingCredentials,
    /// An `Authorization` header of a known scheme that is not one
    /// well-formed credential (empty token, spaces inside).
    #[error("the {} credential is malformed", .0.name())]
    MalformedAuthorization(Scheme),
    /// The token was refused.
    #[error("{error}")]
    Token {
        /// How it was presented.
        scheme: Scheme,
        /// Why it was refused.
        error: VerifyError,
    },
    /// A DPoP-bound token presented as `Bearer` (RFC 9449 §7.2): without
    /// its key's proof it is worth nothing.
    #[error("a DPoP-bound token was presented as a bearer token")]
    BoundTokenAsBearer,
    /// A bearer token where the issuer requires DPoP-bound tokens.
    #[error("the issuer requires DPoP-bound tokens and a bearer token was presented")]
    DpopRequired,
    /// A token without `cnf` presented with the `DPoP` scheme.
    #[error("a token that is not DPoP-bound was presented with the DPoP scheme")]
    UnboundTokenAsDpop,
    /// A token bound by another method than `jkt` (mutual TLS, ...), which
    /// cannot be checked here.
    #[error("the token is bound to a key by a method other than DPoP")]
    UnsupportedBinding,
    /// The `DPoP` scheme where DPoP is not accepted (a bearer-only endpoint).
    #[error("DPoP tokens are not accepted here")]
    DpopNotAccepted,
    /// `Authorization: DPoP` without a `DPoP` header.
    #[error("a DPoP token was presented without a DPoP proof")]
    MissingProof,
    /// Several `DPoP` headers, or one that is not ASCII.
    #[error("the DPoP header is not exactly one ASCII value")]
    MalformedProofHeader,
    /// The proof was refused.
    #[error("{0}")]
    Proof(DpopError),
    /// The proof is signed by another key than the token is bound to.
    #[error("the DPoP proof's key is not the one the token is bound to")]
    KeyMismatch,
}

impl RequestError {
    /// A stable, short reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_token",
            Self::MalformedAuthorization(_) => "malformed_authorization",
            Self::Token { error, .. } => error.reason(),
            Self::BoundTokenAsBearer => "bound_token_as_bearer",
            Self::DpopRequired => "dpop_required",
            Self::UnboundTokenAsDpop => "unbound_token_as_dpop",
            Self::UnsupportedBinding => "unsupported_binding",
            Self::DpopNotAccepted => "dpop_not_accepted",
            Self::MissingProof => "missing_dpop_proof",
            Self::MalformedProofHeader => "malformed_dpop_header",
            Self::Proof(error) => error.reason(),
            Self::KeyMismatch => "dpop_key_mismatch",
        }
    }
}

/// The scheme and token of an `Authorization` header value (the scheme
/// matched without regard to case, RFC 7235 §2.1).
pub(crate) fn parse_authorization(value: Option<&str>) -> Result<(Scheme, &str), RequestError> {
    let value = value.ok_or(RequestError::MissingCredentials)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(RequestError::MissingCredentials);
    };
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(RequestError::MalformedAuthorization(scheme));
    }
    Ok((scheme, token))
}

/// RFC 9449's rules for a verified token presented with `scheme` under
/// `mode`; `proofs` is `None` where DPoP is not accepted.
pub(crate) async fn check_presentation(
    scheme: Scheme,
    token: &str,
    binding: &TokenBinding,
    mode: DpopMode,
    request: &PresentedRequest<'_>,
    proofs: Option<&DpopVerifier>,
) -> Result<Option<VerifiedProof>, RequestError> {
    match scheme {
        Scheme::Bearer => {
            if binding.is_bound() {
                return Err(RequestError::BoundTokenAsBearer);
            }
            if mode == DpopMode::Required {
                return Err(RequestError::DpopRequired);
            }
            Ok(None)
        }
        Scheme::Dpop => {
            let proofs = proofs.ok_or(RequestError::DpopNotAccepted)?;
            let jkt = match binding {
                TokenBinding::Jkt(jkt) => jkt,
                TokenBinding::Unbound => return Err(RequestError::UnboundTokenAsDpop),
                _ => return Err(RequestError::UnsupportedBinding),
            };
            let proof = request.dpop.ok_or(RequestError::MissingProof)?;
            let target = ProofTarget::new(request.method, request.url).with_access_token(token);
            let checked = proofs.check(proof, &target).map_err(RequestError::Proof)?;
            if checked.jkt() != &**jkt {
                return Err(RequestError::KeyMismatch);
            }
            proofs
                .record(checked)
                .await
                .map(Some)
                .map_err(RequestError::Proof)
        }
    }
}

impl<K: KeySource> Verifier<K> {
    /// Verifies the token a request presents, bearer or DPoP, under this
    /// verifier's policy ([`Policy::dpop`](super::Policy::dpop)); see the
    /// [module docs](self).
    pub async fn verify_request<C>(
        &self,
        request: &PresentedRequest<'_>,
        proofs: &DpopVerifier,
    ) -> Result<Authorized<Verified<C>>, RequestError>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        self.verify_presented(request, Some(proofs)).await
    }

    /// [`verify_request`](Self::verify_request); `proofs` `None`: the
    /// `DPoP` scheme is refused (a bearer-only endpoint).
    pub(crate) async fn verify_presented<C>(
        &self,
        request: &PresentedRequest<'_>,
        proofs: Option<&DpopVerifier>,
    ) -> Result<Authorized<Verified<C>>, RequestError>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        let (scheme, token) = parse_authorization(request.authorization)?;
        if scheme == Scheme::Dpop && proofs.is_none() {
            return Err(RequestError::DpopNotAccepted);
        }
        let verified = self
            .verify::<C>(token)
            .await
            .map_err(|error| RequestError::Token { scheme, error })?;
        let mode = self.policy().dpop();
        let proof = check_presentation(scheme, token, verified.binding(), mode, request, proofs).await?;
        Ok(Authorized {
            token: verified,
            scheme,
            proof,
        })
    }
}

#[cfg(feature = "remote")]
impl TrustedIssuers {
    /// Verifies the token a request presents, bearer or DPoP, under the
    /// policy of the entry its `iss` names (its `dpop` mode included); see
    /// the [module docs](self).
    pub async fn verify_request<C>(
        &self,
        request: &PresentedRequest<'_>,
        proofs: &DpopVerifier,
    ) -> Result<Authorized<Trusted<C>>, RequestError>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        self.verify_presented(request, Some(proofs))
            .await
            .map_err(|(_, error)| error)
    }

    /// [`verify_request`](Self::verify_request), with the name of the entry
    /// that refused it when the issuer was known (for logs).
    pub(crate) async fn verify_presented<C>(
        &self,
        request: &PresentedRequest<'_>,
        proofs: Option<&DpopVerifier>,
    ) -> Result<Authorized<Trusted<C>>, (Option<std::sync::Arc<str>>, RequestError)>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        let (scheme, token) = parse_authorization(request.authorization).map_err(|e| (None, e))?;
        if scheme == Scheme::Dpop && proofs.is_none() {
            return Err((None, RequestError::DpopNotAccepted));
        }
        let trusted = self
            .verify_named::<C>(token)
            .await
            .map_err(|(name, error)| (name, RequestError::Token { scheme, error }))?;
        let binding = trusted.verified().binding();
        match check_presentation(scheme, token, binding, trusted.dpop(), request, proofs).await {
            Ok(proof) => Ok(Authorized {
                token: trusted,
                scheme,
                proof,
            }),
            Err(error) => Err((Some(std::sync::Arc::from(trusted.issuer_name())), error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_forms() {
        assert_eq!(
            parse_authorization(Some("Bearer a.b.c")),
            Ok((Scheme::Bearer, "a.b.c"))
        );
        assert_eq!(
            parse_authorization(Some("dpop  a.b.c")),
            Ok((Scheme::Dpop, "a.b.c"))
        );
        assert_eq!(
            parse_authorization(Some("DPoP a.b.c")),
            Ok((Scheme::Dpop, "a.b.c"))
        );
        assert_eq!(parse_authorization(None), Err(RequestError::MissingCredentials));
        assert_eq!(
            parse_authorization(Some("Basic dXNlcjpwdw==")),
            Err(RequestError::MissingCredentials)
        );
        assert_eq!(
            parse_authorization(Some("DPoP")),
            Err(RequestError::MalformedAuthorization(Scheme::Dpop))
        );
        assert_eq!(
            parse_authorization(Some("Bearer a b")),
            Err(RequestError::MalformedAuthorization(Scheme::Bearer))
        );
    }
}
