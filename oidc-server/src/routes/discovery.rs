//! Discovery and JWKS documents.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// `GET /.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`.
pub(crate) async fn configuration(State(state): State<AppState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        state.discovery.clone(),
    )
        .into_response()
}

/// `GET /.well-known/jwks.json`: next, active and retiring public keys, with a
/// `max-age` below the pre-publication window and a strong `ETag`.
pub(crate) async fn jwks(State(state): State<AppState>, request_headers: HeaderMap) -> Response {
    let keys = state.issuer.keys().current();
    let etag = HeaderValue::from_str(keys.etag()).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    // A shared key set's state is as old as its last read: verifiers may
    // cache it only for what is left of the max-age from then.
    let cache_control = HeaderValue::from_str(&format!(
        "public, max-age={}",
        keys.jwks_max_age(state.config.http.jwks_max_age).as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("no-cache"));
    let not_modified = request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == keys.etag()
        });
    if not_modified {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache_control)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache_control),
        ],
        keys.jwks_json().to_string(),
    )
        .into_response()
}
