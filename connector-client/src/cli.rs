//! Command-line pieces shared by the `connector-token` binary and the
//! examples (feature `cli`): the authentication flags, usage-error handling,
//! and `get` (one token as JSON).
//!
//! Every flag can also be set from an environment variable (shown in
//! `--help`), so that a container definition needs no command line:
//!
//! | flag | variable |
//! |---|---|
//! | `--token-url URL` | `CONNECTOR_TOKEN_URL` |
//! | `--issuer URL` (discovery, instead of `--token-url`) | `CONNECTOR_ISSUER` |
//! | `--client-id ID` | `CONNECTOR_CLIENT_ID` |
//! | `--client-secret-file PATH` | `CONNECTOR_CLIENT_SECRET_FILE` |
//! | `--auth-method basic\|post` | `CONNECTOR_AUTH_METHOD` |
//! | `--private-key PATH` (`private_key_jwt`) | `CONNECTOR_PRIVATE_KEY_FILE` |
//! | `--aws-iam` | `CONNECTOR_AWS_IAM` (`true`) |
//! | `--sts-region REGION` | `CONNECTOR_STS_REGION` |
//! | `--audience AUD` | `CONNECTOR_AUDIENCE` |
//! | `--resource URI` (instead of `--audience`) | `CONNECTOR_RESOURCE` |
//! | `--scope SCOPE` | `CONNECTOR_SCOPE` |
//!
//! No flag takes a secret itself: a secret on a command line or in the
//! environment is visible to other processes; a file is not.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::{ClientAuth, ClientCredentials, ClientSecret, Endpoint, Error, PrivateKeyJwt, TokenSource};

#[cfg(unix)]
#[doc(hidden)]
pub mod connector_token;

/// Exit status of a usage or configuration error (bad flag, bad URL, unreadable file).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a failure to get a token.
pub const EXIT_FAILURE: u8 = 1;

/// How a client secret is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    /// `client_secret_basic`: in an `Authorization: Basic` header.
    Basic,
    /// `client_secret_post`: in the form body.
    Post,
}

/// Where to get tokens and with which credentials: the flags every
/// subcommand and example shares.
#[derive(Debug, Clone, Args)]
pub struct Credentials {
    /// The token endpoint URL.
    #[arg(
        long,
        env = "CONNECTOR_TOKEN_URL",
        value_name = "URL",
        required_unless_present = "issuer",
        conflicts_with = "issuer"
    )]
    token_url: Option<String>,
    /// The issuer URL, instead of --token-url: the token endpoint is discovered.
    #[arg(long, env = "CONNECTOR_ISSUER", value_name = "URL")]
    issuer: Option<String>,
    /// The client (connector) id.
    #[arg(long, env = "CONNECTOR_CLIENT_ID", value_name = "ID")]
    client_id: String,
    /// A file holding the client secret (one trailing line break is ignored).
    #[arg(
        long,
        env = "CONNECTOR_CLIENT_SECRET_FILE",
        value_name = "PATH",
        required_unless_present_any = ["private_key", "aws_iam"],
        conflicts_with_all = ["private_key", "aws_iam"]
    )]
    client_secret_file: Option<PathBuf>,
    /// A PKCS#8 PEM private key: authenticate with private_key_jwt instead of a secret.
    #[arg(
        long,
        env = "CONNECTOR_PRIVATE_KEY_FILE",
        value_name = "PATH",
        conflicts_with = "aws_iam"
    )]
    private_key: Option<PathBuf>,
    /// Authenticate with the IAM credentials of the standard AWS chain
    /// (environment, ECS task role, instance profile): no secret at all.
    #[arg(long, env = "CONNECTOR_AWS_IAM")]
    aws_iam: bool,
    /// With --aws-iam: the region whose STS endpoint to sign for (default: AWS_REGION).
    #[arg(
        long,
        env = "CONNECTOR_STS_REGION",
        value_name = "REGION",
        requires = "aws_iam"
    )]
    sts_region: Option<String>,
    /// How to send the client secret.
    #[arg(
        long,
        env = "CONNECTOR_AUTH_METHOD",
        value_enum,
        default_value = "basic",
        conflicts_with = "private_key"
    )]
    auth_method: AuthMethod,
    /// The audience to ask for (`audience` parameter).
    #[arg(long, env = "CONNECTOR_AUDIENCE", value_name = "AUD")]
    audience: Option<String>,
    /// The resource to ask for (RFC 8707 `resource` parameter), instead of --audience.
    #[arg(
        long,
        env = "CONNECTOR_RESOURCE",
        value_name = "URI",
        conflicts_with = "audience"
    )]
    resource: Option<String>,
    /// The scope to ask for (space separated).
    #[arg(long, env = "CONNECTOR_SCOPE", value_name = "SCOPE")]
    scope: Option<String>,
}

