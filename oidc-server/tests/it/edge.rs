//! At the internet edge, tried as an attacker would: strangers' failures
//! never refuse a connector's correct credential; a forged first
//! `X-Forwarded-For` hop changes nothing behind trusted proxies and the
//! header is ignored without them; behind the ECS stack's load balancer a
//! client inside the VPC cannot pick its peer address either; the edge
//! settings are checked with clear errors; request text never becomes a metric
//! label and `/metrics` is not public; STS throttling is a 503, not bad
//! credentials. (That an unknown `private_key_jwt` client costs what a known
//! one does is measured where the signature check dominates: the unit tests
//! of `auth::assertion`.)

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::header::RETRY_AFTER;
use axum::http::{Method, Request};
use serde_json::json;

use crate::support::capture::{traced, Captured};
use crate::support::fixture::{now, SECRET, SECRET_CLIENT};
use crate::support::{basic, form_request, TestApp, ISSUER};

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

fn peer(n: u32) -> SocketAddr {
    SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::from(0xC633_6400 + n)),
        40_000,
    )
}

async fn with_secret(app: &TestApp, from: SocketAddr, secret: &str) -> crate::support::Answer {
    let request = form_request("/token", Some(&basic(SECRET_CLIENT, secret)), &[GRANT]);
    app.send_from(from, request).await
}

#[tokio::test]
async fn strangers_failures_never_refuse_the_connectors_correct_secret() {
    let app = TestApp::new().await;
    // 50 wrong secrets for the connector's id from one peer (the limit is 5).
    let flooder = peer(1);
    for _ in 0..50 {
        let a = with_secret(&app, flooder, "wrong").await;
        assert!(matches!(a.status, 401 | 429), "{}", a.status);
    }
    // The flooding peer is limited, whatever it presents...
    let a = with_secret(&app, flooder, SECRET).await;
    assert_eq!(a.status, 429, "{}", a.body);
    let retry: u64 = a.headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // ...the connector, elsewhere, is served.
    let a = with_secret(&app, peer(2), SECRET).await;
    assert_eq!(a.status, 200, "{}", a.body);

    // 50 wrong secrets from 50 peers (none over its own limit).
    for n in 0..50 {
        let a = with_secret(&app, peer(100 + n), "wrong").await;
        assert!(matches!(a.status, 401 | 429), "{}", a.status);
    }
    // Failures for the id beyond its limit are answered 429, from anywhere...
    let a = with_secret(&app, peer(200), "wrong").await;
    assert_eq!(a.status, 429, "{}", a.body);
    // ...and its correct secret is still served, from anywhere.
    let a = with_secret(&app, peer(201), SECRET).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = with_secret(&app, peer(100), SECRET).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// The audit events written while `f` runs (JSON lines of the `audit` target).
pub(crate) async fn audited<F: std::future::Future>(f: F) -> (F::Output, Vec<serde_json::Value>) {
    let subscriber = |captured: Captured| {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || captured.clone())
            .with_env_filter("audit=info")
            .finish()
    };
    let (output, text) = traced(subscriber, f).await;
    let events = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (output, events)
}

fn forwarded(n: u32, real: &str) -> Request<Body> {
    forwarded_as(SECRET_CLIENT, n, real)
}

fn forwarded_as(client: &str, n: u32, real: &str) -> Request<Body> {
    let mut request = form_request("/token", Some(&basic(client, "wrong")), &[GRANT]);
    request.headers_mut().insert(
        "x-forwarded-for",
        format!("203.0.113.{n}, {real}").parse().unwrap(),
    );
    request
}

