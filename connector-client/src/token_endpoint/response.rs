//! Reading what a token endpoint answers: a token response (RFC 6749 §5.1)
//! or an error response (§5.2), from a server that may be any RFC 6749
//! implementation, a proxy, or hostile.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Map, Value};

use super::{Expect, MAX_EXPIRES_IN};
use crate::error::{EndpointError, InvalidResponse, ResponseProblem};
use crate::{AccessToken, Error};

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not an object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A token response as RFC 6749 §5.1 describes it, with no further rule
/// (what the fuzz targets read).
#[cfg(any(test, fuzzing))]
pub(crate) fn parse_token_response(
    url: &str,
    body: &[u8],
    default_lifetime: Option<Duration>,
) -> Result<AccessToken, Error> {
    let expect = Expect {
        default_lifetime,
        ..Expect::default()
    };
    parse_token_response_with(url, body, expect)
}

/// A token response that must also meet `expect` (RFC 8693 §2.2.1's
/// `issued_token_type`, for a token exchange).
pub(crate) fn parse_token_response_with(
    url: &str,
    body: &[u8],
    expect: Expect,
) -> Result<AccessToken, Error> {
    let default_lifetime = expect.default_lifetime;
    let fail = |problem| Error::from(InvalidResponse::new(url, problem));
    let document = parse_object(body).map_err(|e| fail(ResponseProblem::NotJson(e)))?;
    if let Some(expected) = expect.issued_token_type {
        match document.get("issued_token_type") {
            Some(Value::String(issued)) if issued == expected => {}
            Some(Value::String(issued)) => {
                return Err(fail(ResponseProblem::IssuedTokenType {
                    found: issued.clone(),
                    expected,
                }))
            }
            _ => return Err(fail(ResponseProblem::Member("issued_token_type"))),
        }
    }
    let Some(Value::String(access_token)) = document.get("access_token") else {
        return Err(fail(ResponseProblem::Member("access_token")));
    };
    // It goes into an HTTP header as it is: visible ASCII only (RFC 6750 §2.1's b64token is narrower still).
    if access_token.is_empty() || !access_token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(fail(ResponseProblem::AccessToken));
    }
    // RFC 6749 §5.1: token_type is case-insensitive.
    match (document.get("token_type"), expect.dpop) {
        (Some(Value::String(kind)), false) if kind.eq_ignore_ascii_case("bearer") => {}
        (Some(Value::String(kind)), true) if kind.eq_ignore_ascii_case("dpop") => {}
        (Some(Value::String(kind)), true) if kind.eq_ignore_ascii_case("bearer") => {
            return Err(fail(ResponseProblem::NotDpopBound(kind.clone())))
        }
        (Some(Value::String(kind)), _) => return Err(fail(ResponseProblem::TokenType(kind.clone()))),
        _ => return Err(fail(ResponseProblem::Member("token_type"))),
    }
    let expires_in = match document.get("expires_in") {
        // Some servers send it as a string ("3600"); RFC 6749 means a number.
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Some(_) => None,
        None => match default_lifetime {
            Some(lifetime) => Some(lifetime.as_secs().max(1)),
            None => return Err(fail(ResponseProblem::ExpiresIn("absent".into()))),
        },
    };
    let expires_in = match expires_in {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds).min(MAX_EXPIRES_IN),
        _ => {
            let shown = document
                .get("expires_in")
                .map(Value::to_string)
                .unwrap_or_default();
            return Err(fail(ResponseProblem::ExpiresIn(shown)));
        }
    };
    let mut token = AccessToken::new(access_token.clone(), expires_in);
    if let Some(Value::String(scope)) = document.get("scope") {
        token = token.with_scope(scope.clone());
    }
    Ok(token)
}

