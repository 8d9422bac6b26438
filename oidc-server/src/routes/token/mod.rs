//! `POST /token`: the OAuth 2.0 token endpoint: `client_credentials`, and
//! with `[[upstream_issuers]]` configured the token exchange (RFC 8693) in
//! `exchange`. Its refusals, and how the form's and the credential's errors
//! become them, are in `rejection`.

mod dpop;
mod exchange;
mod rejection;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use oidc_core::claims::{Attributes, Confirmation};
use oidc_core::dpop::{CheckedProof, DpopMode};
use oidc_core::keys::SignError;
use oidc_core::{IssueError, TokenRequest};
use serde::Serialize;

use super::Peer;
use crate::audit;
use crate::auth::federated::TOKEN_EXCHANGE;
use crate::auth::{AuthError, Credential, CredentialError, UpstreamIdentity};
use crate::config::ConnectorConfig;
use crate::form::{Form, FormError};
use crate::state::AppState;

pub(crate) use rejection::TokenError;

/// Parameters that must never arrive in the query string.
const BODY_PARAMS: [&str; 14] = [
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "audience",
    "resource",
    "refresh_token",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
];

/// Retry hint when the signer gives none.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    /// A token exchange's answer names what it issued (RFC 8693 §2.2.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

/// A refused request and what the audit log says about it.
struct Refusal {
    error: TokenError,
    reason: &'static str,
    client: Option<String>,
    method: Option<&'static str>,
    /// The upstream entry an exchanged token named, and its subject once
    /// its signature verified.
    upstream: Option<(Arc<str>, Option<String>)>,
}

impl From<TokenError> for Refusal {
    fn from(error: TokenError) -> Self {
        Self {
            reason: error.code(),
            error,
            client: None,
            method: None,
            upstream: None,
        }
    }
}

/// An authenticated request, about to be answered with a token.
struct Grant<'a> {
    connector: Arc<ConnectorConfig>,
    /// `auth_method` in the audit log.
    method: &'static str,
    /// The claims beyond the registered ones: the connector's attributes,
    /// and what `copy_claims` took from an upstream token.
    attributes: Attributes,
    /// The upstream identity behind an exchange.
    upstream: Option<UpstreamIdentity>,
    /// `issued_token_type` of a token exchange's answer.
    issued_token_type: Option<&'static str>,
    form: &'a Form,
    /// The request's DPoP proof, checked, to be recorded before the token
    /// is bound to its key.
    dpop: Option<CheckedProof>,
}

impl From<FormError> for Refusal {
    fn from(error: FormError) -> Self {
        TokenError::from(error).into()
    }
}

impl From<CredentialError> for Refusal {
    fn from(error: CredentialError) -> Self {
        TokenError::from(error).into()
    }
}

/// The handler.
pub(crate) async fn token(State(state): State<AppState>, peer: Peer, request: Request) -> Response {
    // Never a token whose audit line cannot be kept: with the log buffer
    // still full after `[log] max_wait_ms`, refuse before any work. Counted,
    // not logged: that line is what there is no room for.
    if !crate::telemetry::wait_for_room().await {
        state.metrics.token_refused("log_unavailable");
        return TokenError::TemporarilyUnavailable {
            retry_after: DEFAULT_RETRY_AFTER,
        }
        .into_response();
    }
    // Taken apart rather than extracted as `HeaderMap` and `Uri`, which
    // would copy them.
    let (parts, body) = request.into_parts();
    match issue(&state, peer, &parts.headers, &parts.uri, body).await {
        Ok(response) => response,
        Err(refusal) => {
            let (upstream, upstream_sub) = match &refusal.upstream {
                Some((entry, subject)) => (Some(&**entry), subject.as_deref()),
                None => (None, None),
            };
            audit::refused(
                refusal.client.as_deref(),
                refusal.method,
                refusal.reason,
                audit::Upstream {
                    upstream,
                    upstream_sub,
                },
                peer.0,
            );
            state.metrics.token_refused(refusal.reason);
            refusal.error.into_response()
        }
    }
}

async fn issue(
    state: &AppState,
    peer: Peer,
    headers: &HeaderMap,
    uri: &Uri,
    body: Body,
) -> Result<Response, Refusal> {
    if let Some(query) = uri.query() {
        if Form::parse(query.as_bytes()).has_any(&BODY_PARAMS) {
            return Err(TokenError::InvalidRequest(
                "parameters must be sent in the body, not in the query string",
            )
            .into());
        }
    }
    check_content_type(headers)?;
    let form = read_form(state, headers, body).await?;
    // Checked before the grant (no work for a stranger's bad proof),
    // recorded only once the client is authenticated.
    let proof = dpop::check(state, headers)?;

    match form.single("grant_type")? {
        None => Err(TokenError::InvalidRequest("grant_type is missing").into()),
        Some("client_credentials") => client_credentials(state, peer, headers, &form, proof).await,
        Some(TOKEN_EXCHANGE) if state.authenticator.federation().is_some() => {
            exchange::token_exchange(state, peer, headers, &form, proof).await
        }
        Some(_) => Err(TokenError::UnsupportedGrantType.into()),
    }
}

