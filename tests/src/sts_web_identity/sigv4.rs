//! The stand-in's check of a request's SigV4 `Authorization` header: the
//! signature is computed again with aws-sigv4 over the headers the request
//! says it signed, with the secret key of its access key id, and compared.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use axum::http::{HeaderMap, Method, Uri};
use oidc_core::calendar::Utc;

/// How far a request's `X-Amz-Date` may be from the stand-in's clock (AWS: 15 minutes).
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a request's signature was refused: STS's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) code: &'static str,
    pub(super) message: String,
}

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut fields = HashMap::new();
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        fields.insert(name, value);
    }
    let scope: Vec<&str> = fields.get("Credential")?.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return None;
    };
    Some(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: fields.get("SignedHeaders")?.split(';').collect(),
        signature: fields.get("Signature")?,
    })
}

/// `20250101T120000Z` as Unix seconds.
fn amz_date(text: &str) -> Option<u64> {
    let digits = |range: std::ops::Range<usize>| text.get(range)?.parse::<u64>().ok();
    if text.len() != 16 || text.as_bytes()[8] != b'T' || !text.ends_with('Z') {
        return None;
    }
    Utc {
        year: digits(0..4)?,
        month: digits(4..6)?,
        day: digits(6..8)?,
        hour: digits(9..11)?,
        minute: digits(11..13)?,
        second: digits(13..15)?,
    }
    .unix_seconds()
}

/// Checks the request's SigV4 signature for service `sts` against `keys`
/// (access key id to secret key); returns the access key id that signed.
pub(super) fn check(
    keys: &HashMap<String, String>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let Some(value) = headers.get("authorization") else {
        return Err(refuse(
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ));
    };
    let incomplete = || {
        refuse(
            400,
            "IncompleteSignature",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters",
        )
    };
    let authorization = value.to_str().ok().and_then(parse).ok_or_else(incomplete)?;
    let Some(secret) = keys.get(authorization.access_key_id) else {
        return Err(refuse(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    };
    if authorization.service != "sts" {
        return Err(refuse(
            403,
            "SignatureDoesNotMatch",
            format!(
                "Credential should be scoped to correct service: 'sts', not '{}'",
                authorization.service
            ),
        ));
    }
    let signed_at = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .and_then(amz_date)
        .ok_or_else(incomplete)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    if now.abs_diff(signed_at) > MAX_SKEW.as_secs() {
        return Err(refuse(403, "SignatureDoesNotMatch", "Signature expired"));
    }
    let date = Utc::from_unix_seconds(signed_at).to_string();
    if date.get(..10).map(|d| d.replace('-', "")).as_deref() != Some(authorization.date) {
        return Err(refuse(
            403,
            "SignatureDoesNotMatch",
            "Credential date does not match X-Amz-Date",
        ));
    }
    // Exactly the headers the request says it signed, with their values.
    let mut signed = Vec::new();
    for name in &authorization.signed_headers {
        let value = headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(incomplete)?;
        if *name != "x-amz-date" {
            signed.push((*name, value));
        }
    }
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(incomplete)?;
    let url = format!(
        "http://{host}{}",
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let identity = Credentials::new(authorization.access_key_id, secret, None, None, "stand-in").into();
    let mut settings = SigningSettings::default();
    // Sign what the request lists, however the client chose its list.
    settings.excluded_headers = Some(Vec::<Cow<'static, str>>::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(authorization.region)
        .name("sts")
        .time(UNIX_EPOCH + Duration::from_secs(signed_at))
        .settings(settings)
        .build()
        .expect("signing parameters")
        .into();
    let request = SignableRequest::new(
        method.as_str(),
        url,
        signed.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| incomplete())?;
    let (_, expected) = sign(request, &params).map_err(|_| incomplete())?.into_parts();
    if expected != authorization.signature {
        return Err(refuse(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(authorization.access_key_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_read_as_unix_seconds() {
        assert_eq!(amz_date("20300107T090000Z"), Some(1_894_006_800));
        for bad in [
            "20300107 090000Z",
            "20301307T090000Z",
            "2030010T090000Z",
            "20300107T090000",
        ] {
            assert_eq!(amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn authorization_headers_are_read() {
        let a = parse(
            "AWS4-HMAC-SHA256 Credential=AKID/20300107/us-east-1/sts/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature=abc",
        )
        .expect("parsed");
        assert_eq!(
            (a.access_key_id, a.date, a.region, a.service, a.signature),
            ("AKID", "20300107", "us-east-1", "sts", "abc")
        );
        assert_eq!(a.signed_headers, ["content-type", "host", "x-amz-date"]);
        assert!(parse("AWS4-HMAC-SHA256 Credential=AKID/20300107/us-east-1/sts, Signature=x").is_none());
        assert!(parse("Bearer x").is_none());
    }
}
