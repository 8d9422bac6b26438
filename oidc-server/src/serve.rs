//! Serving a router on a socket, with the limits a listener facing the
//! internet needs (axum's `serve` has none of them):
//!
//! - **slow clients**: a request's headers must arrive within
//!   `[http] header_read_timeout_secs` (default 10), and an idle keep-alive
//!   connection is closed once that long passes without a complete request,
//!   so a client sending headers a byte at a time cannot hold a connection;
//! - **big headers**: a request line and header block over
//!   [`MAX_HEADER_BYTES`] is answered 431, never buffered without bound;
//! - **many connections**: at most `[http] max_connections` are served at
//!   once, and at most `[http] max_connections_per_peer` from one socket peer
//!   (an IPv4 address or an IPv6 /64) that is not a trusted proxy (a load
//!   balancer's few addresses carry every client: they are not one client);
//!   one more is answered `503` with `Retry-After` and closed, so one host
//!   cannot push everyone else to 503;
//! - **old connections**: a connection is closed once it is
//!   `[http] max_connection_lifetime_secs` old (default 60), gracefully: a
//!   request in flight is answered (with `connection: close`) first, so a
//!   client chaining slow requests on one keep-alive connection gives its
//!   place back;
//! - **shutdown**: once `shutdown` completes, no connection is accepted and
//!   the ones open finish their requests (for at most the request timeout).
//!
//! The bookkeeping happens once per connection (at accept and at close),
//! never per request.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

use crate::proxies::TrustedProxies;

/// The largest request line plus header block read (a token request needs
/// well under 2 KiB; `aws_iam` assertions travel in the body).
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// What one listener enforces.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Headers must arrive within this; also the keep-alive idle limit.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one socket peer that is not a
    /// trusted proxy.
    pub max_connections_per_peer: usize,
    /// Age at which a connection is closed after its request in flight.
    pub max_connection_lifetime: Duration,
    /// The socket peers exempt from `max_connections_per_peer` (see
    /// [`TrustedProxies::connection_peer`]).
    pub trusted_proxies: TrustedProxies,
    /// How long a connection told to close (shutdown, lifetime) may take to
    /// finish its request before it is dropped.
    pub drain: Duration,
}

const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n";

/// Serves `router` on `listener` under `limits` until `shutdown` completes.
pub(crate) async fn serve(
    router: Router,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192) * 2)
        .max_header_size(MAX_HEADER_BYTES);
    let http = Arc::new(http);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Arc::new(PeerConnections::new(limits.max_connections_per_peer));
    // Every connection watches this; `true` (or the sender gone) means stop.
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, a connection reset before
                    // accept: wait a moment instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The global place first: a peer's entry exists only while one of
        // its connections holds a place, so there are never more entries
        // than `max_connections`.
        let Some(place) = place(&permits, &peers, &limits.trusted_proxies, addr.ip()) else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = connection_service(router.clone(), addr);
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let (lifetime, drain) = (limits.max_connection_lifetime, limits.drain);
        let stopping = stopping.clone();
        tokio::spawn(async move {
            drive(connection, addr, lifetime, drain, stopping).await;
            drop(place);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection gives its place back within `drain` of the signal;
    // all places free means all connections closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let closed = tokio::time::timeout(limits.drain + Duration::from_secs(1), permits.acquire_many(all));
    if closed.await.is_err() {
        tracing::warn!("shutdown: connections still open after the drain time; closing them");
    }
    Ok(())
}

/// A connection's places: one of `max_connections`, and one of its peer's
/// (none for a trusted proxy). Dropped when the connection closes.
struct Place {
    _global: OwnedSemaphorePermit,
    _peer: Option<PeerPlace>,
}

/// A place for a connection from `ip`, or `None` when the listener or the
/// peer is at its cap.
fn place(
    permits: &Arc<Semaphore>,
    peers: &Arc<PeerConnections>,
    trusted: &TrustedProxies,
    ip: IpAddr,
) -> Option<Place> {
    let global = permits.clone().try_acquire_owned().ok()?;
    let peer = match trusted.connection_peer(ip) {
        Some(peer) => Some(PeerConnections::enter(peers, peer)?),
        None => None,
    };
    Some(Place {
        _global: global,
        _peer: peer,
    })
}

/// Serves one connection until it ends, it reaches `lifetime`, or the
/// server stops; in the last two cases it finishes the request in flight
/// (for at most `drain`) and closes.
async fn drive<C: GracefulConnection>(
    connection: C,
    addr: SocketAddr,
    lifetime: Duration,
    drain: Duration,
    mut stopping: watch::Receiver<bool>,
) where
    C::Error: std::fmt::Display,
{
    tokio::pin!(connection);
    let ended = tokio::select! {
        // The connection first: it is what wakes this task nearly every time.
        biased;
        ended = connection.as_mut() => Some(ended),
        () = tokio::time::sleep(lifetime) => None,
        _ = stopping.wait_for(|stop| *stop) => None,
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            // Idle: closed now; busy: closed once its response is written
            // (hyper adds `connection: close`).
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(drain, connection).await {
                Ok(ended) => ended,
                Err(_) => {
                    tracing::debug!(peer = %addr, "connection still busy after the drain time; dropped");
                    return;
                }
            }
        }
    };
    // Errors here are the client's (reset, timed out, malformed).
    if let Err(error) = ended {
        tracing::debug!(%error, peer = %addr, "connection ended with an error");
    }
}

