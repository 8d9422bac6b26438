//! Lambda mode gives the same answers as the standalone server: recorded
//! function URL and API Gateway HTTP API events go through `lambda_http`, the
//! same requests go to the standalone router, and status, headers and bodies
//! are compared.

use std::sync::Arc;

use axum::body::Body;
use http_body_util::BodyExt;
use oidc_server::config::{Config, Origin, Overrides};
use oidc_server::{lambda, AppState};
use serde_json::Value;
use tower::ServiceExt;

use crate::support::capture::Captured;

const SECRET: &str = "lambda-test-secret-0123456789abcdefghijkl";
/// The issuer of the recorded function URL events.
pub(crate) const ISSUER: &str = "https://abc123xyz.lambda-url.us-east-1.on.aws";

async fn state() -> AppState {
    state_with_connector("").await
}

/// The state for the recorded events' issuer and client (`connector-1`),
/// with `extra` added to the connector's entry (TOML lines).
pub(crate) async fn state_with_connector(extra: &str) -> AppState {
    let digest = oidc_server::connectors::secret_digest_hex(SECRET);
    let toml = format!(
        r#"
issuer = "{ISSUER}"
[signing]
kind = "local"
generate = "ES256"
[[connectors]]
id = "connector-1"
secret_sha256 = "{digest}"
audiences = ["https://control-plane.example.com"]
{extra}
"#
    );
    let config = Arc::new(
        Config::from_toml(
            &toml,
            Origin::Environment,
            std::iter::empty(),
            &Overrides::default(),
        )
        .unwrap(),
    );
    let keys = oidc_server::keyset::key_set(&config).await.unwrap();
    AppState::builder(config, keys).build()
}

/// The recorded event `name` (under tests/fixtures/lambda).
pub(crate) fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/lambda/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The same request, sent to the standalone router.
async fn standalone(state: AppState, event: &Value) -> (u16, Vec<(String, String)>, String) {
    let mut request = http::Request::builder()
        .method(event["requestContext"]["http"]["method"].as_str().unwrap())
        .uri(event["rawPath"].as_str().unwrap());
    for (name, value) in event["headers"].as_object().unwrap() {
        request = request.header(name.as_str(), value.as_str().unwrap());
    }
    let body = match event["body"].as_str() {
        Some(b64) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
        }
        None => Vec::new(),
    };
    let response = oidc_server::app(state)
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = comparable_headers(
        response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())),
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// Headers that must match; `content-length` is the Lambda service's business.
fn comparable_headers(headers: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = headers.filter(|(k, _)| k != "content-length").collect();
    headers.sort();
    headers
}

async fn through_lambda(state: AppState, event: &str) -> (u16, Vec<(String, String)>, String) {
    let response = lambda::invoke(lambda::router(state), event).await.unwrap();
    let status = response["statusCode"].as_u64().unwrap() as u16;
    // A REST API (v1) response carries its headers in `multiValueHeaders` only.
    let single = response["headers"].as_object().into_iter().flatten();
    let multi = response["multiValueHeaders"].as_object().into_iter().flatten();
    let headers = comparable_headers(
        single
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .chain(multi.flat_map(|(k, values)| {
                values
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| (k.clone(), v.as_str().unwrap().to_owned()))
            })),
    );
    let body = response["body"].as_str().unwrap_or_default().to_owned();
    assert_eq!(response["isBase64Encoded"], false, "JSON bodies go out as text");
    (status, headers, body)
}

async fn same_answer(kind: &str, name: &str) -> (u16, String) {
    let state = state().await;
    let event = fixture(&format!("{kind}-{name}"));
    let lambda = through_lambda(state.clone(), &event).await;
    let direct = standalone(state, &serde_json::from_str(&event).unwrap()).await;
    assert_eq!(lambda.0, direct.0, "{kind}-{name}: status");
    assert_eq!(lambda.1, direct.1, "{kind}-{name}: headers");
    if name != "token" {
        assert_eq!(lambda.2, direct.2, "{kind}-{name}: body");
    } else {
        // Each token is new (jti, iat); everything else is the same.
        let (a, b): (Value, Value) = (
            serde_json::from_str(&lambda.2).unwrap(),
            serde_json::from_str(&direct.2).unwrap(),
        );
        for field in ["token_type", "expires_in"] {
            assert_eq!(a[field], b[field], "{field}");
        }
        assert_eq!(a.as_object().unwrap().len(), b.as_object().unwrap().len());
    }
    (lambda.0, lambda.2)
}

