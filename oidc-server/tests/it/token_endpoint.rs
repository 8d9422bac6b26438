//! The token-endpoint items of the security catalog, one test each, and the
//! shape of a successful response: the router driven without a socket.

use axum::body::Body;
use axum::http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::Request;
use base64::Engine;

use crate::support::fixture::{AUDIENCE, JWT_BEARER, OTHER_AUDIENCE, SECRET, SECRET_CLIENT};
use crate::support::{basic, form_request, Answer, TestApp};

fn assert_error(answer: &Answer, status: u16, error: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["error"], error, "{}", answer.body);
    assert_eq!(answer.headers[CACHE_CONTROL], "no-store");
}

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

#[tokio::test]
async fn success_has_the_rfc_6749_shape() {
    let app = TestApp::new().await;
    let a = app.post_form(Some(&basic(SECRET_CLIENT, SECRET)), &[GRANT]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers[CONTENT_TYPE], "application/json");
    assert_eq!(a.headers[CACHE_CONTROL], "no-store");
    assert_eq!(a.headers["pragma"], "no-cache");
    assert_eq!(a.body["token_type"], "Bearer");
    assert_eq!(a.body["expires_in"], 300);
    assert_eq!(a.body["scope"], "actions:read");
    assert!(a.body["access_token"].as_str().unwrap().split('.').count() == 3);

    // client_secret_post, with scope and audience.
    let a = app
        .post_form(
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
    let a = app
        .post_form(
            Some(&basic(SECRET_CLIENT, SECRET)),
            &[GRANT, ("resource", AUDIENCE)],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn unknown_client_and_wrong_secret_are_indistinguishable() {
    let app = TestApp::new().await;
    let wrong = app
        .post_form(Some(&basic(SECRET_CLIENT, "not-the-secret")), &[GRANT])
        .await;
    let unknown = app
        .post_form(Some(&basic("no-such-connector", SECRET)), &[GRANT])
        .await;
    assert_error(&wrong, 401, "invalid_client");
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.headers[WWW_AUTHENTICATE], unknown.headers[WWW_AUTHENTICATE]);
    assert!(wrong.headers[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    // Same through client_secret_post.
    let wrong = app
        .post_form(
            None,
            &[GRANT, ("client_id", SECRET_CLIENT), ("client_secret", "x")],
        )
        .await;
    let unknown = app
        .post_form(None, &[GRANT, ("client_id", "nobody"), ("client_secret", "x")])
        .await;
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
}

#[tokio::test]
async fn malformed_basic_header_is_401_never_500() {
    let app = TestApp::new().await;
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
        let a = app.post_form(Some(&value), &[GRANT]).await;
        assert_error(&a, 401, "invalid_client");
    }
}

#[tokio::test]
async fn two_authentication_methods_are_refused() {
    let app = TestApp::new().await;
    let a = app
        .post_form(
            Some(&basic(SECRET_CLIENT, SECRET)),
            &[GRANT, ("client_id", SECRET_CLIENT), ("client_secret", SECRET)],
        )
        .await;
    assert_error(&a, 400, "invalid_request");
    let a = app
        .post_form(
            None,
            &[
                GRANT,
                ("client_id", SECRET_CLIENT),
                ("client_secret", SECRET),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", "a.b.c"),
            ],
        )
        .await;
    assert_error(&a, 400, "invalid_request");
}

#[tokio::test]
async fn credentials_in_the_query_string_are_refused() {
    let app = TestApp::new().await;
    let uri = format!("/token?client_id={SECRET_CLIENT}&client_secret={SECRET}");
    let a = app.send(form_request(&uri, None, &[GRANT])).await;
    assert_error(&a, 400, "invalid_request");
}

#[tokio::test]
async fn get_is_405() {
    let app = TestApp::new().await;
    let a = app.get("/token").await;
    assert_eq!(a.status, 405);
    assert_eq!(a.headers[ALLOW], "POST");
}

#[tokio::test]
async fn missing_duplicated_and_unknown_grant_types() {
    let app = TestApp::new().await;
    let auth = basic(SECRET_CLIENT, SECRET);
    assert_error(
        &app.post_form(Some(&auth), &[("scope", "actions:read")]).await,
        400,
        "invalid_request",
    );
    assert_error(
        &app.post_form(Some(&auth), &[GRANT, GRANT]).await,
        400,
        "invalid_request",
    );
    assert_error(
        &app.post_form(Some(&auth), &[("grant_type", "password")]).await,
        400,
        "unsupported_grant_type",
    );
    assert_error(
        &app.post_form(Some(&auth), &[("grant_type", "CLIENT_CREDENTIALS")])
            .await,
        400,
        "unsupported_grant_type",
    );
}

#[tokio::test]
async fn non_form_content_type_is_415() {
    let app = TestApp::new().await;
    let json = r#"{"grant_type":"client_credentials"}"#;
    let request = Request::post("/token")
        .header("authorization", basic(SECRET_CLIENT, SECRET))
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, json.len())
        .body(Body::from(json))
        .unwrap();
    assert_error(&app.send(request).await, 415, "invalid_request");
    let form = "grant_type=client_credentials";
    let request = Request::post("/token")
        .header("authorization", basic(SECRET_CLIENT, SECRET))
        .header(CONTENT_LENGTH, form.len())
        .body(Body::from(form))
        .unwrap();
    assert_error(&app.send(request).await, 415, "invalid_request");
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = TestApp::new().await;
    let padding = "x".repeat(64 * 1024);
    let a = app
        .post_form(
            Some(&basic(SECRET_CLIENT, SECRET)),
            &[GRANT, ("padding", &padding)],
        )
        .await;
    assert_error(&a, 413, "invalid_request");
    // Without a Content-Length (a streamed body), the limit still holds.
    let stream = futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 1024])));
    let request = Request::post("/token")
        .header("authorization", basic(SECRET_CLIENT, SECRET))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from_stream(stream))
        .unwrap();
    assert_error(&app.send(request).await, 413, "invalid_request");
}