#[tokio::test(flavor = "current_thread")]
async fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_peer() {
    let app = TestApp::with(|toml| {
        toml.replace("[auth]", "[http]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[auth]")
    })
    .await;
    let proxy: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let (answers, events) = audited(async {
        let mut statuses = Vec::new();
        // A rotating forged first hop does not escape the limit of the real client.
        for n in 0..8 {
            statuses.push(app.send_from(proxy, forwarded(n, "198.51.100.7")).await.status);
        }
        // Another real client behind the same proxy is its own peer (with
        // an id of its own: the first one's id is over its limit too).
        statuses.push(
            app.send_from(proxy, forwarded_as("nobody", 99, "198.51.100.8"))
                .await
                .status,
        );
        statuses
    })
    .await;
    assert_eq!(answers[..5], [401; 5], "{answers:?}");
    assert!(answers[5..8].iter().all(|s| *s == 429), "{answers:?}");
    assert_eq!(answers[8], 401, "{answers:?}");
    let peers: Vec<&str> = events.iter().map(|e| e["peer"].as_str().unwrap()).collect();
    assert_eq!(peers[..8], ["198.51.100.7"; 8], "{peers:?}");
    assert_eq!(peers[8], "198.51.100.8");
}

#[tokio::test(flavor = "current_thread")]
async fn without_trusted_proxies_forwarded_for_is_ignored() {
    let app = TestApp::new().await;
    let (answers, events) = audited(async {
        let mut statuses = Vec::new();
        for n in 0..7 {
            statuses.push(app.send(forwarded(n, &format!("198.51.100.{n}"))).await.status);
        }
        statuses
    })
    .await;
    // Every request counts against the socket's peer, whatever the header says.
    assert_eq!(answers[..5], [401; 5], "{answers:?}");
    assert!(answers[5..].iter().all(|s| *s == 429), "{answers:?}");
    assert!(events.iter().all(|e| e["peer"] == "192.0.2.1"), "{events:?}");
}

/// The `[http]` lines of the ECS stack's server configuration, as the stack
/// renders them for a VPC of `vpc_cidr`.
fn stack_http_section(vpc_cidr: &str) -> String {
    let template = include_str!("../../../deploy/cloudformation/token-service.yaml");
    assert_eq!(
        template.lines().filter(|l| l.trim() == "[http]").count(),
        1,
        "one [http] section in the template (the ECS task's)"
    );
    let section: Vec<&str> = template
        .lines()
        .skip_while(|l| l.trim() != "[http]")
        .skip(1)
        .map(str::trim)
        .take_while(|l| !l.starts_with('['))
        .collect();
    format!("[http]\n{}\n", section.join("\n")).replace("${VpcCidr}", vpc_cidr)
}

/// A token request as the stack's internal ALB delivers it: from one of its
/// nodes (`node`), with the client's `X-Forwarded-For` text and the address
/// the ALB saw appended (`written, seen`).
fn through_the_alb(secret: &str, written: Option<&str>, seen: &str) -> Request<Body> {
    let mut request = form_request("/token", Some(&basic(SECRET_CLIENT, secret)), &[GRANT]);
    let value = match written {
        Some(written) => format!("{written}, {seen}"),
        None => seen.to_owned(),
    };
    request
        .headers_mut()
        .insert("x-forwarded-for", value.parse().unwrap());
    request
}

/// A connector task inside the VPC calls the stack's load balancer, which
/// connects from an address of the same VPC and appends the task's address
/// (10.0.5.6) to what the task wrote. Whatever it writes, rotating forged
/// hops or a victim's address, it is its own peer: it hits its own limit and
/// the victim's correct logins are served.
#[tokio::test(flavor = "current_thread")]
async fn inside_the_vpc_a_forged_hop_picks_no_peer_behind_the_stacks_load_balancer() {
    let http = stack_http_section("10.0.0.0/16");
    let app = TestApp::with(|toml| toml.replace("[auth]", &format!("{http}\n[auth]"))).await;
    let node: SocketAddr = "10.0.1.10:31000".parse().unwrap();
    let (attacker, victim) = ("10.0.5.6", "10.0.7.7");
    let (answers, events) = audited(async {
        let mut statuses = Vec::new();
        for n in 0..12 {
            // Half write the victim's address, half a fresh one each time.
            let forged = if n % 2 == 0 {
                victim.to_owned()
            } else {
                format!("10.0.9.{n}")
            };
            let request = through_the_alb("wrong", Some(&forged), attacker);
            statuses.push(app.send_from(node, request).await.status);
        }
        // The victim, through the same load balancer, with its correct secret.
        let victims = app.send_from(node, through_the_alb(SECRET, None, victim)).await;
        statuses.push(victims.status);
        statuses
    })
    .await;
    assert_eq!(answers[..5], [401; 5], "{http}: {answers:?}");
    assert!(answers[5..12].iter().all(|s| *s == 429), "{http}: {answers:?}");
    assert_eq!(answers[12], 200, "{http}: the victim was throttled: {answers:?}");
    // Every refusal names the attacker as the peer (an issued token's event names none).
    let peers: Vec<&str> = events[..12].iter().map(|e| e["peer"].as_str().unwrap()).collect();
    assert_eq!(peers, [attacker; 12], "{http}: {peers:?}");
}

