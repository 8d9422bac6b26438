//! The audit log of the real binary: one event per token request, none
//! dropped when requests outpace stderr (the log writer applies
//! backpressure instead), all written out when the server stops on SIGTERM;
//! a refused assertion sent without `client_id` names its `sub`.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::binary;
use crate::support::fixture::{
    assertion, client_key, good_claims, test_config, JWT_BEARER, JWT_CLIENT, SECRET, SECRET_CLIENT,
};
use oidc_core::Algorithm;

/// Kills the server if the test fails before it stops it.
struct Running(u32);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_its_audit_event_written_by_shutdown() {
    let (signer, jwks) = client_key(Algorithm::ES256);
    let toml = format!("{}\n[log]\nformat = \"json\"\n", test_config(&jwks))
        .replace("failure_limit = 5", "failure_limit = 1000000");
    let binary::Serving {
        mut child,
        addr,
        stdout: _stdout,
    } = binary::serve(&toml, "audit=info");
    let _running = Running(child.id());
    let mut stderr = child.stderr.take().unwrap();
    let url = format!("http://{addr}/token");

    let client = oidc_core::http::client_builder().unwrap().build().unwrap();
    let requests = (0..2000).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let secret = if i % 10 == 0 { "wrong" } else { SECRET };
            client
                .post(&url)
                .basic_auth(SECRET_CLIENT, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    use futures_util::StreamExt as _;
    let statuses: Vec<u16> = futures_util::stream::iter(requests)
        .buffer_unordered(64)
        .collect()
        .await;
    // An assertion without client_id, refused (its jti used twice): the
    // audit event names its sub.
    let one = assertion(&signer, "JWT", good_claims("http://127.0.0.1:1")).await;
    for _ in 0..2 {
        let _ = client
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", one.as_str()),
            ])
            .send()
            .await
            .unwrap();
    }

    let issued = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(issued + refused, 2000, "{statuses:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    let status = child.wait().unwrap();
    // Exited: nothing left to kill (its pid may be someone else's now).
    std::mem::forget(_running);
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(20));

    let events: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains(r#""target":"audit""#))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |event: &str, client_field: &str, who: &str| {
        events
            .iter()
            .filter(|e| e["event"] == event && e[client_field] == who)
            .count()
    };
    assert_eq!(count("token_issued", "connector", SECRET_CLIENT), issued);
    assert_eq!(count("token_refused", "client", SECRET_CLIENT), refused);
    assert_eq!(count("token_issued", "connector", JWT_CLIENT), 1);
    assert_eq!(
        count("token_refused", "client", JWT_CLIENT),
        1,
        "the replay names the assertion's sub"
    );
}
