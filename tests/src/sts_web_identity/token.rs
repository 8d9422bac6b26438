//! The stand-in's `GetWebIdentityToken`: reading the query-protocol form,
//! signing the token in AWS's shape, and STS's XML answers.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use oidc_core::base64url;
use oidc_core::calendar::Utc;
use serde_json::{json, Map, Value};

use super::sigv4::Refusal;
use super::{header_value, Call, Inner, ACCOUNT, AWS_NAMESPACE, REGION, ROLE_ARN};

/// STS's XML namespace.
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The largest decoded payload STS signs (larger: `JWTPayloadSizeExceededException`).
pub const MAX_PAYLOAD_BYTES: usize = 14_984;

/// A `GetWebIdentityToken` request, read from its form.
pub(super) struct TokenRequest {
    audiences: Vec<String>,
    duration_secs: u64,
    algorithm: String,
    tags: Vec<(String, String)>,
}

fn validation(message: String) -> Refusal {
    Refusal {
        status: 400,
        code: "ValidationError",
        message,
    }
}

/// The members `PREFIX.member.1`, `PREFIX.member.2`, ... (`SUFFIX` after
/// each, for structures), in order; stops at the first missing index, as
/// the query protocol numbers them from 1 without gaps.
fn members(form: &[(String, String)], prefix: &str, suffix: &str) -> Vec<String> {
    let value = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    (1..)
        .map_while(|i| value(&format!("{prefix}.member.{i}{suffix}")))
        .collect()
}

impl TokenRequest {
    /// Reads and validates the form as STS does.
    pub(super) fn read(form: &[(String, String)]) -> Result<TokenRequest, Refusal> {
        let value = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if value("Version") != Some("2011-06-15") {
            return Err(Refusal {
                status: 400,
                code: "InvalidAction",
                message: format!(
                    "Could not find operation GetWebIdentityToken for version {}",
                    value("Version").unwrap_or("NO_VERSION_SPECIFIED")
                ),
            });
        }
        let audiences = members(form, "Audience", "");
        if !(1..=10).contains(&audiences.len()) {
            return Err(validation(format!(
                "1 validation error detected: Value at 'audience' failed to satisfy constraint: \
                 Member must have length between 1 and 10 (it has {})",
                audiences.len()
            )));
        }
        let duration_secs = match value("DurationSeconds") {
            None => 300,
            Some(text) => text
                .parse::<u64>()
                .map_err(|_| validation(format!("Value '{text}' at 'durationSeconds' is not a number")))?,
        };
        if !(60..=3600).contains(&duration_secs) {
            return Err(validation(format!(
                "1 validation error detected: Value '{duration_secs}' at 'durationSeconds' failed to \
                 satisfy constraint: Member must have value between 60 and 3600"
            )));
        }
        let algorithm = value("SigningAlgorithm").unwrap_or_default().to_owned();
        if algorithm != "ES384" && algorithm != "RS256" {
            return Err(validation(format!(
                "1 validation error detected: Value '{algorithm}' at 'signingAlgorithm' failed to \
                 satisfy constraint: Member must satisfy enum value set: [RS256, ES384]"
            )));
        }
        let keys = members(form, "Tags", ".Key");
        let values = members(form, "Tags", ".Value");
        if keys.len() != values.len() || keys.len() > 50 {
            return Err(validation("Tags must be 0 to 50 pairs of Key and Value".into()));
        }
        Ok(TokenRequest {
            audiences,
            duration_secs,
            algorithm,
            tags: keys.into_iter().zip(values).collect(),
        })
    }

    fn call(&self, refused: Option<&str>) -> Call {
        Call {
            audiences: self.audiences.clone(),
            duration_secs: self.duration_secs,
            algorithm: self.algorithm.clone(),
            tags: self.tags.clone(),
            refused: refused.map(str::to_owned),
        }
    }
}

