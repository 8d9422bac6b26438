//! The audit log: one event per issued or refused token request, on the
//! `audit` tracing target. Events name the connector, the token id, audience,
//! key and expiry, or the refusal reason, the upstream identity of a token
//! exchange, and the peer address; never a token or a secret. docs/deploy.md ("Where the logs are") lists every field, and
//! a test holds the two together.

use std::fmt;
use std::net::IpAddr;

use oidc_core::IssuedToken;

/// The upstream identity behind a token exchange (or a federated client
/// assertion): the `[[upstream_issuers]]` entry's name (ours) and the
/// upstream token's `sub` once verified (shortened when written). Both
/// empty for other requests.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Upstream<'a> {
    /// The entry's name.
    pub(crate) upstream: Option<&'a str>,
    /// The upstream token's verified `sub`.
    pub(crate) upstream_sub: Option<&'a str>,
}

/// A token was issued to `connector`, which asked from `peer`.
pub(crate) fn issued(
    connector: &str,
    method: &str,
    audience: &str,
    scope: Option<&str>,
    token: &IssuedToken,
    upstream: Upstream<'_>,
    peer: Option<IpAddr>,
) {
    let upstream_sub = upstream.upstream_sub.map(oidc_core::text::excerpt);
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
        upstream = upstream.upstream.unwrap_or(""),
        upstream_sub = upstream_sub.as_deref().unwrap_or(""),
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
    upstream: Upstream<'_>,
    peer: Option<IpAddr>,
) {
    let client = claimed_client.map(oidc_core::text::excerpt);
    let upstream_sub = upstream.upstream_sub.map(oidc_core::text::excerpt);
    tracing::info!(
        target: "audit",
        event = "token_refused",
        client = client.as_deref().unwrap_or(""),
        auth_method = method.unwrap_or(""),
        reason,
        upstream = upstream.upstream.unwrap_or(""),
        upstream_sub = upstream_sub.as_deref().unwrap_or(""),
        peer = %PeerField(peer),
    );
}
