//! [`AwsWebIdentity`] (feature `aws-web-identity`): subject tokens from AWS
//! STS `GetWebIdentityToken` (IAM outbound identity federation), signed by
//! AWS for the IAM principal whose credentials the connector already has.
//!
//! The token is a JWT whose `iss` is the account's issuer
//! (`https://<uuid>.tokens.sts.global.api.aws`), `sub` the role's ARN,
//! `aud` the audiences asked for, and AWS's claims nested under
//! `"https://sts.amazonaws.com/"`. A token service verifies it against that
//! issuer's published keys (`oidc-core`'s trust entries).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::get_web_identity_token::GetWebIdentityTokenError;
use oidc_core::aws::SdkConfig;
use zeroize::Zeroizing;

use super::{checked_token, SubjectToken, SubjectTokenSource};
use crate::error::{ConfigError, SubjectTokenError, SubjectTokenProblem};
use crate::Error;

/// The lifetime asked for by default: 300 s, STS's own default.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(300);
/// The shortest lifetime STS issues: 60 s.
pub const MIN_DURATION: Duration = Duration::from_secs(60);
/// The longest lifetime STS issues: 3600 s.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most audiences one token may name.
const MAX_AUDIENCES: usize = 10;
/// Most request tags one call may carry.
const MAX_TAGS: usize = 50;

/// The algorithm STS signs with (`SigningAlgorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AwsSigningAlgorithm {
    /// ECDSA P-384 (kid `EC384_0`). The default: small signatures, and the
    /// key is published with its `alg`.
    #[default]
    ES384,
    /// RSA 2048 (kid `RSA_0`, published without `alg`: a verifier must pin it).
    RS256,
}

impl AwsSigningAlgorithm {
    /// The name STS takes (`ES384`, `RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            AwsSigningAlgorithm::ES384 => "ES384",
            AwsSigningAlgorithm::RS256 => "RS256",
        }
    }
}

/// Builds an [`AwsWebIdentity`]; see [`AwsWebIdentity::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct AwsWebIdentityBuilder {
    audiences: Vec<String>,
    duration: Duration,
    algorithm: AwsSigningAlgorithm,
    tags: Vec<(String, String)>,
}

impl AwsWebIdentityBuilder {
    /// Adds another audience (a token names 1 to 10; its `aud` is then an array).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The lifetime to ask for, 60 to 3600 s (default [`DEFAULT_DURATION`]),
    /// in whole seconds. See [`AwsWebIdentity`] for what happens when the
    /// caller's own session ends sooner.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// The signing algorithm (default [`AwsSigningAlgorithm::ES384`]).
    pub fn algorithm(mut self, algorithm: AwsSigningAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Adds a request tag (`request_tags` in the token). The caller chooses
    /// these, so a token service must never authorize on them.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Builds with the standard AWS chain (environment, profile, web
    /// identity, ECS task role, instance profile): credentials, and the
    /// region `region` or the chain's (`AWS_REGION`). STS is reached at its
    /// regional endpoint, unless `AWS_ENDPOINT_URL_STS` or `AWS_ENDPOINT_URL`
    /// name another.
    pub async fn from_environment(self, region: Option<&str>) -> Result<AwsWebIdentity, ConfigError> {
        let sdk = oidc_core::aws::load_sdk_config().await;
        self.build_with_region(&sdk, region)
    }

    /// Builds with the credentials, region and endpoint of `sdk`.
    pub fn build(self, sdk: &SdkConfig) -> Result<AwsWebIdentity, ConfigError> {
        self.build_with_region(sdk, None)
    }

    fn build_with_region(self, sdk: &SdkConfig, region: Option<&str>) -> Result<AwsWebIdentity, ConfigError> {
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(ConfigError::Empty("AWS web identity audience"));
        }
        if self.audiences.len() > MAX_AUDIENCES {
            return Err(ConfigError::Aws(format!(
                "GetWebIdentityToken takes at most {MAX_AUDIENCES} audiences, not {}",
                self.audiences.len()
            )));
        }
        if !(MIN_DURATION..=MAX_DURATION).contains(&self.duration) || self.duration.subsec_nanos() != 0 {
            return Err(ConfigError::Aws(format!(
                "GetWebIdentityToken lifetimes are whole seconds from {} to {} s, not {:?}",
                MIN_DURATION.as_secs(),
                MAX_DURATION.as_secs(),
                self.duration
            )));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(ConfigError::Aws(format!(
                "GetWebIdentityToken takes at most {MAX_TAGS} tags, not {}",
                self.tags.len()
            )));
        }
        if sdk.credentials_provider().is_none() {
            return Err(ConfigError::Aws(
                "no AWS credentials provider is configured".into(),
            ));
        }
        let mut config = aws_sdk_sts::config::Builder::from(sdk);
        if let Some(region) = region {
            config = config.region(aws_sdk_sts::config::Region::new(region.to_owned()));
        }
        let config = config.build();
        let region = config.region().map(|r| r.to_string()).ok_or(ConfigError::Aws(
            "no AWS region: set AWS_REGION or pass one".into(),
        ))?;
        Ok(AwsWebIdentity {
            client: aws_sdk_sts::Client::from_conf(config),
            origin: format!("AWS STS GetWebIdentityToken ({region})"),
            audiences: self.audiences,
            duration_secs: duration_secs(self.duration),
            algorithm: self.algorithm,
            tags: self.tags,
        })
    }
}

