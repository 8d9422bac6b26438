//! `verify`: checks a token the way a control plane would and prints its claims.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use oidc_core::verify::RemoteJwks;
use oidc_core::{JwkSet, KeySource, Policy, Verifier};

use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

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

/// Runs `verify`; exit 0 valid, 1 rejected, 2 usage or configuration error.
pub(super) fn run(args: VerifyArgs) -> u8 {
    let token = match args.token.as_deref() {
        Some(token) if token != "-" => token.trim().to_owned(),
        _ => {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().take(1 << 20).read_to_string(&mut text) {
                eprintln!("error: cannot read the token from stdin: {e}");
                return EXIT_USAGE;
            }
            text.trim().to_owned()
        }
    };
    let policy = Policy::builder(args.issuer.clone(), [args.audience.clone()])
        .typ(args.typ.clone())
        .leeway(Duration::from_secs(args.leeway))
        .max_lifetime(Duration::from_secs(args.max_lifetime))
        .build();
    let policy = match policy {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    rt.block_on(async {
        if let Some(path) = &args.jwks_file {
            let jwks = match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| JwkSet::from_json(&bytes).map_err(|e| e.to_string()))
            {
                Ok(jwks) => jwks,
                Err(e) => {
                    eprintln!("error: --jwks-file {}: {e}", path.display());
                    return EXIT_USAGE;
                }
            };
            return check(Verifier::new(policy, jwks), &token).await;
        }
        let builder = match &args.jwks_url {
            Some(url) => RemoteJwks::builder(url.clone()),
            None => RemoteJwks::discovery(args.issuer.clone()),
        };
        let keys = match builder.build() {
            Ok(keys) => keys,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        };
        // Fetch up front so that an unreachable or invalid key set is a
        // configuration error (exit 2), not a verdict on the token.
        if let Err(e) = keys.refresh().await {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
        check(Verifier::new(policy, keys), &token).await
    })
}

async fn check<K: KeySource>(verifier: Verifier<K>, token: &str) -> u8 {
    match verifier.verify::<serde_json::Value>(token).await {
        Ok(verified) => {
            println!(
                "{}",
                serde_json::to_string_pretty(verified.claims()).unwrap_or_else(|_| "{}".into())
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("rejected: {e}");
            EXIT_FAILURE
        }
    }
}
