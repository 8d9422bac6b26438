//! `private_key_jwt` at the token endpoint: the RFC 7523 checks of the
//! security catalog, replay, wrong keys. (Concurrent replay, many requests
//! in flight on one socket, is an end-to-end test in `tests/`.)

use oidc_core::Algorithm;
use serde_json::{json, Value};

use crate::support::fixture::{assertion, client_key, good_claims, now, JWT_BEARER, SECRET_CLIENT};
use crate::support::{form_request, TestApp, ISSUER};

async fn post(app: &TestApp, assertion: &str) -> (u16, Value) {
    let answer = app
        .post_form(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion),
            ],
        )
        .await;
    (answer.status, answer.body)
}

#[tokio::test]
async fn valid_assertion_gets_a_token_for_its_client() {
    let app = TestApp::new().await;
    for typ in ["client-authentication+jwt", "JWT"] {
        let (status, body) = post(&app, &assertion(&app.client_key, typ, good_claims(ISSUER)).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
    }
    // The token endpoint URL is an accepted audience too.
    let mut claims = good_claims(ISSUER);
    claims["aud"] = json!(app.token_url());
    assert_eq!(
        post(&app, &assertion(&app.client_key, "JWT", claims).await)
            .await
            .0,
        200
    );
}

async fn refused(app: &TestApp, assertion: String) {
    let (status, body) = post(app, &assertion).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn replay_is_refused() {
    let app = TestApp::new().await;
    let jwt = assertion(&app.client_key, "JWT", good_claims(ISSUER)).await;
    assert_eq!(post(&app, &jwt).await.0, 200);
    refused(&app, jwt).await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let app = TestApp::new().await;
    let mut claims = good_claims(ISSUER);
    claims["aud"] = json!("https://somewhere-else.test");
    refused(&app, assertion(&app.client_key, "JWT", claims).await).await;
}

#[tokio::test]
async fn missing_jti_is_refused() {
    let app = TestApp::new().await;
    let mut claims = good_claims(ISSUER);
    claims.as_object_mut().unwrap().remove("jti");
    refused(&app, assertion(&app.client_key, "JWT", claims).await).await;
}

#[tokio::test]
async fn missing_exp_is_refused() {
    let app = TestApp::new().await;
    let mut claims = good_claims(ISSUER);
    claims.as_object_mut().unwrap().remove("exp");
    refused(&app, assertion(&app.client_key, "JWT", claims).await).await;
}

#[tokio::test]
async fn long_lifetime_is_refused() {
    // The default cap is an hour (what Authlib and Google's libraries send,
    // FAPI's bound); a second more is refused.
    let app = TestApp::new().await;
    let mut claims = good_claims(ISSUER);
    claims["exp"] = json!(now() + 3601);
    refused(&app, assertion(&app.client_key, "JWT", claims).await).await;
}

#[tokio::test]
async fn expired_assertion_is_refused() {
    let app = TestApp::new().await;
    let mut claims = good_claims(ISSUER);
    claims["iat"] = json!(now() - 200);
    claims["exp"] = json!(now() - 100);
    refused(&app, assertion(&app.client_key, "JWT", claims).await).await;
}

#[tokio::test]
async fn access_token_typ_is_refused_as_assertion() {
    let app = TestApp::new().await;
    refused(
        &app,
        assertion(&app.client_key, "at+jwt", good_claims(ISSUER)).await,
    )
    .await;
}

#[tokio::test]
async fn another_clients_key_is_refused() {
    let app = TestApp::new().await;
    let (stranger, _) = client_key(Algorithm::ES256);
    refused(&app, assertion(&stranger, "JWT", good_claims(ISSUER)).await).await;
}

#[tokio::test]
async fn subject_of_another_client_is_refused() {
    let app = TestApp::new().await;
    let mut claims = good_claims(ISSUER);
    claims["iss"] = json!(SECRET_CLIENT);
    claims["sub"] = json!(SECRET_CLIENT);
    refused(&app, assertion(&app.client_key, "JWT", claims).await).await;
}

#[tokio::test]
async fn tampered_assertion_is_refused() {
    let app = TestApp::new().await;
    let jwt = assertion(&app.client_key, "JWT", good_claims(ISSUER)).await;
    let (head, sig) = jwt.rsplit_once('.').unwrap();
    let mut sig = oidc_core::base64url::decode(sig).unwrap();
    sig[10] ^= 1;
    refused(&app, format!("{head}.{}", oidc_core::base64url::encode(sig))).await;
}

#[tokio::test]
async fn wrong_assertion_type_is_invalid_request() {
    let app = TestApp::new().await;
    let jwt = assertion(&app.client_key, "JWT", good_claims(ISSUER)).await;
    let request = form_request(
        "/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", jwt.as_str()),
        ],
    );
    let answer = app.send(request).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error"], "invalid_request");
}
