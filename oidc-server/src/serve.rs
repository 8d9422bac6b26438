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
//!   once; one more is answered `503` with `Retry-After` and closed;
//! - **shutdown**: once `shutdown` completes, no connection is accepted and
//!   the ones open finish their requests (for at most the request timeout).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// The largest request line plus header block read (a token request needs
/// well under 2 KiB; `aws_iam` assertions travel in the body).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// What one listener enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Headers must arrive within this; also the keep-alive idle limit.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long shutdown waits for open connections.
    pub drain: Duration,
}

const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n";

/// Serves `router` on `listener` under `limits` until `shutdown` completes.
pub async fn serve(
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
    let graceful = GracefulShutdown::new();
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = connection_service(router.clone(), addr);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are the client's (reset, timed out, malformed).
            if let Err(error) = connection.await {
                tracing::debug!(%error, peer = %addr, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: connections still open after the drain time; closing them");
    }
    Ok(())
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