pub(crate) fn parse_error_response(
    url: &str,
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> EndpointError {
    let error = EndpointError::new(url, status.as_u16()).with_retry_after(retry_after);
    // The body is best effort: proxies and load balancers answer with HTML.
    match parse_object(body) {
        Ok(document) => match document.get("error") {
            Some(Value::String(code)) => {
                let description = match document.get("error_description") {
                    Some(Value::String(d)) => Some(d.as_str()),
                    _ => None,
                };
                error.with_oauth(code, description)
            }
            _ => error,
        },
        Err(_) => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<AccessToken, Error> {
        parse_token_response("https://t.example/token", body.as_bytes(), None)
    }

    #[test]
    fn token_responses() {
        let token =
            parse(r#"{"access_token":"a.b.c","token_type":"bearer","expires_in":300,"scope":"poll"}"#)
                .unwrap();
        assert_eq!(token.secret().as_str(), "a.b.c");
        assert_eq!(token.expires_in(), Duration::from_secs(300));
        assert_eq!(token.scope(), Some("poll"));
        let token = parse(r#"{"access_token":"a.b.c","token_type":"Bearer","expires_in":"60"}"#).unwrap();
        assert_eq!(token.expires_in(), Duration::from_secs(60));
        let token = parse(r#"{"access_token":"a","token_type":"Bearer","expires_in":99999999999}"#).unwrap();
        assert_eq!(token.expires_in(), MAX_EXPIRES_IN);

        let problem = |body: &str| match parse(body) {
            Err(Error::InvalidResponse(e)) => e.problem().clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            problem(r#"{"access_token":"a","token_type":"DPoP","expires_in":60}"#),
            ResponseProblem::TokenType("DPoP".into())
        );
        assert_eq!(
            problem(r#"{"token_type":"Bearer","expires_in":60}"#),
            ResponseProblem::Member("access_token")
        );
        assert_eq!(
            problem(r#"{"access_token":"a b","token_type":"Bearer","expires_in":60}"#),
            ResponseProblem::AccessToken
        );
        assert_eq!(
            problem(r#"{"access_token":"a","expires_in":60}"#),
            ResponseProblem::Member("token_type")
        );
        for bad in ["0", "-5", "1.5", "\"\"", "null", "\"soon\""] {
            let body = format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{bad}}}"#);
            assert!(matches!(problem(&body), ResponseProblem::ExpiresIn(_)), "{bad}");
        }
        assert_eq!(
            problem(r#"{"access_token":"a","token_type":"Bearer"}"#),
            ResponseProblem::ExpiresIn("absent".into())
        );
        let token = parse_token_response(
            "u",
            br#"{"access_token":"a","token_type":"Bearer"}"#,
            Some(Duration::from_secs(120)),
        )
        .unwrap();
        assert_eq!(token.expires_in(), Duration::from_secs(120));
        assert!(matches!(problem("<html>"), ResponseProblem::NotJson(_)));
        assert!(matches!(problem("[1]"), ResponseProblem::NotJson(_)));
    }

    #[test]
    fn a_request_with_a_dpop_proof_wants_a_dpop_token() {
        let expect = Expect {
            dpop: true,
            ..Expect::default()
        };
        let parse =
            |body: &str| parse_token_response_with("https://t.example/token", body.as_bytes(), expect);
        for kind in ["DPoP", "dpop", "DPOP"] {
            let body = format!(r#"{{"access_token":"a.b.c","token_type":"{kind}","expires_in":60}}"#);
            assert!(parse(&body).is_ok(), "{kind}");
        }
        let problem = |body: &str| match parse(body) {
            Err(Error::InvalidResponse(e)) => e,
            other => panic!("{other:?}"),
        };
        let bearer = problem(r#"{"access_token":"a.b.c","token_type":"Bearer","expires_in":60}"#);
        assert_eq!(bearer.problem(), &ResponseProblem::NotDpopBound("Bearer".into()));
        let shown = bearer.to_string();
        assert!(shown.contains("ignored it"), "{shown}");
        assert!(shown.contains("expected \"DPoP\""), "{shown}");
        assert_eq!(
            problem(r#"{"access_token":"a","token_type":"mac","expires_in":60}"#).problem(),
            &ResponseProblem::TokenType("mac".into())
        );
        assert_eq!(
            problem(r#"{"access_token":"a","expires_in":60}"#).problem(),
            &ResponseProblem::Member("token_type")
        );
    }

    #[test]
    fn a_token_exchange_answer_names_the_issued_token_type() {
        const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
        let expect = Expect {
            issued_token_type: Some(ACCESS_TOKEN),
            ..Expect::default()
        };
        let parse =
            |body: &str| parse_token_response_with("https://t.example/token", body.as_bytes(), expect);
        let token = parse(
            r#"{"access_token":"a.b.c","issued_token_type":"urn:ietf:params:oauth:token-type:access_token",
                "token_type":"Bearer","expires_in":300}"#,
        )
        .unwrap();
        assert_eq!(token.expires_in(), Duration::from_secs(300));
        let problem = |body: &str| match parse(body) {
            Err(Error::InvalidResponse(e)) => e.problem().clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            problem(r#"{"access_token":"a","token_type":"Bearer","expires_in":60}"#),
            ResponseProblem::Member("issued_token_type")
        );
        assert_eq!(
            problem(r#"{"access_token":"a","issued_token_type":7,"token_type":"Bearer","expires_in":60}"#),
            ResponseProblem::Member("issued_token_type")
        );
        let refresh = problem(
            r#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token",
                "token_type":"N_A","expires_in":60}"#,
        );
        assert_eq!(
            refresh,
            ResponseProblem::IssuedTokenType {
                found: "urn:ietf:params:oauth:token-type:refresh_token".into(),
                expected: ACCESS_TOKEN
            }
        );
        let shown = InvalidResponse::new("https://t.example/token", refresh).to_string();
        assert!(
            shown.contains("issued_token_type is \"urn:ietf:params:oauth:token-type:refresh_token\""),
            "{shown}"
        );
        // Without the rule (client_credentials), the member is not read.
        assert!(parse_token_response(
            "u",
            br#"{"access_token":"a","token_type":"Bearer","expires_in":6}"#,
            None
        )
        .is_ok());
    }

    #[test]
    fn error_responses() {
        let e = parse_error_response(
            "u",
            StatusCode::UNAUTHORIZED,
            br#"{"error":"invalid_client","error_description":"nope"}"#,
            None,
        );
        assert_eq!(e.oauth_error(), Some("invalid_client"));
        assert_eq!(e.description(), Some("nope"));
        assert!(!e.is_retryable());
        let e = parse_error_response("u", StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>", None);
        assert_eq!((e.status(), e.oauth_error()), (502, None));
        assert!(e.is_retryable());
    }
}
