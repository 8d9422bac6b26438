//! `verify`: checks a token the way a control plane would and prints its claims.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use oidc_core::verify::RemoteJwks;
use oidc_core::{JwkSet, KeySource, Policy, Verifier};

use super::CliError;

/// `verify`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("keys").required(true).args(["jwks_file", "jwks_url", "discover"])))]
pub struct VerifyArgs {
    /// Expected issuer (byte-equal).
    #[arg(long)]
    pub issuer: String,
    /// Accepted audience.
    #[arg(long)]
    pub audience: String,
    /// JWKS from a file.
    #[arg(long)]
    pub jwks_file: Option<PathBuf>,
    /// JWKS from a URL (https, or http to loopback).
    #[arg(long)]
    pub jwks_url: Option<String>,
    /// JWKS through the issuer's discovery document.
    #[arg(long)]
    pub discover: bool,
    /// Required typ (default at+jwt).
    #[arg(long, default_value = oidc_core::claims::ACCESS_TOKEN_TYP)]
    pub typ: String,
    /// Clock leeway in seconds.
    #[arg(long, default_value_t = 30)]
    pub leeway: u64,
    /// Maximum lifetime (exp - iat) in seconds.
    #[arg(long, default_value_t = 900)]
    pub max_lifetime: u64,
    /// The token, or - (the default) to read it from stdin.
    pub token: Option<String>,
}

/// Runs `verify`: `Ok` when the token is valid (claims printed), `Rejected`
/// when it is not, `Usage` for arguments or keys that cannot be used.
pub(super) fn run(args: VerifyArgs) -> Result<(), CliError> {
    let token = match args.token.as_deref() {
        Some(token) if token != "-" => token.trim().to_owned(),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .take(1 << 20)
                .read_to_string(&mut text)
                .map_err(|e| CliError::Usage(format!("cannot read the token from stdin: {e}")))?;
            text.trim().to_owned()
        }
    };
    let policy = Policy::builder(args.issuer.clone(), [args.audience.clone()])
        .typ(args.typ.clone())
        .leeway(Duration::from_secs(args.leeway))
        .max_lifetime(Duration::from_secs(args.max_lifetime))
        .build()
        .map_err(CliError::usage)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        if let Some(path) = &args.jwks_file {
            let jwks = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| JwkSet::from_json(&bytes).map_err(|e| e.to_string()))
                .map_err(|e| CliError::Usage(format!("--jwks-file {}: {e}", path.display())))?;
            return check(Verifier::new(policy, jwks), &token).await;
        }
        let builder = match &args.jwks_url {
            Some(url) => RemoteJwks::builder(url.clone()),
            None => RemoteJwks::discovery(args.issuer.clone()),
        };
        let keys = builder.build().map_err(CliError::usage)?;
        // Fetch up front so that an unreachable or invalid key set is a
        // configuration error (exit 2), not a verdict on the token.
        keys.refresh().await.map_err(CliError::usage)?;
        check(Verifier::new(policy, keys), &token).await
    })
}

async fn check<K: KeySource>(verifier: Verifier<K>, token: &str) -> Result<(), CliError> {
    let verified = verifier
        .verify::<serde_json::Value>(token)
        .await
        .map_err(|e| CliError::Rejected(e.to_string()))?;
    println!(
        "{}",
        serde_json::to_string_pretty(verified.claims()).unwrap_or_else(|_| "{}".into())
    );
    Ok(())
}
