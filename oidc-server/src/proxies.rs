//! The proxies trusted to name a request's client (`[http] trusted_proxies`,
//! `proxy_hops`), and who the client is: the socket's address, or, behind
//! them, an `X-Forwarded-For` entry one of them wrote. No axum here: the
//! configuration holds these types, and the listener and the router's
//! `Peer` extractor read them.
//!
//! A load balancer *appends* the address it saw to whatever `X-Forwarded-For`
//! the client sent, so every entry left of the ones our proxies wrote is the
//! client's choice: trusting the first hop would let anyone rotate it to
//! escape per-peer limits, or write a victim's address to get it throttled.
//! Two ways to find the entry a proxy of ours vouched for:
//!
//! - **counting** (`[http] proxy_hops = N`): our proxies wrote exactly the
//!   `N` right-most entries, so the peer is the `N`-th from the right. Right
//!   behind a load balancer whose network also holds clients (an ALB in a
//!   VPC: a connector task calling it arrives as `..., 10.0.5.6`, an address
//!   of the VPC, and whatever it wrote left of that is still its own text).
//! - **walking** (`trusted_proxies` alone): the right-most entry that is not
//!   a trusted proxy. Right only when the trusted networks hold proxies and
//!   nothing else; a client inside them would be walked through.
//!
//! Either way the header is read only on a connection whose socket peer is a
//! trusted proxy ([`TrustedProxies`]); any other socket is the peer itself.
//!
//! Throttling counts IPv6 peers per /64 (`aggregate`): one customer
//! network is one /64, and per-address counting would hand every attacker
//! 2^64 fresh identities. Connections are counted the same way
//! ([`TrustedProxies::connection_peer`]).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

/// The key a peer is counted under: the address itself for IPv4 (an
/// IPv4-mapped IPv6 address included), its /64 for IPv6.
pub(crate) fn aggregate(ip: IpAddr) -> IpAddr {
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

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or one address).
///
/// An [`IpNet`] with three rules of its own: one address without a prefix is
/// a network of one (ipnet wants the prefix); the address is read as std
/// reads it (ipnet's parser takes `010.0.0.0/8` as decimal 10, where std
/// refuses leading zeros, which other tools read as octal); and
/// [`contains`](Self::contains) takes an IPv4-mapped IPv6 address as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

