//! Token exchange (RFC 8693) at the token endpoint: a connector presents
//! the identity token its platform gives it (`subject_token`) and gets an
//! access token, with no client authentication: the subject token is the
//! credential. The same upstream token also authenticates a
//! `client_credentials` request as its `client_assertion` (jwt-bearer), the
//! way Microsoft Entra's federated credentials do.
//!
//! What the subject token must be, and which connector it proves, is
//! `auth::federated`'s; here are the request's parameters and how its
//! refusals become RFC 8693 §2.2.2 / RFC 6749 §5.2 answers:
//! `invalid_request` (a parameter missing, repeated or unknown; client
//! authentication sent along), `invalid_grant` (the subject token fails a
//! check), `invalid_target` (an audience or resource the connector may not
//! ask for), 503 when the upstream keys or the replay store cannot be had.

use axum::http::{header, HeaderMap};
use axum::response::Response;
use oidc_core::dpop::CheckedProof;

use super::{respond, Grant, Refusal, TokenError};
use crate::auth::{federated::Bound, FederatedError};
use crate::form::Form;
use crate::routes::Peer;
use crate::state::AppState;

/// `auth_method` of a token exchange in the audit log.
const EXCHANGE_METHOD: &str = "token_exchange";
/// `auth_method` of an upstream token sent as a client assertion.
const FEDERATED_ASSERTION_METHOD: &str = "federated_jwt";

/// The token type of a JWT (RFC 8693 §3).
const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The token type of an OpenID Connect ID token (RFC 8693 §3).
const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The token type of an OAuth 2.0 access token (RFC 8693 §3): what is
/// issued, and a subject token type accepted when the token is a JWT.
pub(super) const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Parameters of client authentication, which a token exchange must not send.
const CLIENT_CREDENTIALS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

/// `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`.
pub(super) async fn token_exchange(
    state: &AppState,
    peer: Peer,
    headers: &HeaderMap,
    form: &Form,
    proof: Option<CheckedProof>,
) -> Result<Response, Refusal> {
    let invalid = |text: &'static str| {
        let mut refusal = Refusal::from(TokenError::InvalidRequest(text));
        refusal.method = Some(EXCHANGE_METHOD);
        refusal
    };
    if headers.contains_key(header::AUTHORIZATION) || form.has_any(&CLIENT_CREDENTIALS) {
        return Err(invalid(
            "a token exchange takes no client authentication: the subject token is the credential",
        ));
    }
    let token = form
        .single("subject_token")?
        .ok_or_else(|| invalid("subject_token is missing"))?;
    match form.single("subject_token_type")? {
        Some(TOKEN_TYPE_JWT | TOKEN_TYPE_ID_TOKEN | TOKEN_TYPE_ACCESS_TOKEN) => {}
        Some(_) => return Err(invalid(
            "subject_token_type must be urn:ietf:params:oauth:token-type:jwt (or id_token, or access_token \
                 for a JWT access token)",
        )),
        None => return Err(invalid("subject_token_type is missing")),
    }
    if form.has_any(&["actor_token", "actor_token_type"]) {
        return Err(invalid("actor_token (delegation) is not supported"));
    }
    match form.single("requested_token_type")? {
        None | Some(TOKEN_TYPE_ACCESS_TOKEN) => {}
        Some(_) => {
            return Err(invalid(
                "requested_token_type: only urn:ietf:params:oauth:token-type:access_token is issued",
            ))
        }
    }
    let client_id = form.single("client_id")?;
    let bound = federated_login(state, peer, token, client_id, EXCHANGE_METHOD).await?;
    respond(
        state,
        peer,
        grant(bound, EXCHANGE_METHOD, Some(TOKEN_TYPE_ACCESS_TOKEN), form, proof),
    )
    .await
}

/// A `client_credentials` request authenticated by an upstream identity
/// token as its `client_assertion`; refusals are `invalid_client`.
pub(super) async fn federated_assertion(
    state: &AppState,
    peer: Peer,
    client_id: Option<&str>,
    assertion: &str,
    form: &Form,
    proof: Option<CheckedProof>,
) -> Result<Response, Refusal> {
    let bound = federated_login(state, peer, assertion, client_id, FEDERATED_ASSERTION_METHOD)
        .await
        .map_err(|mut refusal| {
            if matches!(refusal.error, TokenError::InvalidGrant(_)) {
                refusal.error = TokenError::InvalidClient;
            }
            refusal.client = client_id.map(str::to_owned);
            refusal
        })?;
    respond(
        state,
        peer,
        grant(bound, FEDERATED_ASSERTION_METHOD, None, form, proof),
    )
    .await
}

fn grant<'a>(
    bound: Bound,
    method: &'static str,
    issued_token_type: Option<&'static str>,
    form: &'a Form,
    proof: Option<CheckedProof>,
) -> Grant<'a> {
    Grant {
        connector: bound.connector,
        method,
        attributes: bound.attributes,
        upstream: Some(bound.identity),
        issued_token_type,
        form,
        dpop: proof,
    }
}

/// The connector `token` proves, under the per-peer failure throttle: a
/// flooding peer is refused before any work, and every refused token
/// counts as a failure of its peer (no client id is tracked: the token
/// names none until it verified).
async fn federated_login(
    state: &AppState,
    peer: Peer,
    token: &str,
    client_id: Option<&str>,
    method: &'static str,
) -> Result<Bound, Refusal> {
    let peer_key = peer.throttle_key();
    let refusal = |error: TokenError, reason: &'static str| Refusal {
        error,
        reason,
        client: None,
        method: Some(method),
        upstream: None,
    };
    if let Err(retry_after) = state.throttle.check_peer(peer_key) {
        return Err(refusal(TokenError::TooManyFailures { retry_after }, "throttled"));
    }
    match state
        .authenticator
        .federated(token, client_id, state.clock.now())
        .await
    {
        Ok(bound) => Ok(bound),
        Err(FederatedError::Refused(refused)) => {
            let (error, reason) = match state.throttle.failed(None, peer_key) {
                Ok(()) => (TokenError::InvalidGrant(refused.description), refused.reason),
                Err(retry_after) => (TokenError::TooManyFailures { retry_after }, "throttled"),
            };
            Err(Refusal {
                upstream: refused.entry.map(|entry| (entry, refused.subject)),
                ..refusal(error, reason)
            })
        }
        Err(FederatedError::Unavailable { reason, retry_after }) => Err(refusal(
            TokenError::TemporarilyUnavailable { retry_after },
            reason,
        )),
    }
}
