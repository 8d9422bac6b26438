//! Who is on the other end of a request: the socket's address, or, behind
//! proxies the operator trusts, the right-most `X-Forwarded-For` hop that is
//! not one of them.
//!
//! A load balancer *appends* the address it saw to whatever `X-Forwarded-For`
//! the client sent, so every hop left of the last trusted proxy's entry is
//! the client's choice: trusting the first hop would let anyone rotate it to
//! escape per-peer limits, or write a victim's address to get it throttled.
//! Walking from the right and stopping at the first address that is not a
//! trusted proxy yields the one address a proxy of ours vouched for.
//!
//! Throttling counts IPv6 peers per /64 ([`Peer::throttle_key`]): one
//! customer network is one /64, and per-address counting would hand every
//! attacker 2^64 fresh identities.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::state::AppState;

/// The client's address, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub Option<IpAddr>);

impl Peer {
    /// The key throttling counts this peer under: the address itself for
    /// IPv4 (an IPv4-mapped IPv6 address included), its /64 for IPv6.
    pub fn throttle_key(&self) -> Option<IpAddr> {
        self.0.map(aggregate)
    }
}

fn aggregate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
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

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A CIDR that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network like 10.0.0.0/8 or 2001:db8::/32")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let error = || CidrError(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| error())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| error())?
            }
            Some(_) => return Err(error()),
        };
        if prefix > max {
            return Err(error());
        }
        Ok(Self {
            network: mask(network, prefix),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = if prefix == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(prefix)))
            };
            IpAddr::V4(kept.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = if prefix == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(prefix)))
            };
            IpAddr::V6(kept.into())
        }
    }
}

/// The proxies whose `X-Forwarded-For` entries are believed
/// (`[http] trusted_proxies`); none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

/// More `X-Forwarded-For` hops than this are not read (a stranger's header
/// must not cost more than a bounded walk).
const MAX_HOPS: usize = 32;

impl TrustedProxies {
    /// Trusts `networks`.
    pub fn new(networks: Vec<Cidr>) -> Self {
        Self(networks)
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The networks.
    pub fn networks(&self) -> &[Cidr] {
        &self.0
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }

    /// The client of a request that arrived from `socket`: `socket` itself
    /// unless it is a trusted proxy; then the right-most `X-Forwarded-For`
    /// hop that is not a trusted proxy (or the left-most hop when every one
    /// is). An unreadable header, or one with too many hops, leaves the last
    /// address known to be real.
    pub fn client_of(&self, socket: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(socket) {
            return socket;
        }
        // Several headers are one list, in order (RFC 9110 §5.3).
        let mut hops: Vec<&str> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(value) = value.to_str() else {
                return socket;
            };
            hops.extend(value.split(','));
            if hops.len() > MAX_HOPS {
                return socket;
            }
        }
        let mut client = socket;
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // Garbage from the left of a trusted entry: stop at what we have.
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn cidrs() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("10.1.2.3").contains(ip("10.1.2.3")));
        assert!(!cidr("10.1.2.3").contains(ip("10.1.2.4")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:1::7")));
        assert!(!cidr("2001:db8::/32").contains(ip("10.0.0.1")));
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.0.0.1")));
        assert_eq!(cidr("10.9.8.7/8").to_string(), "10.0.0.0/8");
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "::/129",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::new(vec![cidr("127.0.0.1/32"), cidr("10.0.0.0/8")]);
        let proxy = ip("127.0.0.1");
        // A forged first hop is not believed.
        assert_eq!(
            trusted.client_of(proxy, &xff(&["6.6.6.6, 198.51.100.7"])),
            ip("198.51.100.7")
        );
        // Chains of trusted proxies are walked through.
        assert_eq!(
            trusted.client_of(proxy, &xff(&["6.6.6.6, 198.51.100.7, 10.1.1.1"])),
            ip("198.51.100.7")
        );
        // Several headers are one list.
        assert_eq!(
            trusted.client_of(proxy, &xff(&["6.6.6.6", "198.51.100.7"])),
            ip("198.51.100.7")
        );
        // Only trusted hops: the left-most.
        assert_eq!(
            trusted.client_of(proxy, &xff(&["10.2.2.2, 10.1.1.1"])),
            ip("10.2.2.2")
        );
        // No header: the proxy itself.
        assert_eq!(trusted.client_of(proxy, &xff(&[])), proxy);
        // Garbage left of a real hop: the real hop.
        assert_eq!(
            trusted.client_of(proxy, &xff(&["junk, 198.51.100.7"])),
            ip("198.51.100.7")
        );
        // Too many hops: not read.
        let long = vec!["1.1.1.1"; MAX_HOPS + 1].join(",");
        assert_eq!(trusted.client_of(proxy, &xff(&[&long])), proxy);
        // A peer that is not a trusted proxy is the client, whatever it says.
        let stranger = ip("203.0.113.5");
        assert_eq!(trusted.client_of(stranger, &xff(&["198.51.100.7"])), stranger);
        assert_eq!(
            TrustedProxies::default().client_of(proxy, &xff(&["198.51.100.7"])),
            proxy
        );
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
