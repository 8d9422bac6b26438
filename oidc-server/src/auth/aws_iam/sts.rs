//! Asking STS who signed a request: forwarded to the configured endpoint
//! only, the answer read within a size cap, errors classified by STS's own
//! `<Code>` (STS reports throttling as an HTTP 400, which must not become
//! "bad credentials": clients treat `invalid_client` as final, and it would
//! count toward throttling).

use super::{SignedRequest, BODY};
use crate::config::AwsIamConfig;

/// Largest STS answer read.
const MAX_STS_RESPONSE: usize = 16 * 1024;

/// Error codes that mean "STS cannot answer now; retry later".
const UNAVAILABLE_CODES: [&str; 6] = [
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalFailure",
    "IDPCommunicationError",
];

/// Who STS says signed the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The caller's ARN (an assumed-role session, a user).
    pub(crate) arn: String,
    /// Its unique id: `AROA…` for a role session (before the `:session`
    /// part), `AIDA…` for a user; `None` if STS did not say.
    pub(crate) unique_id: Option<String>,
}

/// How STS answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StsOutcome {
    /// The caller.
    Caller(Caller),
    /// STS refused the signature or credentials (`InvalidClientTokenId`,
    /// `SignatureDoesNotMatch`, `ExpiredToken`, `AccessDenied`, ...).
    Refused,
    /// STS was unreachable, slow, throttling or failing.
    Unavailable,
}

/// Sends `request` to the configured STS endpoint and reads the caller.
pub(crate) async fn ask_sts(
    client: &reqwest::Client,
    config: &AwsIamConfig,
    request: &SignedRequest,
) -> StsOutcome {
    let mut call = client
        .post(format!("{}/", config.sts_endpoint))
        .timeout(config.timeout)
        .body(BODY);
    for (name, value) in &request.headers {
        // The HTTP client derives Host from the configured endpoint; it was
        // checked to be the host the client signed for.
        if name != "host" {
            call = call.header(name.as_str(), value.as_str());
        }
    }
    let response = match call.send().await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(error = %oidc_core::http::error_chain(&error), "STS unreachable");
            return StsOutcome::Unavailable;
        }
    };
    let status = response.status();
    let body = match oidc_core::http::read_capped(response, MAX_STS_RESPONSE).await {
        Ok(body) => match String::from_utf8(body) {
            Ok(text) => text,
            Err(_) => return StsOutcome::Unavailable,
        },
        Err(error) => {
            tracing::warn!(%error, "STS answer unreadable");
            return StsOutcome::Unavailable;
        }
    };
    classify(status.as_u16(), &body)
}

/// What an STS answer with `status` and `body` means.
fn classify(status: u16, body: &str) -> StsOutcome {
    if (200..300).contains(&status) {
        return match caller(body) {
            Some(caller) => StsOutcome::Caller(caller),
            None => {
                tracing::warn!("STS answered without a caller ARN");
                StsOutcome::Unavailable
            }
        };
    }
    let code = error_code(body);
    if status >= 500 || status == 429 || UNAVAILABLE_CODES.contains(&code) {
        tracing::warn!(status, code, "STS cannot answer now");
        return StsOutcome::Unavailable;
    }
    tracing::info!(status, code, "STS refused the signed request");
    StsOutcome::Refused
}

/// The text of the first `<tag>` element.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].trim())
}

fn caller(xml: &str) -> Option<Caller> {
    let result = element(xml, "GetCallerIdentityResult")?;
    let arn = element(result, "Arn")?;
    let valid = arn.starts_with("arn:")
        && arn.len() <= 2048
        && arn
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/:".contains(c));
    if !valid {
        return None;
    }
    let unique_id = element(result, "UserId")
        .map(|id| id.split(':').next().unwrap_or(id))
        .filter(|id| (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(str::to_owned);
    Some(Caller {
        arn: arn.to_owned(),
        unique_id,
    })
}

/// STS's error `<Code>`, shortened (it is the server's text), or `unknown`.
fn error_code(xml: &str) -> &str {
    element(xml, "Code")
        .filter(|c| c.len() < 64 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str) -> String {
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>{code}</Code><Message>m</Message></Error><RequestId>r</RequestId></ErrorResponse>"
        )
    }

    #[test]
    fn answers() {
        let ok = "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/connector/i-0abc</Arn><UserId>AROAEXAMPLEID12345:i-0abc</UserId><Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>";
        assert_eq!(
            classify(200, ok),
            StsOutcome::Caller(Caller {
                arn: "arn:aws:sts::123456789012:assumed-role/connector/i-0abc".into(),
                unique_id: Some("AROAEXAMPLEID12345".into()),
            })
        );
        assert_eq!(
            classify(200, "<Arn>arn:aws:iam::1:user/x</Arn>"),
            StsOutcome::Unavailable
        );
        assert_eq!(
            classify(
                200,
                "<GetCallerIdentityResult><Arn>arn:x<y></Arn></GetCallerIdentityResult>"
            ),
            StsOutcome::Unavailable
        );
    }

    #[test]
    fn throttling_is_unavailable_never_a_refusal() {
        for code in [
            "Throttling",
            "RequestLimitExceeded",
            "ServiceUnavailable",
            "InternalFailure",
            "IDPCommunicationError",
        ] {
            assert_eq!(classify(400, &error(code)), StsOutcome::Unavailable, "{code}");
        }
        assert_eq!(
            classify(503, &error("ServiceUnavailable")),
            StsOutcome::Unavailable
        );
        assert_eq!(classify(500, "<html>"), StsOutcome::Unavailable);
        assert_eq!(classify(429, ""), StsOutcome::Unavailable);
        for code in [
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "AccessDenied",
        ] {
            assert_eq!(classify(403, &error(code)), StsOutcome::Refused, "{code}");
            assert_eq!(classify(400, &error(code)), StsOutcome::Refused, "{code}");
        }
        assert_eq!(error_code(&error("Bad<Code>")), "unknown");
    }
}
