//! The README's run command: with no arguments the server serves the embedded
//! default on 127.0.0.1:8080, and the curl command it prints gets a token.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the server when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn embedded_default_serves_and_its_curl_command_gets_a_token() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oidc-server"))
        .env_remove("OIDC_SERVER_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);

    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let curl = loop {
        assert!(Instant::now() < deadline, "no curl command printed");
        let line = lines
            .next()
            .expect("server exited before printing a curl command")
            .unwrap();
        if line.trim_start().starts_with("curl ") {
            break line.trim().to_owned();
        }
    };
    assert!(curl.contains("http://127.0.0.1:8080/token"), "{curl}");
    assert!(
        !curl.contains(include_str!("../../../keys-example/demo-connector.secret").trim()),
        "the secret itself must not be printed"
    );

    let output = Command::new("sh").arg("-c").arg(&curl).output().unwrap();
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    let token = body["access_token"].as_str().unwrap();

    // The token verifies against the running server's JWKS with the CLI.
    let verify = Command::new(env!("CARGO_BIN_EXE_oidc-server"))
        .args([
            "verify",
            "--issuer",
            "http://127.0.0.1:8080",
            "--audience",
            "http://127.0.0.1:9090",
        ])
        .args(["--jwks-url", "http://127.0.0.1:8080/.well-known/jwks.json", token])
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(claims["sub"], "demo-connector");
    assert_eq!(claims["org_id"], "org-demo");

    // Metrics are on their own listener (127.0.0.1:9100 in the embedded
    // default), not on the public one.
    let get = |url: &str| {
        let output = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(get("http://127.0.0.1:8080/metrics"), "404");
    assert_eq!(get("http://127.0.0.1:9100/metrics"), "200");
    let metrics = Command::new("curl")
        .args(["-s", "http://127.0.0.1:9100/metrics"])
        .output()
        .unwrap();
    let metrics = String::from_utf8(metrics.stdout).unwrap();
    assert!(metrics.contains("oidc_server_tokens_issued_total 1"), "{metrics}");
}
