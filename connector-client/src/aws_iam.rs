//! AWS IAM client authentication (feature `aws-iam`): the connector proves
//! who it is with the IAM credentials it already has (ECS task role, instance
//! profile, environment), and no static secret.
//!
//! Each token request carries an `sts:GetCallerIdentity` request signed with
//! SigV4 for the STS endpoint of one region; the token service forwards it to
//! STS and learns the caller's ARN. The signed headers include
//! `X-Connector-Token-Issuer: <issuer>`, so the signed request is good for this
//! token service only, and `X-Connector-Token-Nonce: <random>`, so that no two
//! requests are alike. Wire format (what `oidc-server` expects):
//! `client_assertion_type` = [`ASSERTION_TYPE`], `client_assertion` =
//! base64url of `{"method":"POST","headers":{...},"body":"Action=GetCallerIdentity&Version=2011-06-15"}`,
//! and `client_id`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use oidc_core::clock::{SystemClock, WallClock};
use oidc_core::keys::SignError;
use url::Url;

use crate::error::{ConfigError, Error};

/// `client_assertion_type` of AWS IAM authentication.
pub const ASSERTION_TYPE: &str = "urn:connector-identity:client-assertion-type:aws-sts-get-caller-identity";
/// The signed header naming the token service.
pub const ISSUER_HEADER: &str = "x-connector-token-issuer";
/// The signed header carrying a fresh random value (128 bits, base64url) per
/// request: SigV4 is deterministic, and two processes with one role signing
/// in the same second must not send the same signature (the token service
/// accepts each signature once).
pub const NONCE_HEADER: &str = "x-connector-token-nonce";
const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// IAM credentials and the STS endpoint to sign for.
#[derive(Clone)]
pub struct AwsIam {
    credentials: SharedCredentialsProvider,
    region: String,
    sts_endpoint: Url,
    clock: Arc<dyn WallClock>,
}

impl fmt::Debug for AwsIam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsIam")
            .field("region", &self.region)
            .field("sts_endpoint", &self.sts_endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl AwsIam {
    /// Credentials from the standard AWS chain (environment, profile, web
    /// identity, ECS task role, instance profile). The region is `region`, or
    /// the chain's (`AWS_REGION`); the STS endpoint is the regional one, unless
    /// `AWS_ENDPOINT_URL_STS` or `AWS_ENDPOINT_URL` name another.
    pub async fn from_environment(region: Option<&str>) -> Result<Self, ConfigError> {
        let sdk = oidc_core::aws::load_sdk_config().await;
        let credentials = sdk.credentials_provider().ok_or(ConfigError::Aws(
            "no AWS credentials provider is configured".into(),
        ))?;
        let region = match region {
            Some(region) => region.to_owned(),
            None => sdk.region().map(|r| r.to_string()).ok_or(ConfigError::Aws(
                "no AWS region: set AWS_REGION or pass one".into(),
            ))?,
        };
        let endpoint = std::env::var("AWS_ENDPOINT_URL_STS")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|_| format!("https://sts.{region}.amazonaws.com"));
        Self::new(credentials, region, &endpoint)
    }

    /// Signs with `credentials` for the STS endpoint `sts_endpoint` of `region`.
    pub fn new(
        credentials: SharedCredentialsProvider,
        region: impl Into<String>,
        sts_endpoint: &str,
    ) -> Result<Self, ConfigError> {
        let url = oidc_core::http::checked_url(
            "STS endpoint",
            sts_endpoint,
            oidc_core::http::PlainHttp::LoopbackOnly,
        )?;
        Ok(Self {
            credentials,
            region: region.into(),
            sts_endpoint: url,
            clock: Arc::new(SystemClock),
        })
    }

    /// Dates each signed request (`X-Amz-Date`) by `clock` instead of the
    /// system clock: for a host that drives time itself (a simulation of
    /// weeks of service, whose token service checks the date against the
    /// same simulated clock).
    pub fn with_clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    /// The STS endpoint signed for.
    pub fn sts_endpoint(&self) -> &Url {
        &self.sts_endpoint
    }

    /// A fresh signed request naming `issuer`, encoded as a client assertion
    /// (the token request sends it; public for other clients and for tests).
    pub async fn assertion(&self, issuer: &str) -> Result<String, Error> {
        let credentials = self.credentials.provide_credentials().await.map_err(|e| {
            Error::Assertion(SignError::Unavailable {
                reason: format!("AWS credentials unavailable: {e}"),
                retry_after: None,
            })
        })?;
        let host = match (self.sts_endpoint.host_str(), self.sts_endpoint.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => {
                return Err(Error::Assertion(SignError::Refused(
                    "STS endpoint has no host".into(),
                )))
            }
        };
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("sts")
            .time(signing_time(self.clock.as_ref()))
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Error::Assertion(SignError::Refused(e.to_string())))?
            .into();
        let url = format!("{}://{host}/", self.sts_endpoint.scheme());
        let nonce = oidc_core::Jti::random().map_err(|e| {
            Error::Assertion(SignError::Unavailable {
                reason: e.to_string(),
                retry_after: None,
            })
        })?;
        let headers = [
            ("content-type", CONTENT_TYPE),
            (ISSUER_HEADER, issuer),
            (NONCE_HEADER, nonce.as_str()),
        ];
        let signable = SignableRequest::new(
            "POST",
            url,
            headers.into_iter(),
            SignableBody::Bytes(BODY.as_bytes()),
        )
        .map_err(|e| Error::Assertion(SignError::Refused(e.to_string())))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| Error::Assertion(SignError::Refused(e.to_string())))?
            .into_parts();
        let mut signed = serde_json::Map::new();
        signed.insert("host".into(), host.into());
        for (name, value) in headers {
            signed.insert(name.into(), value.into());
        }
        for (name, value) in instructions.headers() {
            signed.insert(name.to_ascii_lowercase(), value.into());
        }
        let request = serde_json::json!({ "method": "POST", "headers": signed, "body": BODY });
        Ok(oidc_core::base64url::encode(request.to_string()))
    }
}

/// The clock's time as SigV4 takes it (whole seconds: `X-Amz-Date` has no finer unit).
fn signing_time(clock: &dyn WallClock) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(clock.now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use oidc_core::clock::ManualWallClock;

    fn signed_headers(assertion: &str) -> serde_json::Value {
        let bytes = oidc_core::base64url::decode(assertion).expect("base64url");
        let request: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        request["headers"].clone()
    }

    #[tokio::test]
    async fn requests_are_dated_by_the_clock() {
        let credentials =
            SharedCredentialsProvider::new(Credentials::new("AKID", "secret", None, None, "test"));
        let aws = AwsIam::new(credentials, "us-east-1", "https://sts.us-east-1.amazonaws.com")
            .expect("an STS endpoint")
            // 2030-01-07T09:00:00Z
            .with_clock(Arc::new(ManualWallClock::new(1_894_006_800)));
        let headers = signed_headers(&aws.assertion("https://tokens.example.com").await.expect("signed"));
        assert_eq!(headers["x-amz-date"], "20300107T090000Z");
        let authorization = headers["authorization"].as_str().expect("signed");
        assert!(
            authorization.contains("/20300107/us-east-1/sts/aws4_request"),
            "{authorization}"
        );
    }
}
