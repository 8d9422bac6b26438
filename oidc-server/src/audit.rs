//! The audit log: one event per issued or refused token request, on the
//! `audit` tracing target. Events name the connector, the token id, audience,
//! key and expiry, or the refusal reason; never a token or a secret.

use std::net::IpAddr;

use oidc_core::IssuedToken;

/// A token was issued.
pub fn issued(connector: &str, method: &str, audience: &str, scope: Option<&str>, token: &IssuedToken) {
    tracing::info!(
        target: "audit",
        event = "token_issued",
        connector,
        auth_method = method,
        jti = %token.jti,
        aud = audience,
        scope = scope.unwrap_or(""),
        kid = %token.kid,
        exp = token.expires_at,
    );
}

/// A token request was refused. `claimed_client` is what the request said,
/// shortened: it is not proven.
pub fn refused(claimed_client: Option<&str>, method: Option<&str>, reason: &str, peer: Option<IpAddr>) {
    let client = claimed_client.map(oidc_core::internal::json::excerpt);
    tracing::info!(
        target: "audit",
        event = "token_refused",
        client = client.as_deref().unwrap_or(""),
        auth_method = method.unwrap_or(""),
        reason,
        peer = peer.map(|p| p.to_string()).unwrap_or_default(),
    );
}