/// A CIDR that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network like 10.0.0.0/8 or 2001:db8::/32")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let error = || CidrError(text.to_owned());
        let network = match text.split_once('/') {
            None => IpNet::from(text.parse::<IpAddr>().map_err(|_| error())?),
            Some((address, _)) => {
                address.parse::<IpAddr>().map_err(|_| error())?;
                text.parse::<IpNet>().map_err(|_| error())?
            }
        };
        // Host bits are dropped: `10.9.8.7/8` is 10.0.0.0/8.
        Ok(Self(network.trunc()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Cidr {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

/// The proxies whose `X-Forwarded-For` entries are believed
/// (`[http] trusted_proxies`, none by default), and how the client is found
/// among the entries (`[http] proxy_hops`: counted, or walked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Cidr>,
    hops: Option<NonZeroUsize>,
}

/// More `X-Forwarded-For` hops than this are not read (a stranger's header
/// must not cost more than a bounded walk), nor configured as `proxy_hops`.
pub const MAX_HOPS: usize = 32;

impl TrustedProxies {
    /// Trusts `networks`, walking `X-Forwarded-For` through them: the client
    /// is the right-most entry that is not in one of them. Only for networks
    /// that hold proxies and no client (see [`counting`](Self::counting)).
    pub fn new(networks: Vec<Cidr>) -> Self {
        Self { networks, hops: None }
    }

    /// Trusts a socket peer in `networks` to be a proxy chain that appends
    /// exactly `hops` entries to `X-Forwarded-For`: the client is the
    /// `hops`-th entry from the right, whatever the addresses left of it.
    pub fn counting(networks: Vec<Cidr>, hops: NonZeroUsize) -> Self {
        Self {
            networks,
            hops: Some(hops),
        }
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// The networks.
    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }

    /// How many entries the proxies append, when counted (`proxy_hops`).
    pub fn hops(&self) -> Option<NonZeroUsize> {
        self.hops
    }

    /// Whether `ip` is in a trusted proxy network.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|network| network.contains(ip))
    }

    /// Who a connection from `socket` counts against under `[http]
    /// max_connections_per_peer`: the socket's address (per /64 for IPv6,
    /// as throttling counts), or nobody for a trusted proxy, whose
    /// connections carry every client behind it.
    pub fn connection_peer(&self, socket: IpAddr) -> Option<IpAddr> {
        (!self.trusts(socket)).then(|| aggregate(socket))
    }

    /// The client of a request that arrived from `socket`: `socket` itself
    /// unless it is a trusted proxy; then, counting, the `proxy_hops`-th
    /// `X-Forwarded-For` entry from the right (the left-most when there are
    /// fewer); walking, the right-most entry that is not a trusted proxy (the
    /// left-most when every one is). An unreadable entry, or a header with
    /// too many hops to walk, leaves the last address known to be real.
    pub fn client_of(&self, socket: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(socket) {
            return socket;
        }
        match self.hops {
            Some(hops) => counted(socket, headers, hops.get()),
            None => self.walked(socket, headers),
        }
    }

    fn walked(&self, socket: IpAddr, headers: &HeaderMap) -> IpAddr {
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
            let Some(ip) = parse_hop(hop) else {
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

/// One `X-Forwarded-For` entry: an address, or an address and port (what an
/// ALB writes with `routing.http.xff_client_port.enabled`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

/// The `hops`-th entry from the right. Only those entries are read, from the
/// right (several headers are one list, in order: RFC 9110 §5.3), so a long
/// header costs nothing and nothing the client wrote is looked at.
fn counted(socket: IpAddr, headers: &HeaderMap, hops: usize) -> IpAddr {
    let mut client = socket;
    let mut seen = 0;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for hop in value.rsplit(',') {
            let Some(ip) = parse_hop(hop) else {
                // Not what a proxy of ours writes: stop at what we have.
                return client;
            };
            client = ip;
            seen += 1;
            if seen == hops {
                return client;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
        assert_eq!(cidr("2001:db8:7::1/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(cidr("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(cidr("10.0.0.0/08"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("::/033").to_string(), "::/33");
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "::/129",
            "::/0128",
            "10.0.0.0/8/8",
            "10.0.0.0/8x",
            "10.0.0.0/033",
            "10.0.0.0/ 8",
            "10.0.0.0 /8",
            " 10.0.0.0/8",
            "10.0.0.0/8 ",
            "10.1.2.3 ",
            "010.0.0.0/8",
            "10.0.0.00/8",
            "::ffff:010.0.0.0/104",
            "[::1]/128",
            "fe80::1%eth0/64",
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
    fn counting_takes_the_entry_the_proxies_wrote() {
        let hops = |n| NonZeroUsize::new(n).unwrap();
        // An ALB in 10.0.0.0/16 in front, clients in the same VPC.
        let alb = TrustedProxies::counting(vec![cidr("10.0.0.0/16")], hops(1));
        let node = ip("10.0.1.10");
        // A client inside the VPC forging entries is still itself...
        assert_eq!(alb.client_of(node, &xff(&["10.0.7.7, 10.0.5.6"])), ip("10.0.5.6"));
        assert_eq!(
            alb.client_of(node, &xff(&["6.6.6.6", "10.0.5.6"])),
            ip("10.0.5.6")
        );
        // ...where walking the same network would have believed its text.
        let walking = TrustedProxies::new(vec![cidr("10.0.0.0/16")]);
        assert_eq!(
            walking.client_of(node, &xff(&["10.0.7.7, 10.0.5.6"])),
            ip("10.0.7.7")
        );
        // An outside client is the entry the ALB appended.
        assert_eq!(
            alb.client_of(node, &xff(&["10.0.5.6, 198.51.100.7"])),
            ip("198.51.100.7")
        );
        // Whatever the client wrote is never read: garbage, or far too many hops.
        assert_eq!(
            alb.client_of(node, &xff(&["junk, 198.51.100.7"])),
            ip("198.51.100.7")
        );
        let long = format!("{},198.51.100.7", vec!["1.1.1.1"; 10 * MAX_HOPS].join(","));
        assert_eq!(alb.client_of(node, &xff(&[&long])), ip("198.51.100.7"));
        // With the client's port (an ALB's `xff_client_port`), IPv4 and IPv6.
        assert_eq!(
            alb.client_of(node, &xff(&["10.0.7.7, 10.0.5.6:43122"])),
            ip("10.0.5.6")
        );
        assert_eq!(
            alb.client_of(node, &xff(&["[2001:db8::7]:43122"])),
            ip("2001:db8::7")
        );
        // No header (a health check): the proxy itself.
        assert_eq!(alb.client_of(node, &xff(&[])), node);
        // A socket outside the trusted networks is the client, whatever it says.
        let stranger = ip("203.0.113.5");
        assert_eq!(alb.client_of(stranger, &xff(&["198.51.100.7"])), stranger);

        // Two proxies (CloudFront, then the ALB): the second entry from the right.
        let two = TrustedProxies::counting(vec![cidr("10.0.0.0/16")], hops(2));
        assert_eq!(
            two.client_of(node, &xff(&["6.6.6.6, 198.51.100.7, 130.176.1.1"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            two.client_of(node, &xff(&["6.6.6.6, 198.51.100.7", "130.176.1.1"])),
            ip("198.51.100.7")
        );
        // Fewer entries than hops: the left-most.
        assert_eq!(two.client_of(node, &xff(&["198.51.100.7"])), ip("198.51.100.7"));
        // Garbage where a proxy's entry should be: the last real one.
        assert_eq!(
            two.client_of(node, &xff(&["junk, 130.176.1.1"])),
            ip("130.176.1.1")
        );
    }

    #[test]
    fn trusted_proxies_are_not_counted_as_one_connection_peer() {
        let trusted = TrustedProxies::new(vec![cidr("10.0.0.0/16")]);
        assert_eq!(trusted.connection_peer(ip("10.0.1.10")), None);
        assert_eq!(
            trusted.connection_peer(ip("198.51.100.7")),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            trusted.connection_peer(ip("2001:db8:1:2:aaaa::1")),
            Some(ip("2001:db8:1:2::"))
        );
        assert_eq!(
            TrustedProxies::default().connection_peer(ip("10.0.1.10")),
            Some(ip("10.0.1.10"))
        );
    }
}