/// Subject tokens from AWS STS `GetWebIdentityToken`, a fresh one per
/// exchange, with the IAM credentials of the connector (an ECS task role,
/// EKS pod identity or IRSA, an instance profile).
///
/// **Shorter sessions.** STS refuses to issue a token that outlives the
/// caller's own session (`SessionDurationEscalationException`); a task
/// role's credentials may have less than the asked lifetime left. Then the
/// lifetime is halved, never below 60 s, and STS is asked again, until it
/// issues one or 60 s is refused too (at most 7 calls from 3600 s, 3 from
/// the default 300 s). The next exchange starts again from the configured
/// lifetime: by then the credentials have usually been renewed.
///
/// ```no_run
/// # async fn run() -> Result<(), connector_client::Error> {
/// use connector_client::token_exchange::{AwsWebIdentity, TokenExchange};
/// use connector_client::{CachedTokenSource, Endpoint};
///
/// let subject = AwsWebIdentity::builder("https://tokens.example.com")
///     .from_environment(None)
///     .await?;
/// let source = TokenExchange::builder(Endpoint::Issuer("https://tokens.example.com".into()), subject)
///     .audience("https://control.example.com")
///     .build()?;
/// let tokens = CachedTokenSource::new(source)?;
/// # drop(tokens); Ok(()) }
/// ```
#[derive(Clone)]
pub struct AwsWebIdentity {
    client: aws_sdk_sts::Client,
    origin: String,
    audiences: Vec<String>,
    duration_secs: i32,
    algorithm: AwsSigningAlgorithm,
    tags: Vec<(String, String)>,
}

impl AwsWebIdentity {
    /// Starts a configuration: a token for `audience` (the token service
    /// that receives it; its trust entry lists the same string).
    pub fn builder(audience: impl Into<String>) -> AwsWebIdentityBuilder {
        AwsWebIdentityBuilder {
            audiences: vec![audience.into()],
            duration: DEFAULT_DURATION,
            algorithm: AwsSigningAlgorithm::default(),
            tags: Vec::new(),
        }
    }

    /// One `GetWebIdentityToken` call asking for `duration_secs`.
    async fn call(&self, duration_secs: i32) -> Result<SubjectToken, Outcome> {
        let mut request = self
            .client
            .get_web_identity_token()
            .set_audience(Some(self.audiences.clone()))
            .duration_seconds(duration_secs)
            .signing_algorithm(self.algorithm.as_str());
        for (key, value) in &self.tags {
            let tag = aws_sdk_sts::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| Outcome::Failed(SubjectTokenProblem::Unavailable(e.to_string())))?;
            request = request.tags(tag);
        }
        let mut output = request.send().await.map_err(classify)?;
        // Taken out of the answer so that this copy at least is wiped (the
        // SDK's response buffers are not ours to wipe).
        let token = Zeroizing::new(output.web_identity_token.take().ok_or(Outcome::Failed(
            SubjectTokenProblem::Unavailable("the answer has no WebIdentityToken".into()),
        ))?);
        let token = checked_token(&self.origin, token.as_bytes())
            .map_err(|e| Outcome::Failed(e.problem().clone()))?;
        Ok(SubjectToken::jwt(token))
    }
}

