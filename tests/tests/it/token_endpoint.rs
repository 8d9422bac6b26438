//! The token-endpoint items of the security catalog, one test each, and the
//! shape of a successful response.

use base64::Engine;
use e2e::{client_key, test_config, TestServer, AUDIENCE, OTHER_AUDIENCE, SECRET, SECRET_CLIENT};
use oidc_core::Algorithm;
use reqwest::header::{HeaderMap, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::Value;

async fn server() -> TestServer {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    TestServer::start(&test_config(&jwks)).await
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

async fn post_form(server: &TestServer, authorization: Option<&str>, form: &[(&str, &str)]) -> Answer {
    let mut request = e2e::http().post(server.token_url()).form(form);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    answer(request.send().await.unwrap()).await
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn assert_error(answer: &Answer, status: u16, error: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["error"], error, "{}", answer.body);
    assert_eq!(answer.headers[CACHE_CONTROL], "no-store");
}

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

#[tokio::test]
async fn success_has_the_rfc_6749_shape() {
    let server = server().await;
    let a = post_form(&server, Some(&basic(SECRET_CLIENT, SECRET)), &[GRANT]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers[CACHE_CONTROL], "no-store");
    assert_eq!(a.headers["pragma"], "no-cache");
    assert_eq!(a.body["token_type"], "Bearer");
    assert_eq!(a.body["expires_in"], 300);
    assert_eq!(a.body["scope"], "actions:read");
    assert!(a.body["access_token"].as_str().unwrap().split('.').count() == 3);

    // client_secret_post, with scope and audience.
    let a = post_form(
        &server,
        None,
        &[
            GRANT,
            ("client_id", SECRET_CLIENT),
            ("client_secret", SECRET),
            ("scope", "actions:write actions:read"),
            ("audience", OTHER_AUDIENCE),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["scope"], "actions:write actions:read");
    // RFC 8707 resource works the same way.
    let a = post_form(
        &server,
        Some(&basic(SECRET_CLIENT, SECRET)),
        &[GRANT, ("resource", AUDIENCE)],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn unknown_client_and_wrong_secret_are_indistinguishable() {
    let server = server().await;
    let wrong = post_form(&server, Some(&basic(SECRET_CLIENT, "not-the-secret")), &[GRANT]).await;
    let unknown = post_form(&server, Some(&basic("no-such-connector", SECRET)), &[GRANT]).await;
    assert_error(&wrong, 401, "invalid_client");
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.headers[WWW_AUTHENTICATE], unknown.headers[WWW_AUTHENTICATE]);
    assert!(wrong.headers[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    // Same through client_secret_post.
    let wrong = post_form(
        &server,
        None,
        &[GRANT, ("client_id", SECRET_CLIENT), ("client_secret", "x")],
    )
    .await;
    let unknown = post_form(
        &server,
        None,
        &[GRANT, ("client_id", "nobody"), ("client_secret", "x")],
    )
    .await;
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
}

#[tokio::test]
async fn malformed_basic_header_is_401_never_500() {
    let server = server().await;
    let malformed = [
        "Basic".to_owned(),
        "Basic !!!not-base64!!!".to_owned(),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("no-colon")
        ),
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(":")),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, b':', 0x80])
        ),
        "Bearer some-token".to_owned(),
        format!("Basic {}", "A".repeat(10_000)),
    ];
    for value in malformed {
        let a = post_form(&server, Some(&value), &[GRANT]).await;
        assert_error(&a, 401, "invalid_client");
    }
}

#[tokio::test]
async fn two_authentication_methods_are_refused() {
    let server = server().await;
    let a = post_form(
        &server,
        Some(&basic(SECRET_CLIENT, SECRET)),
        &[GRANT, ("client_id", SECRET_CLIENT), ("client_secret", SECRET)],
    )
    .await;
    assert_error(&a, 400, "invalid_request");
    let a = post_form(
        &server,
        None,
        &[
            GRANT,
            ("client_id", SECRET_CLIENT),
            ("client_secret", SECRET),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", "a.b.c"),
        ],
    )
    .await;
    assert_error(&a, 400, "invalid_request");
}

#[tokio::test]
async fn credentials_in_the_query_string_are_refused() {
    let server = server().await;
    let url = format!(
        "{}?client_id={SECRET_CLIENT}&client_secret={SECRET}",
        server.token_url()
    );
    let response = e2e::http().post(url).form(&[GRANT]).send().await.unwrap();
    assert_error(&answer(response).await, 400, "invalid_request");
}

#[tokio::test]
async fn get_is_405() {
    let server = server().await;
    let response = e2e::http().get(server.token_url()).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test]
async fn missing_duplicated_and_unknown_grant_types() {
    let server = server().await;
    let auth = basic(SECRET_CLIENT, SECRET);
    assert_error(
        &post_form(&server, Some(&auth), &[("scope", "actions:read")]).await,
        400,
        "invalid_request",
    );
    assert_error(
        &post_form(&server, Some(&auth), &[GRANT, GRANT]).await,
        400,
        "invalid_request",
    );
    assert_error(
        &post_form(&server, Some(&auth), &[("grant_type", "password")]).await,
        400,
        "unsupported_grant_type",
    );
    assert_error(
        &post_form(&server, Some(&auth), &[("grant_type", "CLIENT_CREDENTIALS")]).await,
        400,
        "unsupported_grant_type",
    );
}

#[tokio::test]
async fn non_form_content_type_is_415() {
    let server = server().await;
    let response = e2e::http()
        .post(server.token_url())
        .header("authorization", basic(SECRET_CLIENT, SECRET))
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"grant_type":"client_credentials"}"#)
        .send()
        .await
        .unwrap();
    assert_error(&answer(response).await, 415, "invalid_request");
    let response = e2e::http()
        .post(server.token_url())
        .header("authorization", basic(SECRET_CLIENT, SECRET))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_error(&answer(response).await, 415, "invalid_request");
}