fn load_http(http: &str) -> Result<oidc_server::config::Config, oidc_server::config::ConfigError> {
    let (_, jwks) = crate::support::fixture::client_key(oidc_core::Algorithm::ES256);
    let toml =
        crate::support::fixture::test_config(&jwks).replace("[auth]", &format!("[http]\n{http}\n\n[auth]"));
    oidc_server::config::Config::from_toml(
        &toml,
        oidc_server::config::Origin::Environment,
        std::iter::empty(),
        &oidc_server::config::Overrides {
            issuer: Some(ISSUER.to_owned()),
            ..Default::default()
        },
    )
}

fn http_problems(http: &str) -> Vec<String> {
    match load_http(http) {
        Err(oidc_server::config::ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        other => panic!("{http}: expected problems, got {other:?}"),
    }
}

#[test]
fn edge_settings_have_defaults_and_clear_errors() {
    let config = load_http("").unwrap();
    let http = &config.http;
    assert_eq!(http.max_connections, 4096);
    assert_eq!(http.max_connections_per_peer, 256);
    assert_eq!(http.max_connection_lifetime.as_secs(), 60);
    assert!(http.trusted_proxies.is_empty());
    assert_eq!(http.trusted_proxies.hops(), None);

    let config = load_http("trusted_proxies = [\"10.0.0.0/16\"]\nproxy_hops = 1").unwrap();
    assert_eq!(config.http.trusted_proxies.hops().map(|n| n.get()), Some(1));
    assert_eq!(
        config.http.trusted_proxies.networks()[0].to_string(),
        "10.0.0.0/16"
    );

    for (http, field, says) in [
        ("proxy_hops = 1", "http.proxy_hops", "needs trusted_proxies"),
        (
            "trusted_proxies = [\"10.0.0.0/16\"]\nproxy_hops = 0",
            "http.proxy_hops",
            "between 1 and 32",
        ),
        (
            "trusted_proxies = [\"10.0.0.0/16\"]\nproxy_hops = 33",
            "http.proxy_hops",
            "between 1 and 32",
        ),
        (
            "max_connections_per_peer = 0",
            "http.max_connections_per_peer",
            "between 1 and 1000000",
        ),
        (
            "max_connection_lifetime_secs = 0",
            "http.max_connection_lifetime_secs",
            "between",
        ),
        (
            "header_read_timeout_secs = 20\nmax_connection_lifetime_secs = 10",
            "http.max_connection_lifetime_secs",
            "between http.header_read_timeout_secs (20) and 86400",
        ),
        (
            "max_connection_lifetime_secs = 86401",
            "http.max_connection_lifetime_secs",
            "86400",
        ),
    ] {
        let problems = http_problems(http);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(says)),
            "{http}: {problems:?}"
        );
    }
    // A bad network is reported once, with its index, not again as a missing one.
    let problems = http_problems("trusted_proxies = [\"10.0.0/16\"]\nproxy_hops = 1");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("http.trusted_proxies[0]: "),
        "{problems:?}"
    );
}