/// `grant_type=client_credentials`: client authentication, then a token.
async fn client_credentials(
    state: &AppState,
    peer: Peer,
    headers: &HeaderMap,
    form: &Form,
    proof: Option<CheckedProof>,
) -> Result<Response, Refusal> {
    let credential = Credential::from_request(headers, form)?;
    // An assertion whose `iss` is an upstream issuer is an upstream
    // identity token (as Entra's federated credentials send it), not a
    // `private_key_jwt` assertion (whose `iss` is the client id).
    if let Credential::Assertion { client_id, assertion } = &credential {
        let upstream = state
            .authenticator
            .federation()
            .and_then(|f| f.entry_of(assertion));
        if upstream.is_some() {
            return exchange::federated_assertion(state, peer, client_id.as_deref(), assertion, form, proof)
                .await;
        }
    }
    let connector = authenticate(state, &credential, peer).await?;
    let grant = Grant {
        attributes: connector.attributes.clone(),
        connector,
        method: credential.method(),
        upstream: None,
        issued_token_type: None,
        form,
        dpop: proof,
    };
    respond(state, peer, grant).await
}

/// The token for an authenticated `grant`: the scope and audience it asks
/// for, checked against its connector, signed, answered and audited.
async fn respond(state: &AppState, peer: Peer, grant: Grant<'_>) -> Result<Response, Refusal> {
    let Grant {
        connector,
        method,
        attributes,
        upstream,
        issued_token_type,
        form,
        dpop: proof,
    } = grant;
    let upstream_audit = upstream
        .as_ref()
        .map(|u| (Arc::clone(&u.entry), Some(u.subject.clone())));
    let refuse = |error: TokenError| Refusal {
        reason: error.code(),
        error,
        client: Some(connector.id.clone()),
        method: Some(method),
        upstream: upstream_audit.clone(),
    };

    let scope = granted_scope(&connector, form.single("scope")?).map_err(refuse)?;
    let audience = audience(&connector, form).map_err(refuse)?;
    let request = TokenRequest {
        subject: connector.id.clone(),
        client_id: connector.id.clone(),
        audience: audience.to_owned(),
        scope,
        attributes,
        ttl: None,
    };

    // The proof is spent only now, for a request that is otherwise granted.
    let cnf = match (proof, connector.dpop) {
        (None, DpopMode::Required) => {
            let missing = dpop::missing(state);
            return Err(Refusal {
                reason: missing.reason,
                ..refuse(missing.error)
            });
        }
        (None, DpopMode::Allowed) => None,
        (Some(checked), _) => match state.dpop.record(checked).await {
            Ok(proof) => Some(Confirmation::jkt(proof.jkt())),
            Err(error) => {
                let refused = dpop::refused(state, &error);
                return Err(Refusal {
                    reason: refused.reason,
                    ..refuse(refused.error)
                });
            }
        },
    };

    let started = Instant::now();
    // A remote signer is bounded by the issuer's sign deadline, well inside
    // the request timeout (`AppState`'s builder sets it).
    let result = state.issuer.issue_with_confirmation(&request, cnf.as_ref()).await;
    state.metrics.signed(started.elapsed());
    let issued = match result {
        Ok(issued) => {
            state.health.record(true);
            issued
        }
        Err(error) => {
            state.health.record(false);
            tracing::warn!(connector = %connector.id, %error, "token not issued");
            return Err(Refusal {
                reason: unavailable_reason(&error),
                ..refuse(TokenError::TemporarilyUnavailable {
                    retry_after: retry_after(&error),
                })
            });
        }
    };

    let body = TokenResponse {
        access_token: issued.token.as_str(),
        issued_token_type,
        token_type: if cnf.is_some() { "DPoP" } else { "Bearer" },
        expires_in: issued.expires_in(),
        scope: request.scope.as_deref(),
    };
    // Sized for the token up front (`axum::Json` starts at 128 bytes and
    // grows three times for a typical token). Writing strings and a number
    // into memory cannot fail; if it ever did, the request fails cleanly.
    let mut json = Vec::with_capacity(body.access_token.len() + 128);
    if serde_json::to_writer(&mut json, &body).is_err() {
        return Err(refuse(TokenError::TemporarilyUnavailable {
            retry_after: DEFAULT_RETRY_AFTER,
        }));
    }
    audit::issued(
        &connector.id,
        method,
        audience,
        request.scope.as_deref(),
        &issued,
        audit::Upstream {
            upstream: upstream.as_ref().map(|u| &*u.entry),
            upstream_sub: upstream.as_ref().map(|u| u.subject.as_str()),
        },
        peer.0,
    );
    state.metrics.token_issued();
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        json,
    )
        .into_response();
    // RFC 9449 §8: the nonce to use next, on success too.
    if let Some(nonce) = state.dpop.fresh_nonce() {
        if let Ok(value) = HeaderValue::from_str(&nonce) {
            response.headers_mut().insert(dpop::DPOP_NONCE, value);
        }
    }
    Ok(response)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), TokenError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim());
    match essence {
        Some(t) if t.eq_ignore_ascii_case("application/x-www-form-urlencoded") => Ok(()),
        _ => Err(TokenError::UnsupportedMediaType),
    }
}

