//! The key-set secret: versions, their `CreatedDate` (the clock every rule
//! runs on is Secrets Manager's), and the stage moves of a rotation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use aws_sdk_secretsmanager::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_secretsmanager::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_secretsmanager::Client as SecretsClient;

use super::KeySetError;
use oidc_core::aws::{self, CallPolicy};

use super::document::KeySetValue;

/// One version's value with when Secrets Manager created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<T> {
    /// The version id (the `ClientRequestToken` of its rotation).
    pub version_id: String,
    /// Its `CreatedDate` (Unix seconds, Secrets Manager's clock).
    pub created_at: u64,
    /// What it holds.
    pub value: T,
}

/// A version of the secret, parsed.
pub type StoredValue = Stored<KeySetValue>;

/// The key-set secret.
#[derive(Debug, Clone)]
pub struct KeySetSecret {
    client: SecretsClient,
    secret_id: String,
    calls: CallPolicy,
}

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

impl KeySetSecret {
    /// The secret `secret_id` (name or ARN), each call made under `calls`
    /// (the client's own retries are turned off: retries happen there).
    pub fn new(client: &SecretsClient, secret_id: impl Into<String>, calls: CallPolicy) -> Self {
        let client = SecretsClient::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
                .build(),
        );
        Self {
            client,
            secret_id: secret_id.into(),
            calls,
        }
    }

    /// The secret's name or ARN.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The secret's name, whether it was given by name or by ARN (Secrets
    /// Manager ends an ARN with `-` and six random characters): the key
    /// set's name, in the tags of its KMS keys.
    pub fn name(&self) -> &str {
        secret_name(&self.secret_id)
    }

    fn failure(&self, failure: aws::CallFailure) -> KeySetError {
        KeySetError::from_failure(failure, &self.secret_id)
    }

    /// The value of the version labelled `stage`, or of version `version_id`:
    /// one `GetSecretValue`. `None` if there is no such version.
    async fn get(
        &self,
        stage: Option<&str>,
        version_id: Option<&str>,
    ) -> Result<Option<Stored<String>>, KeySetError> {
        let output = aws::call(&self.calls, "secretsmanager:GetSecretValue", || {
            self.client
                .get_secret_value()
                .secret_id(&self.secret_id)
                .set_version_stage(stage.map(str::to_owned))
                .set_version_id(version_id.map(str::to_owned))
                .send()
        })
        .await;
        let output = match output {
            Ok(output) => output,
            // No version with that id or stage (Secrets Manager answers
            // the same for a secret that does not exist).
            Err(failure) if failure.code.as_deref() == Some("ResourceNotFoundException") => return Ok(None),
            Err(failure) => return Err(self.failure(failure)),
        };
        let version_id = output.version_id().unwrap_or_default().to_owned();
        let created_at = output
            .created_date()
            .map_or(0, |d| u64::try_from(d.secs()).unwrap_or(0));
        Ok(Some(Stored {
            version_id,
            created_at,
            value: output.secret_string().unwrap_or_default().to_owned(),
        }))
    }

    fn parse(stored: Stored<String>) -> Result<StoredValue, KeySetError> {
        let value = KeySetValue::parse(&stored.value).map_err(|error| KeySetError::BadDocument {
            version_id: stored.version_id.clone(),
            error,
        })?;
        Ok(Stored {
            version_id: stored.version_id,
            created_at: stored.created_at,
            value,
        })
    }

    /// The key set in force (`AWSCURRENT`): one `GetSecretValue`. `None`
    /// when the secret has no version yet (a stack creates it empty; its
    /// first rotation writes the first key set), or does not exist.
    pub async fn current(&self) -> Result<Option<StoredValue>, KeySetError> {
        self.get(Some(CURRENT), None).await?.map(Self::parse).transpose()
    }

    /// Version `version_id`, if it exists.
    pub async fn version(&self, version_id: &str) -> Result<Option<StoredValue>, KeySetError> {
        self.get(None, Some(version_id))
            .await?
            .map(Self::parse)
            .transpose()
    }

    /// Every version's stages (one `DescribeSecret`).
    pub async fn stages(&self) -> Result<HashMap<String, Vec<String>>, KeySetError> {
        Ok(self.stages_now().await?.0)
    }

    /// Every version's stages, and the time of the answer on Secrets
    /// Manager's clock (its `Date` header; `None` without one): one
    /// `DescribeSecret`. The rules run on the clock that dates versions,
    /// never on the clock of whoever runs a rotation.
    pub async fn stages_now(&self) -> Result<(HashMap<String, Vec<String>>, Option<u64>), KeySetError> {
        let clock = ServiceClock::default();
        let output = aws::call(&self.calls, "secretsmanager:DescribeSecret", || {
            self.client
                .describe_secret()
                .secret_id(&self.secret_id)
                .customize()
                .interceptor(clock.clone())
                .send()
        })
        .await
        .map_err(|f| self.failure(f))?;
        let stages = output.version_ids_to_stages().cloned().unwrap_or_default();
        Ok((stages, clock.read()))
    }

    /// Writes `text` as version `token` labelled `AWSPENDING`. Idempotent:
    /// the same token and value again is accepted.
    pub async fn put_pending(&self, token: &str, text: &str) -> Result<(), KeySetError> {
        aws::call(&self.calls, "secretsmanager:PutSecretValue", || {
            self.client
                .put_secret_value()
                .secret_id(&self.secret_id)
                .client_request_token(token)
                .secret_string(text)
                .version_stages(PENDING)
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|f| self.failure(f))
    }

    /// Creates the secret holding `text` as its first, current version.
    pub async fn create(
        &self,
        text: &str,
        description: &str,
        kms_key_id: Option<&str>,
    ) -> Result<(), KeySetError> {
        let token = super::rotation::new_token()?;
        aws::call(&self.calls, "secretsmanager:CreateSecret", || {
            self.client
                .create_secret()
                .name(&self.secret_id)
                .client_request_token(&token)
                .description(description)
                .set_kms_key_id(kms_key_id.map(str::to_owned))
                .secret_string(text)
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|f| self.failure(f))
    }

    /// Moves `AWSCURRENT` to version `token` (from `from`, the version
    /// current before); Secrets Manager moves `AWSPREVIOUS` itself.
    pub async fn make_current(&self, token: &str, from: &str) -> Result<(), KeySetError> {
        aws::call(&self.calls, "secretsmanager:UpdateSecretVersionStage", || {
            self.client
                .update_secret_version_stage()
                .secret_id(&self.secret_id)
                .version_stage(CURRENT)
                .move_to_version_id(token)
                .remove_from_version_id(from)
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|f| self.failure(f))
    }

    /// Removes `AWSPENDING` from version `version_id` (a rotation the rules
    /// refused, or one finished).
    pub async fn clear_pending(&self, version_id: &str) -> Result<(), KeySetError> {
        aws::call(&self.calls, "secretsmanager:UpdateSecretVersionStage", || {
            self.client
                .update_secret_version_stage()
                .secret_id(&self.secret_id)
                .version_stage(PENDING)
                .remove_from_version_id(version_id)
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|f| self.failure(f))
    }
}

/// The `Date` of the last answer seen (Unix seconds).
#[derive(Debug, Clone, Default)]
struct ServiceClock(Arc<Mutex<Option<u64>>>);

impl ServiceClock {
    fn read(&self) -> Option<u64> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Intercept for ServiceClock {
    fn name(&self) -> &'static str {
        "ServiceClock"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let date = context
            .response()
            .headers()
            .get("date")
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        if date.is_some() {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = date;
        }
        Ok(())
    }
}

fn secret_name(secret_id: &str) -> &str {
    let Some(rest) = secret_id.strip_prefix("arn:") else {
        return secret_id;
    };
    // arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX
    let parts: Vec<&str> = rest.splitn(6, ':').collect();
    let [_, _, _, _, "secret", name] = parts[..] else {
        return secret_id;
    };
    match name.rsplit_once('-') {
        Some((base, suffix)) if suffix.len() == 6 && !base.is_empty() => base,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::secret_name;

    #[test]
    fn names_from_ids() {
        assert_eq!(secret_name("prod-key-set"), "prod-key-set");
        assert_eq!(
            secret_name("arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod-key-set-AbC123"),
            "prod-key-set"
        );
        assert_eq!(
            secret_name("arn:aws:secretsmanager:eu-west-1:123456789012:secret:x"),
            "x"
        );
    }
}
