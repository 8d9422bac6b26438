//! What this process tells the Lambda Runtime API besides the invocations
//! `lambda_runtime` answers: an error during init (a bad configuration, a
//! key set that cannot be read), reported through `/runtime/init/error` so
//! that Lambda records why the environment could not start and fails the
//! waiting invocation at once, instead of letting it wait out its timeout.

use std::time::Duration;

/// Where the Runtime API listens: `host:port` in Lambda, a URL under
/// emulators such as `cargo lambda watch`.
pub const RUNTIME_API_ENV: &str = "AWS_LAMBDA_RUNTIME_API";

/// The `/init/error` URL under `api` (the value of [`RUNTIME_API_ENV`]).
fn init_error_url(api: &str) -> String {
    let base = match api.contains("://") {
        true => api.to_owned(),
        false => format!("http://{api}"),
    };
    format!("{}/2018-06-01/runtime/init/error", base.trim_end_matches('/'))
}

/// Reports `error` as this environment's init error, when running under a
/// Runtime API; returns whether it was accepted. The message is the error's
/// text: configuration errors name the setting, never a secret.
pub async fn report_init_error(error: &(dyn std::error::Error + Send + Sync)) -> bool {
    let Ok(api) = std::env::var(RUNTIME_API_ENV) else {
        return false;
    };
    let body = serde_json::json!({
        "errorMessage": error.to_string(),
        "errorType": "Runtime.InitError",
        "stackTrace": [],
    });
    let client = match oidc_core::http::client_builder()
        .map_err(|e| e.to_string())
        .and_then(|b| {
            b.timeout(Duration::from_secs(2))
                .build()
                .map_err(|e| e.to_string())
        }) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: cannot report the init error to the Runtime API: {e}");
            return false;
        }
    };
    let sent = client
        .post(init_error_url(&api))
        .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
        .json(&body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            eprintln!(
                "error: the Runtime API refused the init error: {}",
                response.status()
            );
            false
        }
        Err(e) => {
            eprintln!("error: cannot report the init error to the Runtime API: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::init_error_url;

    #[test]
    fn the_init_error_url_in_lambda_and_under_an_emulator() {
        assert_eq!(
            init_error_url("127.0.0.1:9001"),
            "http://127.0.0.1:9001/2018-06-01/runtime/init/error"
        );
        assert_eq!(
            init_error_url("http://127.0.0.1:9000/.rt"),
            "http://127.0.0.1:9000/.rt/2018-06-01/runtime/init/error"
        );
    }
}