#[tokio::test]
async fn request_text_never_becomes_a_metric_label() {
    let app = TestApp::new().await;
    let before = app.metrics().await.body.as_str().unwrap().len();
    let mut strings = Vec::new();
    for n in 0..100 {
        let method = format!("M{n}{}", "X".repeat(2000));
        let path = format!("/p{n}-{}", "y".repeat(2000));
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&path)
            .body(Body::empty())
            .unwrap();
        let a = app.send(request).await;
        assert!(matches!(a.status, 404 | 405), "{}", a.status);
        strings.push(method);
        strings.push(path);
    }
    let metrics = app.metrics().await;
    let metrics = metrics.body.as_str().unwrap();
    assert!(
        metrics.len() < before + 4096,
        "grew by {} bytes",
        metrics.len() - before
    );
    for s in &strings {
        assert!(!metrics.contains(&s[..40]), "{}", &s[..40]);
    }
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
    assert!(metrics.contains("route=\"unmatched\""), "{metrics}");
    // And the public router has no /metrics.
    assert_eq!(app.get("/metrics").await.status, 404);
}

#[tokio::test]
async fn sts_throttling_is_unavailable_and_counts_no_failure() {
    let answers: Vec<(u16, String)> = vec![
        (400, sts_error("Throttling")),
        (400, sts_error("RequestLimitExceeded")),
        (503, sts_error("ServiceUnavailable")),
    ];
    for (status, body) in answers {
        let sts = stand_in(status, body.clone()).await;
        let app = TestApp::with(|toml| {
            format!(
                "{toml}\n[aws_iam]\nsts_endpoint = \"{sts}\"\n",
            )
            .replace(
                "[[connectors]]\nid = \"connector-secret\"",
                "[[connectors]]\nid = \"connector-aws\"\naudiences = [\"https://control-plane.test\"]\naws_principals = [\"arn:aws:iam::123456789012:role/connector\"]\n\n[[connectors]]\nid = \"connector-secret\"",
            )
        })
        .await;
        // More than the failure limit (5): none counts, so none is 429.
        for _ in 0..8 {
            let a = app
                .post_form(
                    None,
                    &[
                        GRANT,
                        ("client_id", "connector-aws"),
                        (
                            "client_assertion_type",
                            "urn:connector-identity:client-assertion-type:aws-sts-get-caller-identity",
                        ),
                        ("client_assertion", &signed_request(&sts)),
                    ],
                )
                .await;
            assert_eq!(a.status, 503, "{status} {body}: {}", a.body);
            assert_eq!(a.body["error"], "temporarily_unavailable");
            assert!(a.headers.contains_key(RETRY_AFTER));
        }
    }
}

fn sts_error(code: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>Rate exceeded</Message></Error><RequestId>0</RequestId></ErrorResponse>"
    )
}

/// A loopback STS stand-in answering every request with `status` and `body`.
async fn stand_in(status: u16, body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = axum::http::StatusCode::from_u16(status).unwrap();
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { (status, [("content-type", "text/xml")], body) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A well-formed signed `sts:GetCallerIdentity` for this issuer: the local
/// checks pass; only STS could tell the signature is made up.
fn signed_request(sts: &str) -> String {
    let date = {
        let secs = now();
        let t = oidc_core::calendar::Utc::from_unix_seconds(secs);
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        )
    };
    let host = sts.trim_start_matches("http://");
    let nonce = oidc_core::Jti::random().unwrap();
    let request = json!({
        "method": "POST",
        "body": "Action=GetCallerIdentity&Version=2011-06-15",
        "headers": {
            "host": host,
            "content-type": "application/x-www-form-urlencoded; charset=utf-8",
            "x-amz-date": date,
            "x-connector-token-issuer": ISSUER,
            "x-connector-token-nonce": nonce.as_str(),
            "authorization": format!(
                "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/{}/us-east-1/sts/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-connector-token-issuer;x-connector-token-nonce, \
                 Signature={}",
                &date[..8],
                "ab".repeat(32)
            ),
        },
    });
    oidc_core::base64url::encode(request.to_string())
}
