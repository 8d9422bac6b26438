//! A loopback HTTP proxy in front of the emulator that injects faults the
//! emulator cannot produce (moto's disabled keys still sign, and it never
//! throttles): refused connections, hangs, KMS `ThrottlingException` and
//! `DisabledException` answers, or answers computed by the test. It counts
//! requests by `X-Amz-Target` (`TrentService.Sign`, `secretsmanager.GetSecretValue`),
//! which is how tests count KMS calls per token.
//!
//! The SDK under test is the real one, talking HTTP; only the far end changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A handler that may answer a request itself: `(target, body) -> Some((status, json))`.
pub type Responder = Arc<dyn Fn(&str, &[u8]) -> Option<(u16, String)> + Send + Sync>;

/// What the proxy does with a request.
#[derive(Clone)]
pub enum Mode {
    /// Forward it.
    Pass,
    /// Close the connection without answering.
    Refuse,
    /// Never answer.
    Hang,
    /// Answer 400 `ThrottlingException`.
    Throttle,
    /// Answer 400 `DisabledException`.
    Disabled,
    /// Answer 500 `KMSInternalException`.
    InternalError,
    /// Let the test answer (`None` forwards).
    Respond(Responder),
}

struct Rule {
    mode: Mode,
    /// Only requests whose target starts with this are affected (others pass).
    target_prefix: Option<String>,
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://ADDR`, the endpoint to give the SDK.
    pub endpoint: String,
    rule: Arc<Mutex<Rule>>,
    counts: Arc<Mutex<HashMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

/// KMS's target prefix.
pub const KMS: &str = "TrentService.";
/// Secrets Manager's target prefix.
pub const SECRETS_MANAGER: &str = "secretsmanager.";
/// DynamoDB's target prefix.
pub const DYNAMODB: &str = "DynamoDB_20120810.";

impl FaultProxy {
    /// A proxy to `upstream` (`http://127.0.0.1:PORT`), passing everything.
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let rule = Arc::new(Mutex::new(Rule {
            mode: Mode::Pass,
            target_prefix: None,
        }));
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let client = oidc_core::http::client_builder()
            .expect("TLS setup")
            .no_proxy()
            .build()
            .expect("proxy client");
        let upstream = upstream.trim_end_matches('/').to_owned();
        let (r, c) = (rule.clone(), counts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(
                    stream,
                    r.clone(),
                    c.clone(),
                    client.clone(),
                    upstream.clone(),
                ));
            }
        });
        FaultProxy {
            addr,
            endpoint: format!("http://{addr}"),
            rule,
            counts,
            task,
        }
    }

    /// Applies `mode` to every request.
    pub fn set(&self, mode: Mode) {
        *self.rule.lock().unwrap_or_else(|e| e.into_inner()) = Rule {
            mode,
            target_prefix: None,
        };
    }

    /// Applies `mode` to requests whose target starts with `prefix` ([`KMS`], [`SECRETS_MANAGER`]).
    pub fn set_for(&self, prefix: &str, mode: Mode) {
        *self.rule.lock().unwrap_or_else(|e| e.into_inner()) = Rule {
            mode,
            target_prefix: Some(prefix.to_owned()),
        };
    }

    /// Requests seen with this exact target (`TrentService.Sign`).
    pub fn count(&self, target: &str) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    /// Every count so far.
    pub fn counts(&self) -> HashMap<String, u64> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the counts.
    pub fn reset_counts(&self) {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 request (Content-Length bodies only: what the SDK sends).
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let start = head_end + 4;
    while buffer.len() < start + len {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[start..start + len].to_vec();
    buffer.drain(..start + len);
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

async fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-amzn-requestid: fault-proxy\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.is_ok() && stream.write_all(body).await.is_ok()
}

fn aws_error(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({ "__type": code, "message": message })
        .to_string()
        .into_bytes()
}

async fn serve(
    mut stream: TcpStream,
    rule: Arc<Mutex<Rule>>,
    counts: Arc<Mutex<HashMap<String, u64>>>,
    client: reqwest::Client,
    upstream: String,
) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        let target = request.header("x-amz-target").unwrap_or("").to_owned();
        *counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(target.clone())
            .or_insert(0) += 1;
        let mode = {
            let rule = rule.lock().unwrap_or_else(|e| e.into_inner());
            match &rule.target_prefix {
                Some(prefix) if !target.starts_with(prefix.as_str()) => Mode::Pass,
                _ => rule.mode.clone(),
            }
        };
        const JSON: &str = "application/x-amz-json-1.1";
        let ok = match mode {
            Mode::Refuse => return,
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Mode::Throttle => {
                respond(
                    &mut stream,
                    400,
                    JSON,
                    &aws_error("ThrottlingException", "Rate exceeded"),
                )
                .await
            }
            Mode::Disabled => {
                respond(
                    &mut stream,
                    400,
                    JSON,
                    &aws_error("DisabledException", "the key is disabled"),
                )
                .await
            }
            Mode::InternalError => {
                respond(
                    &mut stream,
                    500,
                    JSON,
                    &aws_error("KMSInternalException", "internal error"),
                )
                .await
            }
            Mode::Respond(handler) => match handler(&target, &request.body) {
                Some((status, body)) => respond(&mut stream, status, JSON, body.as_bytes()).await,
                None => forward(&mut stream, &client, &upstream, &request).await,
            },
            Mode::Pass => forward(&mut stream, &client, &upstream, &request).await,
        };
        if !ok {
            return;
        }
    }
}

async fn forward(
    stream: &mut TcpStream,
    client: &reqwest::Client,
    upstream: &str,
    request: &Request,
) -> bool {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut outgoing = client.request(method, format!("{upstream}{}", request.path));
    for (name, value) in &request.headers {
        if !["host", "content-length", "connection", "transfer-encoding"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.body(request.body.clone()).send().await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let content_type = answer
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/x-amz-json-1.1")
                .to_owned();
            let body = answer.bytes().await.unwrap_or_default();
            respond(stream, status, &content_type, &body).await
        }
        Err(_) => false,
    }
}