#[tokio::test]
async fn oversized_body_is_413() {
    let server = server().await;
    let padding = "x".repeat(64 * 1024);
    let a = post_form(
        &server,
        Some(&basic(SECRET_CLIENT, SECRET)),
        &[GRANT, ("padding", &padding)],
    )
    .await;
    assert_error(&a, 413, "invalid_request");
    // Without a Content-Length (chunked), the limit still holds.
    let stream = futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 1024])));
    let response = e2e::http()
        .post(server.token_url())
        .header("authorization", basic(SECRET_CLIENT, SECRET))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_error(&answer(response).await, 413, "invalid_request");
}

#[tokio::test]
async fn scope_not_allowed_is_invalid_scope() {
    let server = server().await;
    let a = post_form(
        &server,
        Some(&basic(SECRET_CLIENT, SECRET)),
        &[GRANT, ("scope", "actions:read admin")],
    )
    .await;
    assert_error(&a, 400, "invalid_scope");
}

#[tokio::test]
async fn audience_not_allowed_is_invalid_target() {
    let server = server().await;
    let auth = basic(SECRET_CLIENT, SECRET);
    let a = post_form(&server, Some(&auth), &[GRANT, ("audience", "https://evil.test")]).await;
    assert_error(&a, 400, "invalid_target");
    let a = post_form(&server, Some(&auth), &[GRANT, ("resource", "https://evil.test")]).await;
    assert_error(&a, 400, "invalid_target");
    let a = post_form(
        &server,
        Some(&auth),
        &[GRANT, ("audience", AUDIENCE), ("audience", OTHER_AUDIENCE)],
    )
    .await;
    assert_error(&a, 400, "invalid_target");
    let a = post_form(
        &server,
        Some(&auth),
        &[GRANT, ("audience", AUDIENCE), ("resource", AUDIENCE)],
    )
    .await;
    assert_error(&a, 400, "invalid_request");
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_retry_after() {
    let server = server().await;
    // test_config allows 5 failures per minute.
    for _ in 0..5 {
        let a = post_form(&server, Some(&basic(SECRET_CLIENT, "wrong")), &[GRANT]).await;
        assert_error(&a, 401, "invalid_client");
    }
    let a = post_form(&server, Some(&basic(SECRET_CLIENT, SECRET)), &[GRANT]).await;
    assert_eq!(a.status, 429, "{}", a.body);
    let retry: u64 = a.headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // The peer is throttled too: another client from the same address waits as well.
    let a = post_form(&server, Some(&basic("nobody", "x")), &[GRANT]).await;
    assert_eq!(a.status, 429);
}

#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let server = server().await;
    let _ = post_form(&server, Some(&basic(SECRET_CLIENT, "wrong")), &[GRANT]).await;
    let _ = post_form(&server, Some(&basic(SECRET_CLIENT, SECRET)), &[GRANT]).await;
    let metrics = server.get_text("/metrics").await;
    assert!(metrics.contains("oidc_server_tokens_issued_total 1"), "{metrics}");
    assert!(
        metrics.contains(r#"oidc_server_tokens_refused_total{reason="bad_client_credentials"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("oidc_server_signing_duration_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oidc_server_http_request_duration_seconds"),
        "{metrics}"
    );
}
