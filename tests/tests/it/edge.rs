//! The listener against slow and greedy clients, over real sockets: headers
//! sent a byte at a time do not keep a normal request from being served and
//! are cut off by the header-read timeout; an idle keep-alive connection is
//! closed the same way; beyond the connection cap a client gets a clean 503;
//! one peer's connections, however many, never take another peer's place
//! (a trusted proxy's are not capped as one client's); a connection chaining
//! slow requests is closed once it reaches its lifetime, its last answer
//! whole; an oversized header block is a 431, not a buffer without bound.
//!
//! Distinct peers on one machine are distinct loopback addresses (127.0.0.x,
//! all of 127.0.0.0/8 is loopback on Linux).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use e2e::{client_key, test_config, TestServer, SECRET, SECRET_CLIENT};
use oidc_core::Algorithm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn server(http: &str) -> TestServer {
    let (_, jwks) = client_key(Algorithm::ES256);
    let toml = test_config(&jwks).replace("[auth]", &format!("[http]\n{http}\n\n[auth]"));
    TestServer::start(&toml).await
}

/// Reads until the peer closes (or `within` passes): what it sent, and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (seen, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_neither_starve_others_nor_stay() {
    let server = server("header_read_timeout_secs = 2").await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST /token HTTP/1.1\r\nhost: tokens\r\nx-slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    let dribble = tokio::spawn(async move {
        let started = Instant::now();
        let mut closed = vec![None; slow.len()];
        while started.elapsed() < Duration::from_secs(5) {
            for (i, stream) in slow.iter_mut().enumerate() {
                if closed[i].is_none() && stream.write_all(b"a").await.is_err() {
                    closed[i] = Some(started.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // A connection the server closed also reads as closed.
        for (i, stream) in slow.iter_mut().enumerate() {
            if closed[i].is_none() {
                let (_, gone) = read_until_closed(stream, Duration::from_millis(200)).await;
                if gone {
                    closed[i] = Some(started.elapsed());
                }
            }
        }
        closed
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (status, body, _) = server.request_token().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let closed = dribble.await.unwrap();
    let open = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(open, 0, "{open} of 200 slow connections still open after 5 s");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = server("header_read_timeout_secs = 1").await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: tokens\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(4)).await;
    assert!(closed, "the idle connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn beyond_the_connection_cap_a_client_gets_a_clean_503() {
    let server = server("max_connections = 4").await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(server.addr).await.unwrap();
    let (answer, closed) = read_until_closed(&mut over, Duration::from_secs(3)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(closed);
    // A freed place is served again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body, _) = server.request_token().await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn oversized_header_blocks_and_request_lines_are_refused() {
    let server = server("header_read_timeout_secs = 5").await;
    for request in [
        format!(
            "GET /healthz HTTP/1.1\r\nhost: tokens\r\nx-big: {}\r\n\r\n",
            "a".repeat(40_000)
        ),
        format!("GET /{} HTTP/1.1\r\nhost: tokens\r\n\r\n", "a".repeat(40_000)),
    ] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let _ = stream.write_all(request.as_bytes()).await;
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 414"),
            "{answer}"
        );
        assert!(closed);
    }
    assert_eq!(server.request_token().await.0, 200);
}

/// A connection to `server` from the loopback address `source`.
async fn connect_from(source: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(server).await.unwrap()
}

/// A connection from `source` that has sent the start of a request and no more.
async fn slow_from(source: [u8; 4], server: SocketAddr) -> TcpStream {
    let mut stream = connect_from(source, server).await;
    stream
        .write_all(b"POST /token HTTP/1.1\r\nhost: tokens\r\nx-slow: ")
        .await
        .unwrap();
    stream
}

/// Reads one response: its head (lower-cased) and its body (by `content-length`).
async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a whole head: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = seen[end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed in the middle of a body: {head}");
        body.extend_from_slice(&buf[..n]);
    }
    assert_eq!(body.len(), length, "{head}");
    (head, body)
}

/// A `GET /healthz` on `stream`, answered 200.
async fn healthz(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: tokens\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
}

/// At the shipped defaults (4,096 connections): one host opening that many
/// slow connections takes its own share and no more; another host's token
/// request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peers_4096_slow_connections_never_block_another_peers_token_request() {
    let server = server("").await;
    let http = server.state.config().http.clone();
    assert_eq!(http.max_connections, 4096, "the shipped default");
    let mut slow = Vec::with_capacity(http.max_connections);
    for _ in 0..http.max_connections {
        slow.push(slow_from([127, 0, 0, 2], server.addr).await);
    }
    // Connections are accepted in order: this one comes after them all.
    let (status, body, _) = server.request_token().await;
    assert_eq!(status, 200, "{body}");
    // The host got its share, held as long as it likes (within the header
    // timeout); beyond it, a clean 503.
    let (answer, closed) = read_until_closed(slow.last_mut().unwrap(), Duration::from_secs(3)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(closed);
    let (_, closed) = read_until_closed(&mut slow[0], Duration::from_millis(100)).await;
    assert!(!closed, "a connection within the host's share was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_cap_gets_a_clean_503_others_and_trusted_proxies_are_served() {
    let server =
        server("max_connections = 64\nmax_connections_per_peer = 8\ntrusted_proxies = [\"127.0.0.4/32\"]")
            .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(slow_from([127, 0, 0, 2], server.addr).await);
    }
    let mut ninth = connect_from([127, 0, 0, 2], server.addr).await;
    let (answer, closed) = read_until_closed(&mut ninth, Duration::from_secs(3)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(closed);
    // Another peer is served meanwhile.
    healthz(&mut connect_from([127, 0, 0, 3], server.addr).await).await;
    // The load balancer's address carries many clients: its connections,
    // more than a peer's cap, are all served at once.
    let mut proxy = Vec::new();
    for _ in 0..20 {
        proxy.push(connect_from([127, 0, 0, 4], server.addr).await);
    }
    for stream in &mut proxy {
        healthz(stream).await;
    }
    // The peer closes its connections: its places come back (no count outlives them).
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Vec::new();
    for _ in 0..8 {
        again.push(connect_from([127, 0, 0, 2], server.addr).await);
    }
    for stream in &mut again {
        healthz(stream).await;
    }
}

/// A client chains requests on one connection, each slow (headers, then a
/// body, a few bytes at a time): the connection is closed once it is
/// `max_connection_lifetime_secs` old, gracefully: the request in flight
/// then is answered in full, with `connection: close`.
#[tokio::test]
async fn a_connection_chaining_slow_requests_is_closed_after_its_lifetime() {
    let server = server("header_read_timeout_secs = 1\nmax_connection_lifetime_secs = 2").await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // The first request's headers over ~0.5 s.
    for chunk in b"GET /healthz HTTP/1.1\r\nhost: tokens\r\n\r\n".chunks(8) {
        stream.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    // The second one's body over ~3 s: in flight when the connection turns 2 s old.
    let body = b"grant_type=client_credentials";
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{SECRET_CLIENT}:{SECRET}"));
    let head = format!(
        "POST /token HTTP/1.1\r\nhost: tokens\r\nauthorization: Basic {credentials}\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(3) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream.write_all(chunk).await.unwrap();
    }
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(token["access_token"].is_string(), "{token}");
    let (rest, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(closed && rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}