impl fmt::Debug for AwsWebIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsWebIdentity")
            .field("origin", &self.origin)
            .field("audiences", &self.audiences)
            .field("duration_secs", &self.duration_secs)
            .field("algorithm", &self.algorithm)
            .field("tags", &self.tags.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SubjectTokenSource for AwsWebIdentity {
    async fn subject_token(&self) -> Result<SubjectToken, Error> {
        let mut duration = self.duration_secs;
        loop {
            let problem = match self.call(duration).await {
                Ok(token) => return Ok(token),
                Err(Outcome::Escalation(message)) => match shorter(duration) {
                    Some(next) => {
                        tracing::info!(
                            asked_s = duration,
                            next_s = next,
                            "AWS STS will not issue a web identity token that outlives this session; \
                             asking for a shorter one"
                        );
                        duration = next;
                        continue;
                    }
                    // Under a minute left: the credentials are renewed soon.
                    None => SubjectTokenProblem::Refused {
                        code: ESCALATION.into(),
                        message,
                        retryable: true,
                    },
                },
                Err(Outcome::Failed(problem)) => problem,
            };
            return Err(SubjectTokenError::new(self.origin.as_str(), problem).into());
        }
    }
}

const ESCALATION: &str = "SessionDurationEscalationException";

/// What one call came to, short of a token.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The token would outlive the caller's session: ask for a shorter one.
    Escalation(String),
    /// Anything else.
    Failed(SubjectTokenProblem),
}

/// The next lifetime to ask for after `duration` outlived the session:
/// half, never below STS's minimum; `None` once the minimum was refused.
fn shorter(duration: i32) -> Option<i32> {
    let min = duration_secs(MIN_DURATION);
    (duration > min).then(|| (duration / 2).max(min))
}