impl Credentials {
    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token source these flags describe: reads the secret or key file
    /// and checks the URLs, without any network request. Every error here is
    /// a configuration error ([`Error::Config`]).
    pub async fn source(&self) -> Result<ClientCredentials, Error> {
        let endpoint = match (&self.token_url, &self.issuer) {
            (Some(url), _) => Endpoint::TokenUrl(url.clone()),
            (None, Some(issuer)) => Endpoint::Issuer(issuer.clone()),
            (None, None) => return Err(crate::ConfigError::Empty("token URL (or issuer)").into()),
        };
        let auth = match (&self.private_key, &self.client_secret_file) {
            _ if self.aws_iam => aws_iam(self.sts_region.as_deref()).await?,
            (Some(key), _) => ClientAuth::PrivateKeyJwt(PrivateKeyJwt::from_pem_file(key)?),
            (None, Some(file)) => {
                let secret = ClientSecret::from_file(file)?;
                match self.auth_method {
                    AuthMethod::Basic => ClientAuth::ClientSecretBasic(secret),
                    AuthMethod::Post => ClientAuth::ClientSecretPost(secret),
                }
            }
            (None, None) => {
                return Err(crate::ConfigError::Empty("client secret file (or private key)").into())
            }
        };
        let mut builder = ClientCredentials::builder(endpoint, &self.client_id, auth);
        if let Some(audience) = &self.audience {
            builder = builder.audience(audience);
        }
        if let Some(resource) = &self.resource {
            builder = builder.resource(resource);
        }
        if let Some(scope) = &self.scope {
            builder = builder.scope(scope);
        }
        builder.build()
    }
}

#[cfg(feature = "aws-iam")]
async fn aws_iam(region: Option<&str>) -> Result<ClientAuth, Error> {
    let aws = crate::aws_iam::AwsIam::from_environment(region).await?;
    Ok(ClientAuth::AwsIam(aws))
}

#[cfg(not(feature = "aws-iam"))]
async fn aws_iam(_region: Option<&str>) -> Result<ClientAuth, Error> {
    Err(crate::ConfigError::Aws("this build has no AWS IAM support (feature aws-iam)".into()).into())
}

/// Parses the command line; on a usage error prints one line
/// (`PROGRAM: problem (see --help)`) and exits with [`EXIT_USAGE`].
/// `--help` and `--version` print as usual and exit 0.
pub fn parse_args<T: clap::Parser>(program: &str) -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // clap's message spans lines (the problem, then usage); keep the problem.
            let rendered = e.to_string();
            let problem: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.is_empty())
                .map(str::trim)
                .collect();
            let problem = problem.join(" ");
            eprintln!(
                "{program}: {} (see --help)",
                problem.trim_start_matches("error: ")
            );
            std::process::exit(i32::from(EXIT_USAGE));
        }
    }
}

/// An error as one line (its message and every cause, line breaks replaced).
pub fn one_line(error: &dyn std::error::Error) -> String {
    error.to_string().replace(['\n', '\r'], " ")
}

/// Prints `PROGRAM: <error>` on one line and returns [`EXIT_USAGE`] for a
/// configuration error, [`EXIT_FAILURE`] for anything else.
pub fn report(program: &str, error: &Error) -> ExitCode {
    eprintln!("{program}: {}", one_line(error));
    match error {
        Error::Config(_) => ExitCode::from(EXIT_USAGE),
        _ => ExitCode::from(EXIT_FAILURE),
    }
}

/// Gets one token and prints `{"access_token": ..., "expires_in": ...}` on
/// stdout (exit 0); on failure, one line on stderr: exit [`EXIT_USAGE`] for a
/// configuration error, [`EXIT_FAILURE`] when the token request failed.
pub async fn get(program: &str, credentials: &Credentials) -> ExitCode {
    let source = match credentials.source().await {
        Ok(source) => source,
        Err(e) => return report(program, &e),
    };
    match source.token().await {
        Ok(token) => {
            let out = serde_json::json!({
                "access_token": token.secret().as_str(),
                "expires_in": token.expires_in().as_secs(),
            });
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => report(program, &e),
    }
}
