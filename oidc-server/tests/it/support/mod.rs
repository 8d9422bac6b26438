//! Drives the router without a socket, as axum's testing example does:
//! `app(state).oneshot(request)`. Every request carries a fixed peer address
//! (the `ConnectInfo` a socket would give), so per-peer throttling applies.

// Its items are `pub`, not `pub(crate)`: the e2e package compiles the same
// file (see its documentation) and re-exports them.
#[allow(unreachable_pub)]
pub(crate) mod fixture;
// Shared with the e2e package too.
pub(crate) mod binary;
#[allow(unreachable_pub)]
pub(crate) mod capture;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use oidc_core::keys::LocalSigner;
use oidc_core::Algorithm;
use oidc_server::config::Overrides;
use oidc_server::AppState;
use serde_json::Value;
use tower::ServiceExt as _;

use fixture::{client_key, test_config, StateSetup};

/// The issuer of the test state (no server listens there).
pub(crate) const ISSUER: &str = "https://tokens.test";

/// The peer every request comes from.
pub(crate) const PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    40_000,
);

/// The router over the standard test configuration.
pub(crate) struct TestApp {
    /// Its state (metrics, ...).
    pub(crate) state: AppState,
    /// The private key of [`fixture::JWT_CLIENT`].
    pub(crate) client_key: LocalSigner,
}

/// A response, its body read (JSON when it parses, else a JSON string).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl TestApp {
    /// The state of [`test_config`] with [`ISSUER`], and the key of its
    /// `private_key_jwt` connector.
    pub(crate) async fn new() -> TestApp {
        Self::with(|toml| toml).await
    }

    /// Like [`TestApp::new`], with the configuration text changed by `edit`.
    pub(crate) async fn with(edit: impl FnOnce(String) -> String) -> TestApp {
        let (client_key, jwks) = client_key(Algorithm::ES256);
        let overrides = Overrides {
            issuer: Some(ISSUER.to_owned()),
            ..Default::default()
        };
        let toml = edit(test_config(&jwks));
        let state = fixture::app_state(&toml, &overrides, StateSetup::default()).await;
        TestApp { state, client_key }
    }

    /// The token endpoint URL (an accepted assertion audience).
    pub(crate) fn token_url(&self) -> String {
        format!("{ISSUER}/token")
    }

    /// Sends `request` through a fresh copy of the router, from [`PEER`].
    pub(crate) async fn send(&self, request: Request<Body>) -> Answer {
        self.send_from(PEER, request).await
    }

    /// Sends `request` through a fresh copy of the router, from `peer`.
    pub(crate) async fn send_from(&self, peer: SocketAddr, request: Request<Body>) -> Answer {
        self.send_to(oidc_server::app(self.state.clone()), peer, request)
            .await
    }

    /// `GET /metrics` from the metrics listener's router.
    pub(crate) async fn metrics(&self) -> Answer {
        let request = Request::get("/metrics").body(Body::empty()).unwrap();
        self.send_to(oidc_server::metrics_app(self.state.clone()), PEER, request)
            .await
    }

    async fn send_to(&self, router: axum::Router, peer: SocketAddr, mut request: Request<Body>) -> Answer {
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = router
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            headers,
            body,
        }
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.send(Request::get(path).body(Body::empty()).unwrap()).await
    }

    /// `POST /token` with `form` as the body (with its `Content-Length`, as
    /// an HTTP client sends it) and an optional `Authorization` header.
    pub(crate) async fn post_form(&self, authorization: Option<&str>, form: &[(&str, &str)]) -> Answer {
        self.send(form_request("/token", authorization, form)).await
    }
}

/// `POST uri` with `form` urlencoded as the body, its `Content-Type` and
/// `Content-Length`, and an optional `Authorization` header.
pub(crate) fn form_request(uri: &str, authorization: Option<&str>, form: &[(&str, &str)]) -> Request<Body> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    request.body(Body::from(body)).unwrap()
}

/// An `Authorization: Basic` value.
pub(crate) fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}