/// Open connections per socket peer, for `max_connections_per_peer`. A
/// peer has an entry only while it has a connection open, so the map holds
/// at most as many entries as there are connections (bounded by
/// `max_connections`: a place is taken before an entry is made).
#[derive(Debug)]
struct PeerConnections {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of a peer; leaving (on drop) removes the peer's
/// entry once its last connection is gone.
#[derive(Debug)]
struct PeerPlace {
    peers: Arc<PeerConnections>,
    peer: IpAddr,
}

impl PeerConnections {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A place for one more connection of `peer`, or `None` at its cap.
    fn enter(peers: &Arc<Self>, peer: IpAddr) -> Option<PeerPlace> {
        // Nothing panics while the lock is held: a poisoned map is still right.
        let mut open = peers.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.get(&peer).copied().unwrap_or(0);
        if count >= peers.cap {
            return None;
        }
        open.insert(peer, count + 1);
        Some(PeerPlace {
            peers: peers.clone(),
            peer,
        })
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let std::collections::hash_map::Entry::Occupied(mut entry) = open.entry(self.peer) {
            let left = entry.get().saturating_sub(1);
            if left == 0 {
                entry.remove();
            } else {
                entry.insert(left);
            }
        }
    }
}

/// The router for one connection, every request carrying the peer's address.
fn connection_service(
    router: Router,
    addr: SocketAddr,
) -> TowerToHyperService<
    impl tower::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = impl Send,
        > + Clone,
> {
    TowerToHyperService::new(tower::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(addr));
        router.clone().oneshot(request.map(axum::body::Body::new))
    }))
}

/// Answers a connection over the cap with a 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(BUSY).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_capped_and_its_entry_leaves_with_its_last_connection() {
        let peers = Arc::new(PeerConnections::new(2));
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let b: IpAddr = "198.51.100.8".parse().unwrap();
        let first = PeerConnections::enter(&peers, a).unwrap();
        let second = PeerConnections::enter(&peers, a).unwrap();
        assert!(
            PeerConnections::enter(&peers, a).is_none(),
            "a third from the same peer"
        );
        let other = PeerConnections::enter(&peers, b).unwrap();
        assert_eq!(peers.entries(), 2);
        drop(first);
        let again = PeerConnections::enter(&peers, a).unwrap();
        drop((second, again, other));
        assert_eq!(peers.entries(), 0, "no entry outlives its peer's connections");
        // A refused peer leaves nothing behind either.
        let none = Arc::new(PeerConnections::new(0));
        assert!(PeerConnections::enter(&none, a).is_none());
        assert_eq!(none.entries(), 0);
    }

    #[test]
    fn there_are_never_more_peer_entries_than_connection_places() {
        let permits = Arc::new(Semaphore::new(100));
        let peers = Arc::new(PeerConnections::new(1));
        let trusted = TrustedProxies::default();
        let mut places = Vec::new();
        // 10,000 strangers, each from an address of its own.
        for n in 0..10_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + n));
            if let Some(place) = place(&permits, &peers, &trusted, ip) {
                places.push(place);
            }
        }
        assert_eq!(places.len(), 100);
        assert_eq!(peers.entries(), 100);
        places.clear();
        assert_eq!(peers.entries(), 0);
        assert_eq!(permits.available_permits(), 100);
        // A peer refused for its own cap gives the global place back.
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let held = place(&permits, &peers, &trusted, ip).unwrap();
        assert!(place(&permits, &peers, &trusted, ip).is_none());
        assert_eq!(permits.available_permits(), 99);
        drop(held);
    }
}
