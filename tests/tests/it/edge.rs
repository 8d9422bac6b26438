//! The listener against slow and greedy clients, over real sockets: headers
//! sent a byte at a time do not keep a normal request from being served and
//! are cut off by the header-read timeout; an idle keep-alive connection is
//! closed the same way; beyond the connection cap a client gets a clean 503;
//! an oversized header block is a 431, not a buffer without bound.

use std::time::{Duration, Instant};

use e2e::{client_key, test_config, TestServer};
use oidc_core::Algorithm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
