//! The client's discovery of the token endpoint: oidc-core's strict reader
//! of a discovery document (`oidc_core::http::discovery_document`, what
//! `fetch_discovery` does with each body) and the client's checks of the
//! `token_endpoint` it names (`client_credentials/discovery.rs`).
//!
//! Input: one flag byte (bit 0: plain http allowed beyond loopback), then
//! the document served at the issuer's OpenID discovery URL.
//!
//! Properties: an endpoint is found only in a strict JSON object (no
//! duplicate members) whose `issuer` is byte-equal to the expected one;
//! it is the document's `token_endpoint`, absolute, without credentials,
//! and `https` unless it is plain `http` to a loopback host (or plain
//! http was allowed).

use connector_client::fuzzing::discovery;
use oidc_core::json;
use serde_json::Value;
use url::{Host, Url};

/// The issuer looked up.
pub const ISSUER: &str = "https://tokens.test";

pub fn run(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let allow_plain_http = flags & 1 == 1;
    let Ok(url) = Url::parse("https://tokens.test/.well-known/openid-configuration") else {
        return;
    };
    let Ok(endpoint) = discovery(ISSUER, &url, body, allow_plain_http) else {
        return;
    };
    let document = json::parse_object(body).expect("an endpoint from a document that is not strict JSON");
    assert_eq!(
        document.get("issuer").and_then(Value::as_str),
        Some(ISSUER),
        "another issuer's document"
    );
    let named = document
        .get("token_endpoint")
        .and_then(Value::as_str)
        .expect("no token_endpoint");
    assert_eq!(
        Url::parse(named).ok().as_ref(),
        Some(&endpoint),
        "an endpoint the document does not name"
    );
    assert!(
        endpoint.username().is_empty() && endpoint.password().is_none(),
        "credentials in the endpoint"
    );
    match endpoint.scheme() {
        "https" => {}
        "http" if allow_plain_http => {}
        "http" => {
            let loopback = match endpoint.host() {
                Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(Host::Ipv4(ip)) => ip.is_loopback(),
                Some(Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            assert!(loopback, "plain http to {:?}", endpoint.host_str());
        }
        other => panic!("token endpoint with scheme {other:?}"),
    }
}