#[tokio::test]
async fn function_url_events_get_the_standalone_answers() {
    for kind in ["function-url", "apigw-v2"] {
        let (status, body) = same_answer(kind, "discovery").await;
        assert_eq!(status, 200);
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            doc["issuer"], ISSUER,
            "the issuer comes from configuration, not the Host header"
        );
        assert_eq!(doc["token_endpoint"], format!("{ISSUER}/token"));

        let (status, body) = same_answer(kind, "jwks").await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["keys"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let (status, body) = same_answer(kind, "token").await;
        assert_eq!(status, 200, "{body}");
        let token: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(token["token_type"], "Bearer");

        let (status, body) = same_answer(kind, "token-refused").await;
        assert_eq!(status, 401);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            "invalid_client"
        );
    }
}

#[tokio::test]
async fn the_event_source_ip_is_the_peer_for_throttling() {
    let state = state().await;
    let refused = fixture("function-url-token-refused");
    for _ in 0..10 {
        assert_eq!(through_lambda(state.clone(), &refused).await.0, 401);
    }
    // The default limit is 10 failures per minute per peer: the flooding
    // address is refused, whatever it presents.
    let (status, headers, _) = through_lambda(state.clone(), &fixture("function-url-token")).await;
    assert_eq!(status, 429);
    assert!(headers.iter().any(|(k, _)| k == "retry-after"));
    // The connector, from another address, is served: strangers' failures
    // for its id never refuse its correct secret.
    let elsewhere = fixture("function-url-token").replace("203.0.113.7", "198.51.100.20");
    assert_ne!(
        elsewhere,
        fixture("function-url-token"),
        "the fixture's source IP moved"
    );
    assert_eq!(through_lambda(state.clone(), &elsewhere).await.0, 200);
}

/// Checks `doc` against the Embedded Metric Format specification's required
/// fields: `_aws.Timestamp` (ms), `_aws.CloudWatchMetrics` directives with a
/// `Namespace`, `Dimensions` (sets of at most 30 names, each a root string
/// member) and `Metrics` (each `Name` a root number member, `Unit` one of
/// CloudWatch's), at most 100 metrics per directive.
fn assert_emf(doc: &Value) {
    let aws = doc["_aws"].as_object().expect("_aws");
    assert!(
        aws["Timestamp"].as_u64().unwrap() > 1_600_000_000_000,
        "milliseconds"
    );
    let directives = aws["CloudWatchMetrics"].as_array().unwrap();
    assert!(!directives.is_empty());
    for directive in directives {
        let namespace = directive["Namespace"].as_str().unwrap();
        assert!((1..=255).contains(&namespace.len()));
        for set in directive["Dimensions"].as_array().unwrap() {
            let set = set.as_array().unwrap();
            assert!(set.len() <= 30);
            for name in set {
                assert!(doc[name.as_str().unwrap()].is_string(), "dimension {name}");
            }
        }
        let metrics = directive["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for metric in metrics {
            let name = metric["Name"].as_str().unwrap();
            assert!((1..=255).contains(&name.len()));
            assert!(doc[name].is_number(), "metric {name} is a root number: {doc}");
            if let Some(unit) = metric.get("Unit") {
                assert!(["Count", "Milliseconds", "Seconds", "None"].contains(&unit.as_str().unwrap()));
            }
        }
    }
}

