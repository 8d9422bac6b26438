//! `private_key_jwt` (RFC 7523 §3): a JWT signed with one of the client's
//! registered keys, for this server, used once, short-lived.
//!
//! Signature and header checks are oidc-core's JWS layer; what is specific to
//! assertions lives here: `iss` = `sub` = the client, `aud` = this issuer (or
//! its token endpoint), a `jti` never seen before, a bounded lifetime, and a
//! `typ` that is not an access token's.

use std::sync::Arc;
use std::time::Duration;

use oidc_core::internal::json;
use oidc_core::jws::UnverifiedJws;
use serde_json::{Map, Value};

use super::AuthFailure;
use crate::config::ConnectorConfig;
use crate::connectors::Connectors;

/// Largest assertion accepted.
const MAX_ASSERTION_LEN: usize = 8 * 1024;
/// Longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

/// What an assertion must satisfy.
#[derive(Debug, Clone)]
pub struct AssertionRules {
    /// This issuer: the namespace of assertion ids in the replay store.
    pub issuer: String,
    /// Accepted audiences: the issuer and the token endpoint URL.
    pub audiences: Vec<String>,
    /// Longest lifetime (`exp - iat`, or `exp - now` without `iat`).
    pub max_lifetime: Duration,
    /// Clock leeway.
    pub leeway: Duration,
}

/// An assertion that passed every check but the replay check.
pub(super) struct Checked {
    pub(super) connector: Arc<ConnectorConfig>,
    pub(super) jti: String,
    pub(super) remember_until: u64,
}

pub(super) fn check(
    assertion: &str,
    form_client_id: Option<&str>,
    connectors: &Connectors,
    rules: &AssertionRules,
    now: u64,
) -> Result<Checked, AuthFailure> {
    let jws = UnverifiedJws::decode(assertion, MAX_ASSERTION_LEN)
        .map_err(|_| AuthFailure::Assertion("malformed_assertion"))?;
    let typ_ok = match jws.header().typ.as_deref() {
        None => true,
        Some(typ) => {
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            typ.eq_ignore_ascii_case("JWT") || typ.eq_ignore_ascii_case("client-authentication+jwt")
        }
    };
    if !typ_ok {
        return Err(AuthFailure::Assertion("assertion_wrong_typ"));
    }
    // The client is named by client_id, or else by the assertion's own `sub`;
    // either way only its registered keys can make the signature check pass.
    let client_id = match form_client_id {
        Some(id) => id.to_owned(),
        None => claimed_subject(&jws).ok_or(AuthFailure::Assertion("assertion_without_subject"))?,
    };
    let connector = connectors.get(&client_id).ok_or(AuthFailure::BadCredential)?;
    let keys = connector.jwks.as_ref().ok_or(AuthFailure::NoKeys)?;
    let key = match jws.header().kid.as_deref() {
        Some(kid) => keys.get(kid),
        None if keys.len() == 1 => keys.keys().next(),
        None => None,
    }
    .ok_or(AuthFailure::Assertion("assertion_unknown_key"))?
    .clone();
    let payload = jws
        .verify(&key)
        .map_err(|_| AuthFailure::Assertion("assertion_bad_signature"))?;
    let claims = json::parse_object(&payload).map_err(|_| AuthFailure::Assertion("malformed_assertion"))?;

    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(connector.id.as_str()) || text("sub") != Some(connector.id.as_str()) {
        return Err(AuthFailure::Assertion("assertion_wrong_subject"));
    }
    if !audience_ok(&claims, &rules.audiences) {
        return Err(AuthFailure::Assertion("assertion_wrong_audience"));
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or(AuthFailure::Assertion("assertion_without_jti"))?;
    let date = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or(AuthFailure::Assertion("malformed_assertion")),
    };
    let exp = date("exp")?.ok_or(AuthFailure::Assertion("assertion_without_exp"))?;
    let iat = date("iat")?;
    let nbf = date("nbf")?;
    let leeway = rules.leeway.as_secs();
    if now >= exp.saturating_add(leeway) {
        return Err(AuthFailure::Assertion("assertion_expired"));
    }
    if iat.is_some_and(|iat| iat > now + leeway) || nbf.is_some_and(|nbf| nbf > now + leeway) {
        return Err(AuthFailure::Assertion("assertion_not_yet_valid"));
    }
    let start = iat.unwrap_or(now).min(now);
    if exp.saturating_sub(start) > rules.max_lifetime.as_secs() {
        return Err(AuthFailure::Assertion("assertion_lifetime_too_long"));
    }
    Ok(Checked {
        connector: connector.clone(),
        jti: jti.to_owned(),
        remember_until: exp.saturating_add(leeway),
    })
}

fn audience_ok(claims: &Map<String, Value>, accepted: &[String]) -> bool {
    let matches = |a: &Value| a.as_str().is_some_and(|a| accepted.iter().any(|x| x == a));
    match claims.get("aud") {
        Some(Value::Array(many)) => !many.is_empty() && many.iter().any(matches),
        Some(one) => matches(one),
        None => false,
    }
}

/// The `sub` of an assertion that may not even be well formed, for the audit
/// log of a refusal.
pub(super) fn claimed_subject_of(assertion: &str) -> Option<String> {
    let jws = UnverifiedJws::decode(assertion, MAX_ASSERTION_LEN).ok()?;
    claimed_subject(&jws)
}

/// The `sub` of a not-yet-verified assertion, used only to pick whose keys to
/// verify it with.
fn claimed_subject(jws: &UnverifiedJws<'_>) -> Option<String> {
    let claims = json::parse_object(jws.unverified_payload()).ok()?;
    claims.get("sub")?.as_str().map(str::to_owned)
}
