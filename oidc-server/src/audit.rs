//! The audit log: one event per issued or refused token request, on the
//! `audit` tracing target. Events name the connector, the token id, audience,
//! key and expiry, or the refusal reason, and the peer address; never a token
//! or a secret. docs/deploy.md ("Where the logs are") lists every field, and
//! a test holds the two together.

use std::fmt;
use std::net::IpAddr;

use oidc_core::IssuedToken;

/// A token was issued to `connector`, which asked from `peer`.
pub(crate) fn issued(
    connector: &str,
    method: &str,
    audience: &str,
    scope: Option<&str>,
    token: &IssuedToken,
    peer: Option<IpAddr>,
) {
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
        peer = %PeerField(peer),
    );
}

/// The peer address as an audit field: the address, or empty when unknown
/// (written as it is formatted: no `String` per event).
struct PeerField(Option<IpAddr>);

impl fmt::Display for PeerField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(peer) => peer.fmt(f),
            None => Ok(()),
        }
    }
}

/// A token request was refused. `claimed_client` is what the request said,
/// shortened: it is not proven.
pub(crate) fn refused(
    claimed_client: Option<&str>,
    method: Option<&str>,
    reason: &str,
    peer: Option<IpAddr>,
) {
    let client = claimed_client.map(oidc_core::text::excerpt);
    tracing::info!(
        target: "audit",
        event = "token_refused",
        client = client.as_deref().unwrap_or(""),
        auth_method = method.unwrap_or(""),
        reason,
        peer = %PeerField(peer),
    );
}
