//! Finding the token endpoint through the issuer's discovery document (OpenID
//! Connect Discovery, else RFC 8414), with the workspace's fetch policy.

use oidc_core::http;
use reqwest::Url;
use serde_json::Value;

use super::{parse_url, MAX_RESPONSE_BYTES};
use crate::error::{DiscoveryError, DiscoveryProblem, TransportError};
use crate::Error;

/// The token endpoint of `issuer`, from its discovery document.
pub(super) async fn token_endpoint(
    client: &reqwest::Client,
    issuer: &str,
    issuer_url: &Url,
    allow_plain_http: bool,
) -> Result<Url, Error> {
    let candidates = discovery_urls(issuer_url);
    let discovered = http::fetch_discovery(client, issuer, &candidates, MAX_RESPONSE_BYTES)
        .await
        .map_err(discovery_error)?;
    endpoint_of(issuer, &discovered, allow_plain_http)
}

/// The token endpoint in the body of a `200 OK` discovery answer from `url`:
/// what [`token_endpoint`] does with the document it fetched, without the
/// network (the fuzz targets call it; only the fuzz build has it).
#[cfg(fuzzing)]
pub(crate) fn token_endpoint_in(
    issuer: &str,
    url: &Url,
    body: &[u8],
    allow_plain_http: bool,
) -> Result<Url, Error> {
    let discovered = http::discovery_document(issuer, url, body).map_err(discovery_error)?;
    endpoint_of(issuer, &discovered, allow_plain_http)
}

fn discovery_error(e: http::DiscoveryError) -> Error {
    let url = e.url;
    match e.problem {
        http::DiscoveryProblem::Request(failure) => TransportError::failed(&url, failure).into(),
        http::DiscoveryProblem::TooLarge(limit) => TransportError::too_large(&url, limit).into(),
        http::DiscoveryProblem::Status(status) => {
            DiscoveryError::new(&url, DiscoveryProblem::Status(status)).into()
        }
        http::DiscoveryProblem::NotJson(e) => {
            DiscoveryError::new(&url, DiscoveryProblem::NotJson(e.to_string())).into()
        }
        http::DiscoveryProblem::IssuerMismatch { found, .. } => DiscoveryError::new(
            &url,
            DiscoveryProblem::IssuerMismatch {
                found: found.unwrap_or_default(),
            },
        )
        .into(),
    }
}

fn endpoint_of(issuer: &str, discovered: &http::Discovered, allow_plain_http: bool) -> Result<Url, Error> {
    let fail = |problem| Error::from(DiscoveryError::new(discovered.url.as_str(), problem));
    let Some(Value::String(endpoint)) = discovered.document.get("token_endpoint") else {
        return Err(fail(DiscoveryProblem::NoTokenEndpoint));
    };
    let token_url = parse_url("token_endpoint", endpoint, allow_plain_http)
        .map_err(|e| fail(DiscoveryProblem::BadTokenEndpoint(e.to_string())))?;
    tracing::debug!(issuer, token_endpoint = %token_url, "discovered the token endpoint");
    Ok(token_url)
}

/// The OpenID discovery URL (path appended, OIDC Discovery §4) and the RFC 8414
/// one (well-known part inserted before the path).
fn discovery_urls(issuer: &Url) -> [Url; 2] {
    let path = issuer.path().trim_end_matches('/');
    let mut openid = issuer.clone();
    openid.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut oauth = issuer.clone();
    oauth.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    for url in [&mut openid, &mut oauth] {
        url.set_query(None);
        url.set_fragment(None);
    }
    [openid, oauth]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls_follow_both_specs() {
        let [openid, oauth] = discovery_urls(&Url::parse("https://t.example").unwrap());
        assert_eq!(
            openid.as_str(),
            "https://t.example/.well-known/openid-configuration"
        );
        assert_eq!(
            oauth.as_str(),
            "https://t.example/.well-known/oauth-authorization-server"
        );
        let [openid, oauth] = discovery_urls(&Url::parse("https://t.example/tenant/a/").unwrap());
        assert_eq!(
            openid.as_str(),
            "https://t.example/tenant/a/.well-known/openid-configuration"
        );
        assert_eq!(
            oauth.as_str(),
            "https://t.example/.well-known/oauth-authorization-server/tenant/a"
        );
    }
}
