//! What the AWS-backed parts share: the SDK configuration (feature
//! `aws-config`), built on rustls with ring so the workspace keeps one crypto
//! stack; and, with feature `aws`, how every AWS call is made and how SDK
//! errors become "try later" or "refused", with [`AwsObserver`], through
//! which callers see every AWS call (latency, outcome) without this crate
//! knowing any metrics library.
//!
//! `aws-config` alone compiles no service SDK: a program that only needs
//! credentials and a region (a connector signing `sts:GetCallerIdentity`)
//! loads them with [`load_sdk_config`] without building the KMS client.

use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls;

pub use aws_config::SdkConfig;
/// The HTTP client an SDK configuration is given ([`https_client`]).
pub use aws_smithy_runtime_api::client::http::SharedHttpClient;

#[cfg(feature = "aws")]
mod calls;
#[cfg(feature = "aws")]
pub use calls::{call, AwsObserver, CallFailure, CallOutcome, CallPolicy, NoObserver};

/// The HTTPS client every AWS SDK client here uses: hyper with rustls on ring
/// (never aws-lc), trusting the platform's roots; plain `http://` endpoints
/// (an emulator on loopback) work too.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https()
}

/// Loads the SDK configuration from the standard chain (environment such as
/// `AWS_REGION` and `AWS_ENDPOINT_URL`, profile files, web identity, container
/// and instance credentials) with [`https_client`].
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}
