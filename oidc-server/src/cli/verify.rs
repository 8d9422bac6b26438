//! `verify`: checks a token the way a control plane would and prints its
//! claims: against one issuer (`--issuer`, `--audience` and a key source), or
//! against the registry of trusted issuers of a trust file (`--trust FILE`,
//! the `[[issuers]]` format of `oidc_core::verify::trust::file`), which picks
//! the entry by the token's exact `iss` and prints its name with the claims.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use oidc_core::verify::trust::TrustedIssuers;
use oidc_core::verify::RemoteJwks;
use oidc_core::{JwkSet, KeyLookupError, KeySource, Policy, Verifier, VerifyError};

use super::CliError;

/// `verify`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("keys").required(true).args(["jwks_file", "jwks_url", "discover", "trust"])))]
pub struct VerifyArgs {
    /// Expected issuer (byte-equal).
    #[arg(long, required_unless_present = "trust", conflicts_with = "trust")]
    pub issuer: Option<String>,
    /// Accepted audience.
    #[arg(long, required_unless_present = "trust", conflicts_with = "trust")]
    pub audience: Option<String>,
    /// Trust the issuers of this TOML file instead (`[[issuers]]` with name,
    /// issuer, audiences, ...): the entry is chosen by the token's exact
    /// `iss`, and its name is printed with the claims as
    /// `{"issuer_name": ..., "claims": ...}`.
    #[arg(long, value_name = "FILE")]
    pub trust: Option<PathBuf>,
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
    #[arg(long, default_value = oidc_core::claims::ACCESS_TOKEN_TYP, conflicts_with = "trust")]
    pub typ: String,
    /// Clock leeway in seconds.
    #[arg(long, default_value_t = 30, conflicts_with = "trust")]
    pub leeway: u64,
    /// Maximum lifetime (exp - iat) in seconds.
    #[arg(long, default_value_t = 900, conflicts_with = "trust")]
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
    if let Some(file) = &args.trust {
        let trusted = TrustedIssuers::from_toml_file(file)
            .map_err(|e| CliError::Usage(format!("--trust {}: {e}", file.display())))?
            .build()
            .map_err(|e| CliError::Usage(format!("--trust {}: {e}", file.display())))?;
        return rt.block_on(check_trusted(&trusted, &token));
    }
    // clap requires both without --trust.
    let (Some(issuer), Some(audience)) = (args.issuer.clone(), args.audience.clone()) else {
        return Err(CliError::Usage(
            "--issuer and --audience are required without --trust".into(),
        ));
    };
    let policy = Policy::builder(issuer.clone(), [audience])
        .typ(args.typ.clone())
        .leeway(Duration::from_secs(args.leeway))
        .max_lifetime(Duration::from_secs(args.max_lifetime))
        .build()
        .map_err(CliError::usage)?;
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
            None => RemoteJwks::discovery(issuer),
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

/// Verifies `token` through the registry: `{"issuer_name", "claims"}` when
/// valid; an issuer whose keys (or whose trust) cannot be established now is
/// an error of the environment (exit 2), as an unreachable key set is above;
/// anything else is a verdict on the token (exit 1).
async fn check_trusted(trusted: &TrustedIssuers, token: &str) -> Result<(), CliError> {
    let verified = trusted
        .verify::<serde_json::Value>(token)
        .await
        .map_err(|e| match e {
            VerifyError::Key(KeyLookupError::Unavailable(_)) | VerifyError::IssuerLookup(_) => {
                CliError::usage(e)
            }
            e => CliError::Rejected(e.to_string()),
        })?;
    let output = serde_json::json!({
        "issuer_name": verified.issuer_name(),
        "claims": verified.claims(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&output).unwrap_or_else(|_| "{}".into())
    );
    Ok(())
}