#[tokio::test]
async fn lambda_mode_writes_metrics_as_embedded_metric_format_lines() {
    let state = state().await;
    let lines = Captured::default();
    let emf = std::sync::Arc::new(lambda::EmfWriter::new(
        state.metrics().clone(),
        "token-fn",
        std::time::Duration::ZERO,
        Box::new(lines.clone()),
    ));
    for name in [
        "function-url-token",
        "function-url-token",
        "function-url-token-refused",
        "function-url-jwks",
    ] {
        lambda::invoke(
            lambda::router_with_metrics(state.clone(), emf.clone()),
            &fixture(name),
        )
        .await
        .unwrap();
    }
    let text = lines.text();
    let docs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // One line per invocation that changed something (the interval is zero
    // here): two tokens, one refusal; the JWKS fetch changes no count.
    assert_eq!(docs.len(), 3, "{text}");
    for doc in &docs {
        assert_emf(doc);
        assert_eq!(doc["Service"], "token-fn");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            lambda::emf::NAMESPACE
        );
    }
    assert_eq!(
        (docs[0]["TokensIssued"].as_u64(), docs[1]["TokensIssued"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(docs[2]["TokensIssued"], 0);
    assert_eq!(docs[2]["TokensRefused"], 1);
    assert_eq!(docs[2]["TokensRefused.bad_client_credentials"], 1);

    // With an interval, one line covers everything since the last one.
    let lines = Captured::default();
    let emf = std::sync::Arc::new(lambda::EmfWriter::new(
        state.metrics().clone(),
        "token-fn",
        std::time::Duration::from_secs(3600),
        Box::new(lines.clone()),
    ));
    for _ in 0..3 {
        lambda::invoke(
            lambda::router_with_metrics(state.clone(), emf.clone()),
            &fixture("function-url-token"),
        )
        .await
        .unwrap();
    }
    let text = lines.text();
    assert_eq!(text.lines().count(), 1, "at most one line per interval: {text}");
    // Its first line reports all that happened before it (the earlier runs too).
    let doc: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_emf(&doc);
    assert_eq!(doc["TokensIssued"], 3);
}

#[tokio::test]
async fn a_non_http_event_is_refused_clearly() {
    let err = lambda::invoke(lambda::router(state().await), r#"{"hello": "world"}"#)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a supported Lambda HTTP event"),
        "{err}"
    );
}

/// `fixture(name)` with `from` replaced by `to`, checking that it was there.
fn fixture_with(name: &str, from: &str, to: &str) -> String {
    let text = fixture(name);
    assert!(text.contains(from), "{name} has no {from:?}");
    text.replace(from, to)
}

/// Found in the hardening review: only function URL / HTTP API events gave
/// the router a peer; for ALB and API Gateway REST events the per-peer
/// limit did not apply. Each source's address is read now: ten failures
/// from one caller and its next request is refused, whatever it presents,
/// while another caller is served.
#[tokio::test]
async fn alb_and_rest_api_events_have_their_peer_throttled() {
    // (event kind, the field that carries the caller's address, as in the fixture)
    for (kind, address_field) in [
        ("alb", r#""x-forwarded-for": "203.0.113.7""#),
        ("apigw-rest", r#""sourceIp": "203.0.113.7""#),
    ] {
        let state = state().await;
        let refused = format!("{kind}-token-refused");
        let token = format!("{kind}-token");
        let (status, _, body) = through_lambda(state.clone(), &fixture(&token)).await;
        assert_eq!(status, 200, "{kind}: {body}");
        for n in 0..10 {
            // Behind an ALB the client may send X-Forwarded-For hops of its
            // own: they are left of the one the ALB appends, and change nothing.
            let event = match kind {
                "alb" => fixture_with(
                    &refused,
                    address_field,
                    &format!(r#""x-forwarded-for": "10.9.8.{n}, 203.0.113.7""#),
                ),
                _ => fixture(&refused),
            };
            let (status, _, body) = through_lambda(state.clone(), &event).await;
            assert_eq!(status, 401, "{kind}: {body}");
        }
        let (status, headers, body) = through_lambda(state.clone(), &fixture(&token)).await;
        assert_eq!(status, 429, "{kind}: the flooding caller is limited: {body}");
        assert!(headers.iter().any(|(k, _)| k == "retry-after"), "{kind}");
        // Another caller is served.
        let elsewhere = fixture_with(
            &token,
            address_field,
            &address_field.replace("203.0.113.7", "198.51.100.20"),
        );
        let (status, _, body) = through_lambda(state.clone(), &elsewhere).await;
        assert_eq!(status, 200, "{kind}: {body}");
    }
}

/// A token request whose event has no readable caller address is refused
/// (an ALB whose X-Forwarded-For processing was set to `remove`), not
/// served without a per-peer limit; the ALB's health checks, which carry no
/// X-Forwarded-For, are still answered.
#[tokio::test]
async fn an_event_without_a_caller_address_gets_no_token() {
    let state = state().await;
    let (status, headers, body) = through_lambda(
        state.clone(),
        &fixture_with("alb-token", r#""x-forwarded-for": "203.0.113.7","#, ""),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.iter().any(|(k, _)| k == "retry-after"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "temporarily_unavailable"
    );
    assert_eq!(state.metrics().token_counts().refused, vec![("peer_unknown", 1)]);
    let garbled = fixture_with(
        "apigw-rest-token",
        r#""sourceIp": "203.0.113.7""#,
        r#""sourceIp": "test-invoke-source-ip""#,
    );
    assert_eq!(through_lambda(state.clone(), &garbled).await.0, 503);

    let health_check = fixture_with("alb-token", r#""x-forwarded-for": "203.0.113.7","#, "")
        .replace(r#""httpMethod": "POST""#, r#""httpMethod": "GET""#)
        .replace(r#""path": "/token""#, r#""path": "/healthz""#);
    let (status, _, body) = through_lambda(state, &health_check).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}
