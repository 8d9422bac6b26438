//! The client's readers of what a token endpoint answers: a token response
//! (RFC 6749 §5.1) and an error response (§5.2), from any server, a proxy,
//! or a hostile one (`client_credentials/response.rs`, reached through
//! connector-client's `fuzzing` module).
//!
//! Input: one flag byte (bit 0: a default lifetime is configured; the rest
//! picks the error status), then the body.
//!
//! Properties: a token is handed over only when the body is a JSON object
//! whose `access_token` is that non-empty, visible-ASCII string (it goes
//! into a header as it is) and whose `token_type` is Bearer; its lifetime
//! is positive and at most `MAX_EXPIRES_IN`. An error response keeps the
//! status, and the server's `error` and `error_description` only as one
//! bounded line each.

use std::time::Duration;

use connector_client::fuzzing::{error_response, token_response};
use connector_client::MAX_EXPIRES_IN;
use serde_json::Value;

const URL: &str = "https://tokens.test/token";
const STATUSES: [u16; 8] = [400, 401, 403, 429, 500, 502, 503, 200];

pub fn run(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let default_lifetime = (flags & 1 == 1).then_some(Duration::from_secs(300));
    if let Ok(token) = token_response(URL, body, default_lifetime) {
        let secret = token.secret().as_str();
        assert!(!secret.is_empty(), "an empty access token");
        assert!(
            secret.bytes().all(|b| b.is_ascii_graphic()),
            "an access token that cannot go into a header"
        );
        let document: Value = serde_json::from_slice(body).expect("a token from a body that is not JSON");
        assert_eq!(document["access_token"].as_str(), Some(secret));
        assert!(document["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")));
        assert!(token.expires_in() > Duration::ZERO, "a token with no lifetime");
        assert!(token.expires_in() <= MAX_EXPIRES_IN, "a lifetime above the cap");
    }
    let status = STATUSES[usize::from(flags >> 1) % STATUSES.len()];
    let error = error_response(URL, status, body, Some(Duration::from_secs(u64::from(flags))))
        .expect("a valid status");
    assert_eq!(error.status(), status);
    for text in [error.oauth_error(), error.description()].into_iter().flatten() {
        assert!(
            !text.chars().any(char::is_control),
            "server text with a control character"
        );
        assert!(text.chars().count() <= 201, "server text longer than the bound");
    }
}