/// Issues the token (or refuses a lifetime beyond the session) and records the call.
pub(super) fn issue(state: &Inner, request: TokenRequest) -> Response {
    let limit = state.session_limit.load(Ordering::SeqCst);
    if limit != 0 && request.duration_secs > limit {
        const CODE: &str = "SessionDurationEscalationException";
        state.record(request.call(Some(CODE)));
        return error(
            400,
            CODE,
            "The requested token duration would extend the session beyond its original expiration time.",
        );
    }
    let Some((signer, kid)) = state.signer(&request.algorithm) else {
        // Not reached: the algorithm was validated.
        return error(500, "InternalFailure", "no key for this algorithm");
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let exp = now + request.duration_secs;
    let aud = match &request.audiences[..] {
        [one] => json!(one),
        many => json!(many),
    };
    let mut aws = json!({
        "aws_account": ACCOUNT,
        "source_region": REGION,
        "org_id": "o-a1b2c3d4e5",
        "ou_path": ["o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/"],
        "principal_id": "AROAEXAMPLEROLEID01234",
        "principal_tags": { "team": "connectors" },
        "ec2_source_instance_arn": format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"),
    });
    if !request.tags.is_empty() {
        let tags: Map<String, Value> = request.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        aws["request_tags"] = Value::Object(tags);
    }
    let claims = json!({
        "aud": aud,
        "sub": ROLE_ARN,
        AWS_NAMESPACE: aws,
        "iss": state.issuer,
        "exp": exp,
        "iat": now,
        "jti": uuid(),
    });
    let payload = claims.to_string();
    if payload.len() > MAX_PAYLOAD_BYTES {
        const CODE: &str = "JWTPayloadSizeExceededException";
        state.record(request.call(Some(CODE)));
        return error(
            400,
            CODE,
            "The requested token payload size exceeds the maximum allowed size.",
        );
    }
    let header = json!({ "kid": kid, "typ": "JWT", "alg": request.algorithm });
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string()),
        base64url::encode(payload)
    );
    let signature = signer.sign_now(input.as_bytes()).expect("local signing");
    let token = format!("{input}.{}", base64url::encode(signature));
    state.record(request.call(None));
    let body = format!(
        "<GetWebIdentityTokenResponse xmlns=\"{XMLNS}\">\n  <GetWebIdentityTokenResult>\n    \
         <WebIdentityToken>{token}</WebIdentityToken>\n    <Expiration>{}</Expiration>\n  \
         </GetWebIdentityTokenResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  \
         </ResponseMetadata>\n</GetWebIdentityTokenResponse>\n",
        Utc::from_unix_seconds(exp),
        uuid()
    );
    xml(200, body)
}

/// STS's error answer: `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
pub(super) fn error(status: u16, code: &str, message: &str) -> Response {
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    let body = format!(
        "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    \
         <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        escape(code),
        escape(message),
        uuid()
    );
    xml(status, body)
}

fn xml(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header_value("text/xml"));
    headers.insert("x-amzn-requestid", header_value(&uuid()));
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A random (version 4) UUID, as AWS writes `jti`s and request ids.
pub(super) fn uuid() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("random bytes");
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_query_protocols_lists_are_read_in_order() {
        let request = TokenRequest::read(&form(&[
            ("Action", "GetWebIdentityToken"),
            ("Version", "2011-06-15"),
            ("Audience.member.2", "b"),
            ("Audience.member.1", "a"),
            ("SigningAlgorithm", "RS256"),
            ("Tags.member.1.Key", "k"),
            ("Tags.member.1.Value", "v"),
        ]))
        .unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(request.audiences, ["a", "b"]);
        assert_eq!(
            (request.duration_secs, request.algorithm.as_str()),
            (300, "RS256")
        );
        assert_eq!(request.tags, [("k".to_owned(), "v".to_owned())]);
    }

    #[test]
    fn out_of_range_values_are_validation_errors() {
        let base = [
            ("Version", "2011-06-15"),
            ("Audience.member.1", "a"),
            ("SigningAlgorithm", "ES384"),
        ];
        let code = |extra: &[(&str, &str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            TokenRequest::read(&form(&pairs)).err().map(|r| r.code)
        };
        assert_eq!(code(&[]), None);
        assert_eq!(code(&[("DurationSeconds", "59")]), Some("ValidationError"));
        assert_eq!(code(&[("DurationSeconds", "3601")]), Some("ValidationError"));
        assert_eq!(code(&[("DurationSeconds", "3600")]), None);
        let no_algorithm = TokenRequest::read(&form(&base[..2])).err().map(|r| r.code);
        assert_eq!(no_algorithm, Some("ValidationError"));
        let none = TokenRequest::read(&form(&[("Version", "2011-06-15"), ("SigningAlgorithm", "ES384")]));
        assert_eq!(none.err().map(|r| r.code), Some("ValidationError"));
        let old = TokenRequest::read(&form(&[("Version", "2010-01-01")]));
        assert_eq!(old.err().map(|r| r.code), Some("InvalidAction"));
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, uuid());
    }
}
