//! Command-line flags shared by the examples: where the token endpoint is and
//! how the connector authenticates to it.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use connector_client::{ClientAuth, ClientCredentials, ClientSecret, Endpoint, Error, PrivateKeyJwt};

/// How a client secret is sent.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum AuthMethod {
    /// `client_secret_basic`: in an `Authorization: Basic` header.
    Basic,
    /// `client_secret_post`: in the form body.
    Post,
}

/// Where to get tokens and with which credentials.
#[derive(Debug, Args)]
pub(crate) struct Credentials {
    /// The token endpoint URL.
    #[arg(long, required_unless_present = "issuer", conflicts_with = "issuer")]
    token_url: Option<String>,
    /// The issuer URL, instead of --token-url: the token endpoint is discovered.
    #[arg(long)]
    issuer: Option<String>,
    /// The client (connector) id.
    #[arg(long)]
    client_id: String,
    /// A file holding the client secret (one trailing line break is ignored).
    #[arg(long, required_unless_present_any = ["private_key", "aws_iam"], conflicts_with_all = ["private_key", "aws_iam"])]
    client_secret_file: Option<PathBuf>,
    /// A PKCS#8 PEM private key: authenticate with private_key_jwt instead of a secret.
    #[arg(long, conflicts_with = "aws_iam")]
    private_key: Option<PathBuf>,
    /// Authenticate with the IAM credentials of the standard AWS chain
    /// (environment, ECS task role, instance profile): no secret at all.
    #[arg(long)]
    aws_iam: bool,
    /// With --aws-iam: the region whose STS endpoint to sign for (default: AWS_REGION).
    #[arg(long, requires = "aws_iam")]
    sts_region: Option<String>,
    /// How to send the client secret.
    #[arg(long, value_enum, default_value = "basic", conflicts_with = "private_key")]
    auth_method: AuthMethod,
    /// The audience to ask for (`audience` parameter).
    #[arg(long)]
    audience: Option<String>,
    /// The resource to ask for (RFC 8707 `resource` parameter), instead of --audience.
    #[arg(long, conflicts_with = "audience")]
    resource: Option<String>,
    /// The scope to ask for (space separated).
    #[arg(long)]
    scope: Option<String>,
}

impl Credentials {
    /// The token source these flags describe.
    pub(crate) async fn source(&self) -> Result<ClientCredentials, Error> {
        let endpoint = match (&self.token_url, &self.issuer) {
            (Some(url), _) => Endpoint::TokenUrl(url.clone()),
            (None, Some(issuer)) => Endpoint::Issuer(issuer.clone()),
            // clap requires one of them.
            (None, None) => unreachable!("clap requires --token-url or --issuer"),
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
            (None, None) => unreachable!("clap requires --client-secret-file, --private-key or --aws-iam"),
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
    let aws = connector_client::aws_iam::AwsIam::from_environment(region).await?;
    Ok(ClientAuth::AwsIam(aws))
}

#[cfg(not(feature = "aws-iam"))]
async fn aws_iam(_region: Option<&str>) -> Result<ClientAuth, Error> {
    Err(
        connector_client::ConfigError::Aws("this build has no AWS IAM support (feature aws-iam)".into())
            .into(),
    )
}

/// Parses the command line; on a usage error prints one line and exits 2.
pub(crate) fn parse_args<T: clap::Parser>(program: &str) -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
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
            std::process::exit(2);
        }
    }
}

/// An error as one line.
pub(crate) fn one_line(error: &dyn std::error::Error) -> String {
    error.to_string().replace(['\n', '\r'], " ")
}