async fn read_form(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Form, TokenError> {
    let limit = state.config.http.body_limit_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(TokenError::PayloadTooLarge);
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| TokenError::PayloadTooLarge)?;
    Ok(Form::parse(&bytes))
}

async fn authenticate(
    state: &AppState,
    credential: &Credential,
    peer: Peer,
) -> Result<std::sync::Arc<ConnectorConfig>, Refusal> {
    let refusal = |error: TokenError, reason: &'static str| Refusal {
        error,
        reason,
        client: credential.audit_client(),
        method: Some(credential.method()),
        upstream: None,
    };
    let peer_key = peer.throttle_key();
    // A flooding peer is refused before any work; a client id alone never
    // refuses a correct credential.
    if let Err(retry_after) = state.throttle.check_peer(peer_key) {
        return Err(refusal(TokenError::TooManyFailures { retry_after }, "throttled"));
    }
    state
        .authenticator
        .authenticate(credential, state.clock.now())
        .await
        .map_err(|error| match error {
            AuthError::Failed(failure) => {
                // Only registered ids get a counter of their own, so made-up
                // ids cannot grow the table.
                let registered = credential
                    .claimed_client_id()
                    .filter(|id| state.authenticator.connectors().get(id).is_some());
                match state.throttle.failed(registered, peer_key) {
                    Ok(()) => refusal(TokenError::InvalidClient, failure.reason()),
                    Err(retry_after) => refusal(TokenError::TooManyFailures { retry_after }, "throttled"),
                }
            }
            AuthError::Unavailable { reason, retry_after } => {
                refusal(TokenError::TemporarilyUnavailable { retry_after }, reason)
            }
        })
}

/// The scopes to grant: the requested ones if all are allowed, else the defaults.
fn granted_scope(connector: &ConnectorConfig, requested: Option<&str>) -> Result<Option<String>, TokenError> {
    let mut granted: Vec<&str> = Vec::new();
    match requested {
        Some(requested) => {
            for scope in requested.split(' ').filter(|s| !s.is_empty()) {
                if !connector.scopes.contains(scope) {
                    return Err(TokenError::InvalidScope);
                }
                if !granted.contains(&scope) {
                    granted.push(scope);
                }
            }
        }
        None => granted.extend(connector.default_scopes.iter().map(String::as_str)),
    }
    Ok((!granted.is_empty()).then(|| granted.join(" ")))
}

/// The audience: `audience` or RFC 8707 `resource`, one value, from the
/// connector's allowed list; its first audience when none is asked for.
fn audience<'c>(connector: &'c ConnectorConfig, form: &Form) -> Result<&'c str, TokenError> {
    let audiences: Vec<&str> = form.all("audience").collect();
    let resources: Vec<&str> = form.all("resource").collect();
    if !audiences.is_empty() && !resources.is_empty() {
        return Err(TokenError::InvalidRequest("send audience or resource, not both"));
    }
    let requested = if audiences.is_empty() {
        resources
    } else {
        audiences
    };
    match requested.as_slice() {
        [] => connector
            .audiences
            .first()
            .map(String::as_str)
            .ok_or(TokenError::InvalidTarget(
                "no audience is configured for this client",
            )),
        [one] => connector
            .audiences
            .iter()
            .find(|a| a == one)
            .map(String::as_str)
            .ok_or(TokenError::InvalidTarget(
                "the requested audience is not allowed for this client",
            )),
        _ => Err(TokenError::InvalidTarget("only one audience may be requested")),
    }
}

fn retry_after(error: &IssueError) -> Duration {
    match error {
        IssueError::Sign(SignError::Unavailable {
            retry_after: Some(after),
            ..
        }) => (*after).max(DEFAULT_RETRY_AFTER),
        IssueError::KeyRetiring { remaining_secs } => Duration::from_secs((*remaining_secs).max(1)),
        _ => DEFAULT_RETRY_AFTER,
    }
}

fn unavailable_reason(error: &IssueError) -> &'static str {
    match error {
        IssueError::Sign(SignError::Unavailable { .. }) => "signer_unavailable",
        IssueError::Sign(_) => "signer_refused",
        IssueError::NoActiveKey => "no_active_key",
        IssueError::KeyRetiring { .. } => "key_retiring",
        IssueError::SignTimedOut(_) => "signer_timeout",
        _ => "issue_failed",
    }
}
