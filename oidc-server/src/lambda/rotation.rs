//! The key set's rotation function: Secrets Manager invokes it with
//! `{"Step", "SecretId", "ClientRequestToken"}` for each of the four steps
//! of a rotation, and the same `bootstrap` binary serves it when
//! [`HANDLER_ENV`] is `rotation` (one package, two functions in the stack,
//! each with its own role). The steps are [`crate::keyset::Rotation`]'s,
//! the ones `oidc-server keys rotate` runs.

use std::time::Duration;

use crate::keyset::document::{KeySetTemplate, KeySetValue};
use crate::keyset::{KeySetError, Rotation, RotationEvent};
use lambda_http::{service_fn, LambdaEvent};
use oidc_core::aws::SdkConfig;
use oidc_core::keys::KmsOptions;
use serde_json::{json, Value};

/// Selects the handler of the `bootstrap` binary: `rotation` for this one,
/// unset (or `http`) for the token service.
pub const HANDLER_ENV: &str = "OIDC_SERVER_LAMBDA_HANDLER";

/// Longest one AWS call of a rotation may take (a rotation function has
/// minutes; Secrets Manager retries a failed step).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A rotation event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Not a rotation event.
    #[error("not a Secrets Manager rotation event: {0}")]
    Event(String),
    /// The function's template is not one.
    #[error("{TEMPLATE_ENV}: {0}")]
    Template(String),
    /// The step failed (Secrets Manager records it and retries the rotation).
    #[error("{step} of {secret}: {error}")]
    Step {
        /// The step's name.
        step: &'static str,
        /// The secret.
        secret: String,
        /// Why.
        error: KeySetError,
    },
}

/// The key-set template (JSON) the function makes a first key set from
/// and whose settings it applies at each rotation; set by the stack from
/// its parameters (the secret itself starts empty, so that a stack update
/// never rewrites it).
pub const TEMPLATE_ENV: &str = "OIDC_SERVER_KEY_SET_TEMPLATE";

/// The rotation of the secret an event names, its calls made with `sdk`,
/// following `template` when given.
pub fn rotation_for(sdk: &SdkConfig, secret_id: &str, template: Option<&KeySetTemplate>) -> Rotation {
    let mut options = KmsOptions::default();
    options.calls.call_timeout = CALL_TIMEOUT;
    let rotation = Rotation::connect(sdk, secret_id, options);
    match template {
        Some(template) => rotation.with_template(template.clone()),
        None => rotation,
    }
}

/// The template of [`TEMPLATE_ENV`] (`text`), checked.
pub fn template_from(text: &str) -> Result<KeySetTemplate, RotationError> {
    match KeySetValue::parse(text) {
        Ok(KeySetValue::Template(template)) => Ok(template),
        Ok(KeySetValue::Document(_)) => Err(RotationError::Template(
            "it holds keys: a template has none".into(),
        )),
        Err(e) => Err(RotationError::Template(e.to_string())),
    }
}

/// Handles one rotation event (its JSON), as the function does, with the
/// function's `template`.
pub async fn handle(
    sdk: &SdkConfig,
    template: Option<&KeySetTemplate>,
    event: &Value,
) -> Result<Value, RotationError> {
    let event = RotationEvent::from_json(event).map_err(RotationError::Event)?;
    let rotation = rotation_for(sdk, &event.secret_id, template);
    match rotation.step(event.step, &event.token).await {
        Ok(()) => {
            tracing::info!(step = event.step.name(), secret = %event.secret_id, token = %event.token, "rotation step done");
            Ok(json!({"step": event.step.name(), "token": event.token}))
        }
        Err(error) => {
            tracing::error!(step = event.step.name(), secret = %event.secret_id, token = %event.token, error = %error, "rotation step failed");
            Err(RotationError::Step {
                step: event.step.name(),
                secret: event.secret_id,
                error,
            })
        }
    }
}

/// The rotation function, ready to serve: its template and SDK configuration.
#[derive(Debug, Clone)]
pub struct RotationFunction {
    template: Option<KeySetTemplate>,
    sdk: SdkConfig,
}

/// The rotation function from its environment ([`TEMPLATE_ENV`]): a bad
/// template stops the function at its start (init), where Lambda reports why.
pub async fn init() -> Result<RotationFunction, RotationError> {
    let template = match std::env::var(TEMPLATE_ENV) {
        Ok(text) if !text.trim().is_empty() => Some(template_from(&text)?),
        _ => None,
    };
    let sdk = oidc_core::aws::load_sdk_config().await;
    Ok(RotationFunction { template, sdk })
}

/// Serves rotation events to the Lambda runtime until it stops the process.
pub async fn serve(function: RotationFunction) -> Result<(), lambda_http::Error> {
    let RotationFunction { template, sdk } = function;
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (sdk, template) = (sdk.clone(), template.clone());
        // The runtime reports the error to Secrets Manager, which retries.
        async move {
            handle(&sdk, template.as_ref(), &event.payload)
                .await
                .map_err(|e| lambda_http::Error::from(e.to_string()))
        }
    }))
    .await
}
