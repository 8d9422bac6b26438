//! The real binary with a log output that stops taking lines (a pipe
//! nobody reads) or fails (a pipe whose reader is gone): `/healthz` says so
//! in words, token requests are answered (refused with 503 once the log
//! buffer is full, never left hanging) and no issued token loses its audit
//! line; failed writes are counted and not reported as written.

use std::io::Read;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::binary;
use crate::support::fixture::{client_key, test_config, SECRET, SECRET_CLIENT};
use oidc_core::Algorithm;

/// Long enough that only a hang reaches it: a request the server leaves
/// hanging fails the test instead of stalling it.
const HANG: Duration = Duration::from_secs(30);

/// A server process, killed if the test fails before it stops it.
struct Server {
    child: Child,
    base: String,
    metrics: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary with JSON logs, a log buffer of `buffer_kib` and
/// stderr piped to the test (which decides whether anyone reads it).
fn start(buffer_kib: usize) -> Server {
    let (_, jwks) = client_key(Algorithm::ES256);
    let metrics = format!("127.0.0.1:{}", free_port());
    let toml = format!(
        "{}\n[log]\nformat = \"json\"\nbuffer_kib = {buffer_kib}\nmax_wait_ms = 200\n\n[metrics]\nlisten = \"{metrics}\"\n",
        test_config(&jwks)
    )
    .replace("failure_limit = 5", "failure_limit = 1000000");
    let serving = binary::serve(&toml, "info");
    Server {
        child: serving.child,
        base: format!("http://{}", serving.addr),
        metrics: format!("http://{metrics}/metrics"),
    }
}

fn client() -> reqwest::Client {
    oidc_core::http::client_builder()
        .unwrap()
        .timeout(HANG)
        .build()
        .unwrap()
}

/// A token request's status, or a failure naming the hang.
async fn token(client: &reqwest::Client, server: &Server) -> u16 {
    client
        .post(format!("{}/token", server.base))
        .basic_auth(SECRET_CLIENT, Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap_or_else(|e| panic!("the token request got no answer: {e}"))
        .status()
        .as_u16()
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url} got no answer: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The value of the sample `name` (with its labels) in a Prometheus text.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
}

/// Polls `/healthz` until its answer is what `want` waits for (or the test
/// has waited a hang).
async fn healthz_until(
    client: &reqwest::Client,
    server: &Server,
    want: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + HANG;
    loop {
        let answer = get(client, &format!("{}/healthz", server.base)).await;
        if want(answer.0, &answer.1) {
            return answer;
        }
        assert!(Instant::now() < deadline, "/healthz stayed {answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_is_reported_and_requests_are_answered_without_losing_an_audit_line() {
    let mut server = start(16);
    // Nobody reads stderr: the pipe fills, then the log buffer.
    let mut stderr = server.child.stderr.take().unwrap();
    let client = client();

    let mut issued = 0;
    let mut refused = 0;
    while refused == 0 {
        let statuses = futures_util::future::join_all((0..16).map(|_| token(&client, &server))).await;
        for status in statuses {
            match status {
                200 => issued += 1,
                503 => refused += 1,
                other => panic!("status {other}"),
            }
        }
        assert!(issued < 20_000, "the log never filled up");
    }

    // Liveness says why, in words, once nothing has been written for a
    // while; the server itself still answers.
    let (status, body) = healthz_until(&client, &server, |_, body| body.contains("stalled")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("log output stalled"), "{body}");
    assert!(body.contains("token requests are refused"), "{body}");
    let (status, _) = get(&client, &format!("{}/.well-known/jwks.json", server.base)).await;
    assert_eq!(status, 200, "the JWKS is served whatever the log does");
    // A token request is answered, refused (no token without its audit line).
    let answer = client
        .post(format!("{}/token", server.base))
        .basic_auth(SECRET_CLIENT, Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    refused += 1;
    let (_, metrics) = get(&client, &server.metrics).await;
    assert!(
        sample(&metrics, "oidc_server_log_wait_timeouts_total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "oidc_server_tokens_refused_total{reason=\"log_unavailable\"}"
        ),
        f64::from(refused)
    );
    assert!(sample(&metrics, "oidc_server_log_unwritten_bytes") >= 16.0 * 1024.0);

    // Someone reads the log again: it drains, and tokens are issued again.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    healthz_until(&client, &server, |status, _| status == 200).await;
    assert_eq!(token(&client, &server).await, 200);
    issued += 1;

    // Every issued token has its audit line, once everything is written.
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(server.child.wait().unwrap().success());
    let text = reader.join().unwrap();
    let audited = text
        .lines()
        .filter(|l| l.contains(r#""target":"audit""#) && l.contains(r#""event":"token_issued""#))
        .count();
    assert_eq!(audited, issued, "issued tokens without an audit line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_log_writes_are_counted_kept_and_reported() {
    let mut server = start(1024);
    // The log's reader is gone: every write fails (EPIPE).
    drop(server.child.stderr.take());
    let client = client();
    assert_eq!(token(&client, &server).await, 200);

    let (status, body) = healthz_until(&client, &server, |status, _| status != 200).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("log output failing"), "{body}");
    assert!(body.contains("kept for retry"), "{body}");
    let (_, metrics) = get(&client, &server.metrics).await;
    assert!(
        sample(&metrics, "oidc_server_log_write_failures_total") >= 1.0,
        "{metrics}"
    );
    // Not reported as written: the audit line is still waiting.
    assert!(
        sample(&metrics, "oidc_server_log_unwritten_bytes") > 0.0,
        "{metrics}"
    );

    // Stopping is bounded even so.
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let stopping = Instant::now();
    while server.child.try_wait().unwrap().is_none() {
        assert!(stopping.elapsed() < HANG, "the server never stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
