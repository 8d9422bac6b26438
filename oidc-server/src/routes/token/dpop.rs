//! DPoP (RFC 9449) at the token endpoint: the request's `DPoP` proof is
//! checked against `POST` and the token endpoint URL as discovery
//! publishes it before the grant is looked at, and recorded in the
//! fleet's replay store once the client is authenticated (so that a
//! stranger's requests never write to the store); the token is then bound
//! to the proof's key (`cnf.jkt`, `token_type: DPoP`).
//!
//! Refusals (RFC 9449 §5, §8): 400 `invalid_dpop_proof`, or 400
//! `use_dpop_nonce` when server nonces are on and the proof has no
//! current one; both with a fresh `DPoP-Nonce` when nonces are on; 503
//! when the replay store cannot record the proof. The audit log and the
//! metrics name the refusal by a fixed reason (`dpop_*`), never by any of
//! the proof's text.

use axum::http::{HeaderMap, HeaderName};
use oidc_core::dpop::{CheckedProof, DpopError, ProofTarget};

use super::{Refusal, TokenError, DEFAULT_RETRY_AFTER};
use crate::state::AppState;

/// The request header of a proof.
pub(super) const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The response header of a server nonce.
pub(super) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The request's proof, checked (but not yet recorded), if it has one.
// `Refusal` is what every (async, so unlinted) step of the handler returns;
// it is built at most once per request and answered at once.
#[allow(clippy::result_large_err)]
pub(super) fn check(state: &AppState, headers: &HeaderMap) -> Result<Option<CheckedProof>, Refusal> {
    let mut values = headers.get_all(&DPOP).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid(
            state,
            "more than one DPoP header",
            "dpop_several_headers",
        ));
    }
    let Ok(proof) = value.to_str() else {
        return Err(invalid(state, "the DPoP header is not a JWT", "dpop_malformed"));
    };
    let target = ProofTarget::new("POST", &state.token_endpoint);
    state
        .dpop
        .check(proof, &target)
        .map(Some)
        .map_err(|error| refused(state, &error))
}

/// A required proof is missing.
pub(super) fn missing(state: &AppState) -> Refusal {
    invalid(
        state,
        "this client must send a DPoP proof (RFC 9449) with its token requests",
        "dpop_required",
    )
}

/// The refusal of a proof `error` (a check's or the replay store's).
pub(super) fn refused(state: &AppState, error: &DpopError) -> Refusal {
    // One of `DpopError::METRIC_REASONS`, a fixed set.
    let reason = error.metric_reason();
    // The store's failure (and, never from the fleet adapter, a per-key
    // quota) is the server's, not the proof's: 503, retry later.
    if matches!(error, DpopError::ReplayStore(_)) {
        tracing::warn!(%error, "DPoP proof not recorded; refusing for now");
        let mut refusal = Refusal::from(TokenError::TemporarilyUnavailable {
            retry_after: DEFAULT_RETRY_AFTER,
        });
        refusal.reason = reason;
        return refusal;
    }
    match (error, state.dpop.fresh_nonce()) {
        (DpopError::Nonce(_), Some(nonce)) => {
            let mut refusal = Refusal::from(TokenError::UseDpopNonce { nonce });
            refusal.reason = reason;
            refusal
        }
        _ => invalid(state, description(error), reason),
    }
}

fn invalid(state: &AppState, description: &'static str, reason: &'static str) -> Refusal {
    let mut refusal = Refusal::from(TokenError::InvalidDpopProof {
        description,
        nonce: state.dpop.fresh_nonce(),
    });
    refusal.reason = reason;
    refusal
}

/// What the answer's `error_description` says: fixed texts, never the proof's.
fn description(error: &DpopError) -> &'static str {
    match error {
        DpopError::Malformed(_)
        | DpopError::Claims(_)
        | DpopError::ClaimType { .. }
        | DpopError::JtiTooLong(_) => {
            "the DPoP proof is not a well-formed dpop+jwt with a public jwk and an asymmetric alg"
        }
        DpopError::WrongType(_) => "the DPoP proof's typ must be dpop+jwt",
        DpopError::AlgorithmNotAllowed(_) => {
            "the DPoP proof's alg is not allowed (see dpop_signing_alg_values_supported)"
        }
        DpopError::Key(_) => {
            "the DPoP proof's jwk must be a public asymmetric key (no private members, no oct)"
        }
        DpopError::Signature(_) => "the DPoP proof's signature does not verify with its jwk",
        DpopError::MissingClaim(_) => "the DPoP proof lacks a required claim (jti, htm, htu, iat)",
        DpopError::WrongMethod { .. } => "the DPoP proof's htm is not POST",
        DpopError::WrongUrl { .. } => "the DPoP proof's htu is not this token endpoint",
        DpopError::IssuedInFuture { .. } | DpopError::TooOld { .. } => {
            "the DPoP proof's iat is outside the accepted window; sign a fresh proof"
        }
        DpopError::Nonce(_) => "the DPoP proof's nonce is missing or not current",
        DpopError::Replayed => "the DPoP proof was used before; sign a fresh proof for each request",
        _ => "the DPoP proof is refused",
    }
}