#[tokio::test]
async fn scope_not_allowed_is_invalid_scope() {
    let app = TestApp::new().await;
    let a = app
        .post_form(
            Some(&basic(SECRET_CLIENT, SECRET)),
            &[GRANT, ("scope", "actions:read admin")],
        )
        .await;
    assert_error(&a, 400, "invalid_scope");
}

#[tokio::test]
async fn audience_not_allowed_is_invalid_target() {
    let app = TestApp::new().await;
    let auth = basic(SECRET_CLIENT, SECRET);
    let a = app
        .post_form(Some(&auth), &[GRANT, ("audience", "https://evil.test")])
        .await;
    assert_error(&a, 400, "invalid_target");
    let a = app
        .post_form(Some(&auth), &[GRANT, ("resource", "https://evil.test")])
        .await;
    assert_error(&a, 400, "invalid_target");
    let a = app
        .post_form(
            Some(&auth),
            &[GRANT, ("audience", AUDIENCE), ("audience", OTHER_AUDIENCE)],
        )
        .await;
    assert_error(&a, 400, "invalid_target");
    let a = app
        .post_form(
            Some(&auth),
            &[GRANT, ("audience", AUDIENCE), ("resource", AUDIENCE)],
        )
        .await;
    assert_error(&a, 400, "invalid_request");
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_retry_after() {
    let app = TestApp::new().await;
    // test_config allows 5 failures per minute.
    for _ in 0..5 {
        let a = app
            .post_form(Some(&basic(SECRET_CLIENT, "wrong")), &[GRANT])
            .await;
        assert_error(&a, 401, "invalid_client");
    }
    let a = app.post_form(Some(&basic(SECRET_CLIENT, SECRET)), &[GRANT]).await;
    assert_eq!(a.status, 429, "{}", a.body);
    let retry: u64 = a.headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // The peer is throttled too: another client from the same address waits as well.
    let a = app.post_form(Some(&basic("nobody", "x")), &[GRANT]).await;
    assert_eq!(a.status, 429);
}

#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let app = TestApp::new().await;
    let _ = app
        .post_form(Some(&basic(SECRET_CLIENT, "wrong")), &[GRANT])
        .await;
    let _ = app.post_form(Some(&basic(SECRET_CLIENT, SECRET)), &[GRANT]).await;
    let metrics = app.metrics().await;
    let metrics = metrics.body.as_str().unwrap();
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

/// Every way a request's form or client credential is unreadable, with the
/// exact answer (status, body, `WWW-Authenticate`) and the refusal reason
/// it is counted under: the form reader and client authentication report
/// their own errors, and the token route alone turns them into these.
#[tokio::test]
async fn unreadable_credentials_keep_their_exact_rfc_6749_answers() {
    const AWS_IAM: &str = "urn:connector-identity:client-assertion-type:aws-sts-get-caller-identity";
    let app = TestApp::new().await;
    let secret = basic(SECRET_CLIENT, SECRET);
    // Authorization headers, form, status, error, error_description.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], u16, &'a str, &'a str);
    let cases: [Case; 12] = [
        (
            &[&secret, &secret],
            &[GRANT],
            400,
            "invalid_request",
            "more than one Authorization header",
        ),
        (
            &[&secret],
            &[GRANT, ("client_id", SECRET_CLIENT), ("client_id", SECRET_CLIENT)],
            400,
            "invalid_request",
            "a request parameter appears more than once",
        ),
        (
            &[],
            &[GRANT, GRANT],
            400,
            "invalid_request",
            "a request parameter appears more than once",
        ),
        (
            &[&secret],
            &[GRANT, ("client_secret", SECRET)],
            400,
            "invalid_request",
            "more than one client authentication method",
        ),
        (
            &["Bearer abc"],
            &[GRANT],
            401,
            "invalid_client",
            "client authentication failed",
        ),
        (
            &[&secret],
            &[GRANT, ("client_id", "someone-else")],
            400,
            "invalid_request",
            "client_id does not match the Authorization header",
        ),
        (
            &[],
            &[GRANT, ("client_secret", SECRET)],
            400,
            "invalid_request",
            "client_secret without client_id",
        ),
        (
            &[],
            &[GRANT, ("client_assertion_type", JWT_BEARER)],
            400,
            "invalid_request",
            "client_assertion is missing",
        ),
        (
            &[],
            &[GRANT, ("client_assertion_type", AWS_IAM)],
            400,
            "invalid_request",
            "client_assertion is missing",
        ),
        (
            &[],
            &[
                GRANT,
                ("client_assertion_type", AWS_IAM),
                ("client_assertion", "x"),
            ],
            400,
            "invalid_request",
            "client_id is required with the AWS IAM assertion type",
        ),
        (
            &[],
            &[
                GRANT,
                ("client_assertion_type", "urn:other"),
                ("client_assertion", "x"),
            ],
            400,
            "invalid_request",
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        (
            &[],
            &[GRANT, ("client_id", SECRET_CLIENT)],
            401,
            "invalid_client",
            "client authentication failed",
        ),
    ];
    for (authorization, form, status, error, description) in cases {
        let mut request = crate::support::form_request("/token", None, form);
        for value in authorization {
            request
                .headers_mut()
                .append(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        }
        let a = app.send(request).await;
        let case = format!("{authorization:?} {form:?}");
        assert_eq!(a.status, status, "{case}: {}", a.body);
        assert_eq!(
            a.body,
            serde_json::json!({"error": error, "error_description": description}),
            "{case}"
        );
        assert_eq!(a.headers[CACHE_CONTROL], "no-store", "{case}");
        assert_eq!(a.headers["pragma"], "no-cache", "{case}");
        match status {
            401 => assert_eq!(
                a.headers[WWW_AUTHENTICATE], "Basic realm=\"token\", charset=\"UTF-8\"",
                "{case}"
            ),
            _ => assert!(!a.headers.contains_key(WWW_AUTHENTICATE), "{case}"),
        }
        assert!(!a.headers.contains_key(RETRY_AFTER), "{case}");
    }
    // Counted under the RFC 6749 code, as before authentication.
    let metrics = app.metrics().await;
    let metrics = metrics.body.as_str().unwrap();
    assert!(
        metrics.contains(r#"oidc_server_tokens_refused_total{reason="invalid_request"} 10"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"oidc_server_tokens_refused_total{reason="invalid_client"} 2"#),
        "{metrics}"
    );
}
