//! BearerAuth against a small control plane: the header, one refresh and one
//! retry on 401, a second 401 returned as it is.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use connector_client::{BearerAuth, CachedTokenSource};
use reqwest_middleware::ClientWithMiddleware;

use crate::support::{serve, Fake};

/// A control plane that accepts the tokens in `accepted` and records every
/// `Authorization` header it sees.
#[derive(Clone, Default)]
struct ControlPlane {
    accepted: Arc<Mutex<HashSet<String>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl ControlPlane {
    fn accepting(tokens: &[&str]) -> Self {
        let plane = Self::default();
        plane
            .accepted
            .lock()
            .unwrap()
            .extend(tokens.iter().map(|t| t.to_string()));
        plane
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.seen.lock().unwrap().push(auth.clone());
        let token = auth.strip_prefix("Bearer ").unwrap_or_default();
        if self.accepted.lock().unwrap().contains(token) {
            Ok(())
        } else {
            Err(Box::new(
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
                )
                    .into_response(),
            ))
        }
    }
}

async fn actions(State(plane): State<ControlPlane>, headers: HeaderMap) -> Response {
    match plane.check(&headers) {
        Ok(()) => axum::Json(serde_json::json!({"connector": "c1", "actions": []})).into_response(),
        Err(refused) => *refused,
    }
}

async fn echo(State(plane): State<ControlPlane>, headers: HeaderMap, body: String) -> Response {
    match plane.check(&headers) {
        Ok(()) => body.into_response(),
        Err(refused) => *refused,
    }
}

async fn setup(plane: &ControlPlane) -> (String, ClientWithMiddleware, Fake, CachedTokenSource) {
    let addr = serve(
        Router::new()
            .route("/v1/actions", get(actions))
            .route("/v1/echo", post(echo))
            .with_state(plane.clone()),
    )
    .await;
    let fake = Fake::new(Duration::from_secs(300));
    let tokens = CachedTokenSource::new(fake.clone()).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(
        connector_client::http_client_builder().unwrap().build().unwrap(),
    )
    .with(BearerAuth::new(tokens.clone()))
    .build();
    (format!("http://{addr}"), client, fake, tokens)
}

#[tokio::test]
async fn sets_the_bearer_header() {
    let plane = ControlPlane::accepting(&["token-1"]);
    let (base, client, fake, _tokens) = setup(&plane).await;
    let response = client.get(format!("{base}/v1/actions")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(plane.seen(), ["Bearer token-1"]);
    assert_eq!(fake.fetches(), 1);
}

#[tokio::test]
async fn a_401_causes_one_refresh_and_one_retry() {
    let plane = ControlPlane::accepting(&["token-2"]);
    let (base, client, fake, _tokens) = setup(&plane).await;
    let response = client.get(format!("{base}/v1/actions")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(plane.seen(), ["Bearer token-1", "Bearer token-2"]);
    assert_eq!(fake.fetches(), 2);
    // The new token is kept for later requests.
    client.get(format!("{base}/v1/actions")).send().await.unwrap();
    assert_eq!(plane.seen().last().unwrap(), "Bearer token-2");
    assert_eq!(fake.fetches(), 2);
}

#[tokio::test]
async fn a_second_401_is_returned_to_the_caller() {
    let plane = ControlPlane::accepting(&[]);
    let (base, client, fake, _tokens) = setup(&plane).await;
    let response = client.get(format!("{base}/v1/actions")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()[reqwest::header::WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token""#
    );
    assert_eq!(plane.seen(), ["Bearer token-1", "Bearer token-2"]);
    assert_eq!(fake.fetches(), 2);
}

#[tokio::test]
async fn the_retry_carries_the_same_body() {
    let plane = ControlPlane::accepting(&["token-2"]);
    let (base, client, _fake, _tokens) = setup(&plane).await;
    let response = client
        .post(format!("{base}/v1/echo"))
        .body("result of action 7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "result of action 7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_share_one_refresh() {
    let plane = ControlPlane::accepting(&["token-2"]);
    let (base, client, fake, tokens) = setup(&plane).await;
    tokens.token().await.unwrap();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            let url = format!("{base}/v1/actions");
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(fake.fetches(), 2);
}

#[tokio::test]
async fn no_token_means_no_request() {
    let plane = ControlPlane::accepting(&["token-1"]);
    let addr = serve(
        Router::new()
            .route("/v1/actions", get(actions))
            .with_state(plane.clone()),
    )
    .await;
    let fake = Fake::failing(crate::support::outage("token endpoint down"));
    let client = reqwest_middleware::ClientBuilder::new(
        connector_client::http_client_builder().unwrap().build().unwrap(),
    )
    .with(BearerAuth::new(CachedTokenSource::new(fake).unwrap()))
    .build();
    let error = client
        .get(format!("http://{addr}/v1/actions"))
        .send()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("token endpoint down"), "{error}");
    assert!(plane.seen().is_empty());
}
