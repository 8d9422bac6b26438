//! The [`Peer`] extractor: who is on the other end of a request, as the
//! configuration's [`TrustedProxies`](crate::proxies::TrustedProxies) say
//! (the socket's address, or the `X-Forwarded-For` entry a trusted proxy
//! wrote).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::proxies::aggregate;
use crate::state::AppState;

/// The client's address, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer(pub Option<IpAddr>);

impl Peer {
    /// The key throttling counts this peer under: the address itself for
    /// IPv4 (an IPv4-mapped IPv6 address included), its /64 for IPv6.
    pub(crate) fn throttle_key(&self) -> Option<IpAddr> {
        self.0.map(aggregate)
    }
}

impl FromRequestParts<AppState> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let socket = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Peer(socket.map(|ip| {
            state.config.http.trusted_proxies.client_of(ip, &parts.headers)
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_peers_count_per_64() {
        let a = Peer(Some(ip("2001:db8:1:2:aaaa::1")));
        let b = Peer(Some(ip("2001:db8:1:2:bbbb::9")));
        let c = Peer(Some(ip("2001:db8:1:3::1")));
        assert_eq!(a.throttle_key(), b.throttle_key());
        assert_ne!(a.throttle_key(), c.throttle_key());
        assert_eq!(
            Peer(Some(ip("::ffff:198.51.100.7"))).throttle_key(),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            Peer(Some(ip("198.51.100.7"))).throttle_key(),
            Some(ip("198.51.100.7"))
        );
    }
}