fn duration_secs(duration: Duration) -> i32 {
    // Within 60..=3600 once built; the fallback is never taken.
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

/// Error codes after which asking again later may work.
const RETRYABLE_CODES: [&str; 11] = [
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "RequestTimeout",
    "RequestTimeoutException",
    // The session's credentials expired: the chain renews them.
    "ExpiredToken",
];

fn classify<R>(error: SdkError<GetWebIdentityTokenError, R>) -> Outcome
where
    R: fmt::Debug,
{
    match error.as_service_error() {
        Some(service) => service_outcome(service),
        // No credentials, no connection, a timeout, an answer that is not STS's.
        None => Outcome::Failed(SubjectTokenProblem::Unavailable(match &error {
            SdkError::DispatchFailure(_) => format!("cannot reach STS ({})", DisplayErrorContext(&error)),
            SdkError::TimeoutError(_) => {
                format!("STS did not answer in time ({})", DisplayErrorContext(&error))
            }
            _ => DisplayErrorContext(&error).to_string(),
        })),
    }
}

fn service_outcome(error: &GetWebIdentityTokenError) -> Outcome {
    // A modelled exception keeps its message in its own field.
    let (code, message) = match error {
        GetWebIdentityTokenError::SessionDurationEscalationException(e) => {
            return Outcome::Escalation(e.message().unwrap_or_default().to_owned())
        }
        GetWebIdentityTokenError::OutboundWebIdentityFederationDisabledException(e) => {
            ("OutboundWebIdentityFederationDisabledException", e.message())
        }
        GetWebIdentityTokenError::JwtPayloadSizeExceededException(e) => {
            ("JWTPayloadSizeExceededException", e.message())
        }
        other => (other.code().unwrap_or("an error without a code"), other.message()),
    };
    Outcome::Failed(SubjectTokenProblem::Refused {
        code: code.to_owned(),
        message: message.unwrap_or_default().to_owned(),
        retryable: RETRYABLE_CODES.contains(&code),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::error::ErrorMetadata;
    use aws_sdk_sts::types::error::{
        OutboundWebIdentityFederationDisabledException, SessionDurationEscalationException,
    };

    #[test]
    fn escalation_halves_the_lifetime_down_to_a_minute() {
        let mut asked = vec![3600];
        while let Some(next) = shorter(*asked.last().unwrap()) {
            asked.push(next);
        }
        assert_eq!(asked, [3600, 1800, 900, 450, 225, 112, 60]);
        assert_eq!(shorter(300), Some(150));
        assert_eq!(shorter(100), Some(60));
        assert_eq!(shorter(60), None);
    }

    #[test]
    fn sts_errors_are_classified() {
        let escalation = GetWebIdentityTokenError::SessionDurationEscalationException(
            SessionDurationEscalationException::builder()
                .message("beyond the session")
                .build(),
        );
        assert_eq!(
            service_outcome(&escalation),
            Outcome::Escalation("beyond the session".into())
        );
        let disabled = GetWebIdentityTokenError::OutboundWebIdentityFederationDisabledException(
            OutboundWebIdentityFederationDisabledException::builder().build(),
        );
        assert!(matches!(
            service_outcome(&disabled),
            Outcome::Failed(SubjectTokenProblem::Refused { retryable: false, ref code, .. })
                if code == "OutboundWebIdentityFederationDisabledException"
        ));
        let generic = |code: &str| {
            service_outcome(&GetWebIdentityTokenError::generic(
                ErrorMetadata::builder().code(code).message("m").build(),
            ))
        };
        for (code, retryable) in [
            ("Throttling", true),
            ("AccessDenied", false),
            ("ExpiredToken", true),
        ] {
            assert_eq!(
                generic(code),
                Outcome::Failed(SubjectTokenProblem::Refused {
                    code: code.into(),
                    message: "m".into(),
                    retryable
                })
            );
        }
    }

    fn sdk(region: Option<&str>) -> SdkConfig {
        let mut sdk = SdkConfig::builder()
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("AKID", "secret", None, None, "test"),
            ))
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest());
        if let Some(region) = region {
            sdk = sdk.region(aws_sdk_sts::config::Region::new(region.to_owned()));
        }
        sdk.build()
    }

    #[test]
    fn configurations_that_cannot_work_are_refused() {
        let sdk = sdk(Some("eu-west-1"));
        let ok = AwsWebIdentity::builder("https://tokens.example.com")
            .build(&sdk)
            .unwrap();
        assert_eq!(ok.origin, "AWS STS GetWebIdentityToken (eu-west-1)");
        assert_eq!(
            (ok.duration_secs, ok.algorithm),
            (300, AwsSigningAlgorithm::ES384)
        );
        let refused = |builder: AwsWebIdentityBuilder| builder.build(&sdk).unwrap_err();
        assert_eq!(
            refused(AwsWebIdentity::builder("")),
            ConfigError::Empty("AWS web identity audience")
        );
        for bad in [59, 3601] {
            let err = refused(AwsWebIdentity::builder("a").duration(Duration::from_secs(bad)));
            assert!(err.to_string().contains("from 60 to 3600 s"), "{err}");
        }
        refused(AwsWebIdentity::builder("a").duration(Duration::from_millis(60_500)));
        let eleven = (0..10).fold(AwsWebIdentity::builder("a"), |b, i| b.audience(format!("a{i}")));
        assert!(refused(eleven).to_string().contains("at most 10 audiences"));
        let err = AwsWebIdentity::builder("a").build(&self::sdk(None)).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Aws("no AWS region: set AWS_REGION or pass one".into())
        );
        let west = AwsWebIdentity::builder("a")
            .build_with_region(&self::sdk(None), Some("us-west-2"))
            .unwrap();
        assert!(format!("{west:?}").contains("(us-west-2)"), "{west:?}");
    }
}
