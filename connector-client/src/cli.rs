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
//! | `--subject-token aws-sts[:AUDIENCE]` (token exchange) | `CONNECTOR_SUBJECT_TOKEN` |
//! | `--subject-token-file PATH` (token exchange) | `CONNECTOR_SUBJECT_TOKEN_FILE` |
//! | `--sts-region REGION` | `CONNECTOR_STS_REGION` |
//! | `--audience AUD` | `CONNECTOR_AUDIENCE` |
//! | `--resource URI` (instead of `--audience`) | `CONNECTOR_RESOURCE` |
//! | `--scope SCOPE` | `CONNECTOR_SCOPE` |
//! | `--dpop` (DPoP-bound tokens, a key generated in memory) | `CONNECTOR_DPOP` (`true`) |
//! | `--dpop-key PATH` (DPoP with this PKCS#8 PEM key, kept across restarts) | `CONNECTOR_DPOP_KEY_FILE` |
//!
//! No flag takes a secret itself: a secret on a command line or in the
//! environment is visible to other processes; a file is not.
//!
//! A subject token (`--subject-token`, `--subject-token-file`) means a token
//! exchange (RFC 8693, [`TokenExchange`]): the connector is known by its
//! platform identity, so there is no client id, secret or key, and those
//! flags are refused alongside it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;

use clap::{ArgGroup, Args, ValueEnum};

use crate::token_exchange::{SubjectTokenFile, SubjectTokenSource};
use crate::{
    ClientAuth, ClientCredentials, ClientSecret, ConfigError, DpopKey, Endpoint, Error, PrivateKeyJwt,
    TokenExchange, TokenSource,
};

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

/// A platform that hands out subject tokens (`--subject-token`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectTokenFlag {
    /// `aws-sts[:AUDIENCE]`: AWS STS `GetWebIdentityToken` with the IAM
    /// credentials of the standard chain, for `AUDIENCE` (default: the
    /// issuer, or the token URL's origin).
    AwsSts {
        /// The audience asked for, if given.
        audience: Option<String>,
    },
}

impl FromStr for SubjectTokenFlag {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            None if text == "aws-sts" => Ok(Self::AwsSts { audience: None }),
            Some(("aws-sts", "")) => Err("the audience after \"aws-sts:\" is empty".into()),
            Some(("aws-sts", audience)) => Ok(Self::AwsSts {
                audience: Some(audience.to_owned()),
            }),
            _ => Err(format!(
                "{text:?} is not a subject token source (expected aws-sts[:AUDIENCE])"
            )),
        }
    }
}

/// Where to get tokens and with which credentials: the flags every
/// subcommand and example shares.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("aws").args(["aws_iam", "subject_token"]).multiple(true)))]
#[command(group(ArgGroup::new("dpop_on").args(["dpop", "dpop_key"]).multiple(true)))]
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
    /// The client (connector) id (not with a subject token, which names the connector).
    #[arg(
        long,
        env = "CONNECTOR_CLIENT_ID",
        value_name = "ID",
        required_unless_present_any = ["subject_token", "subject_token_file"],
        conflicts_with_all = ["subject_token", "subject_token_file"]
    )]
    client_id: Option<String>,
    /// A file holding the client secret (one trailing line break is ignored).
    #[arg(
        long,
        env = "CONNECTOR_CLIENT_SECRET_FILE",
        value_name = "PATH",
        required_unless_present_any = ["private_key", "aws_iam", "subject_token", "subject_token_file"],
        conflicts_with_all = ["private_key", "aws_iam", "subject_token", "subject_token_file"]
    )]
    client_secret_file: Option<PathBuf>,
    /// A PKCS#8 PEM private key: authenticate with private_key_jwt instead of a secret.
    #[arg(
        long,
        env = "CONNECTOR_PRIVATE_KEY_FILE",
        value_name = "PATH",
        conflicts_with_all = ["aws_iam", "subject_token", "subject_token_file"]
    )]
    private_key: Option<PathBuf>,
    /// Authenticate with the IAM credentials of the standard AWS chain
    /// (environment, ECS task role, instance profile): no secret at all.
    #[arg(
        long,
        env = "CONNECTOR_AWS_IAM",
        conflicts_with_all = ["subject_token", "subject_token_file"]
    )]
    aws_iam: bool,
    /// Token exchange (RFC 8693) with a subject token from AWS STS
    /// GetWebIdentityToken (standard AWS chain), for AUDIENCE (default: the
    /// issuer, or the token URL's origin). No client id or secret.
    #[arg(
        long,
        env = "CONNECTOR_SUBJECT_TOKEN",
        value_name = "aws-sts[:AUDIENCE]",
        conflicts_with = "subject_token_file"
    )]
    subject_token: Option<SubjectTokenFlag>,
    /// Token exchange (RFC 8693) with the JWT in this file, read again for
    /// every exchange (a Kubernetes projected service-account token,
    /// spiffe-helper's JWT-SVID). No client id or secret.
    #[arg(long, env = "CONNECTOR_SUBJECT_TOKEN_FILE", value_name = "PATH")]
    subject_token_file: Option<PathBuf>,
    /// With --aws-iam or --subject-token aws-sts: the region of the STS
    /// endpoint (default: AWS_REGION).
    #[arg(long, env = "CONNECTOR_STS_REGION", value_name = "REGION", requires = "aws")]
    sts_region: Option<String>,
    /// How to send the client secret.
    #[arg(
        long,
        env = "CONNECTOR_AUTH_METHOD",
        value_enum,
        default_value = "basic",
        conflicts_with_all = ["private_key", "subject_token", "subject_token_file"]
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
    /// DPoP (RFC 9449): bind every token to a key generated in memory at
    /// start (ES256); a copied token is useless without it. The token
    /// endpoint must answer token_type DPoP.
    #[arg(long, env = "CONNECTOR_DPOP")]
    dpop: bool,
    /// DPoP with this PKCS#8 PEM private key instead of a generated one, so
    /// that a restart keeps the key (and its tokens stay usable).
    #[arg(long, env = "CONNECTOR_DPOP_KEY_FILE", value_name = "PATH")]
    dpop_key: Option<PathBuf>,
}

/// Reads a DPoP key from a PKCS#8 PEM file (P-256: ES256, P-384: ES384,
/// Ed25519: EdDSA). The text read is zeroized once parsed.
pub fn read_dpop_key(path: &Path) -> Result<DpopKey, ConfigError> {
    let pem = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
        what: "DPoP key",
        path: path.display().to_string(),
        reason: e.to_string(),
    })?);
    DpopKey::from_pem(&pem).map_err(ConfigError::DpopKey)
}

impl Credentials {
    /// The client id (none with a subject token).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// Where the subject token comes from, for logs (`None` without one).
    pub fn subject_token(&self) -> Option<String> {
        match (&self.subject_token, &self.subject_token_file) {
            (Some(SubjectTokenFlag::AwsSts { .. }), _) => Some("aws-sts".into()),
            (None, Some(path)) => Some(format!("file {}", path.display())),
            (None, None) => None,
        }
    }

    /// Whether tokens are to be DPoP-bound (`--dpop` or `--dpop-key`).
    pub fn dpop(&self) -> bool {
        self.dpop || self.dpop_key.is_some()
    }

    /// The key file of `--dpop-key`, if given.
    pub fn dpop_key_file(&self) -> Option<&Path> {
        self.dpop_key.as_deref()
    }

    /// The DPoP key of `--dpop-key` (read) or `--dpop` (generated), if any.
    pub fn dpop_key(&self) -> Result<Option<Arc<DpopKey>>, Error> {
        match (&self.dpop_key, self.dpop) {
            (Some(path), _) => Ok(Some(Arc::new(read_dpop_key(path)?))),
            (None, true) => Ok(Some(Arc::new(DpopKey::generate().map_err(ConfigError::DpopKey)?))),
            (None, false) => Ok(None),
        }
    }

    /// The token source these flags describe: [`ClientCredentials`], or a
    /// [`TokenExchange`] with a subject token. Reads the secret or key file
    /// and checks the URLs, without any network request. Every error here is
    /// a configuration error ([`Error::Config`]). A subject token file is not
    /// read yet: it may appear later (spiffe-helper may start after this).
    pub async fn source(&self) -> Result<Box<dyn TokenSource>, Error> {
        let dpop = self.dpop_key()?;
        self.source_with(dpop).await
    }

    /// [`source`](Self::source) with the DPoP key given (from
    /// [`dpop_key`](Self::dpop_key)), for a caller that also keeps the key.
    pub async fn source_with(&self, dpop: Option<Arc<DpopKey>>) -> Result<Box<dyn TokenSource>, Error> {
        let endpoint = match (&self.token_url, &self.issuer) {
            (Some(url), _) => Endpoint::TokenUrl(url.clone()),
            (None, Some(issuer)) => Endpoint::Issuer(issuer.clone()),
            (None, None) => return Err(ConfigError::Empty("token URL (or issuer)").into()),
        };
        if let Some(subject) = self.subject_source(&endpoint).await? {
            let mut builder = TokenExchange::builder(endpoint, subject);
            if let Some(audience) = &self.audience {
                builder = builder.audience(audience);
            }
            if let Some(resource) = &self.resource {
                builder = builder.resource(resource);
            }
            if let Some(scope) = &self.scope {
                builder = builder.scope(scope);
            }
            if let Some(key) = dpop {
                builder = builder.dpop(key);
            }
            return Ok(Box::new(builder.build()?));
        }
        let Some(client_id) = &self.client_id else {
            return Err(ConfigError::Empty("client id").into());
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
            (None, None) => return Err(ConfigError::Empty("client secret file (or private key)").into()),
        };
        let mut builder = ClientCredentials::builder(endpoint, client_id, auth);
        if let Some(audience) = &self.audience {
            builder = builder.audience(audience);
        }
        if let Some(resource) = &self.resource {
            builder = builder.resource(resource);
        }
        if let Some(scope) = &self.scope {
            builder = builder.scope(scope);
        }
        if let Some(key) = dpop {
            builder = builder.dpop(key);
        }
        Ok(Box::new(builder.build()?))
    }

    /// The subject token source of `--subject-token` or `--subject-token-file`, if any.
    async fn subject_source(
        &self,
        endpoint: &Endpoint,
    ) -> Result<Option<Box<dyn SubjectTokenSource>>, Error> {
        if let Some(SubjectTokenFlag::AwsSts { audience }) = &self.subject_token {
            let audience = match audience {
                Some(audience) => audience.clone(),
                None => endpoint.audience()?,
            };
            return Ok(Some(aws_sts(audience, self.sts_region.as_deref()).await?));
        }
        let Some(path) = &self.subject_token_file else {
            return Ok(None);
        };
        // A missing file is waited for; a folder in its place is a mistake.
        if let Ok(metadata) = std::fs::metadata(path) {
            if !metadata.is_file() {
                return Err(ConfigError::ReadFile {
                    what: "subject token",
                    path: path.display().to_string(),
                    reason: "not a regular file".into(),
                }
                .into());
            }
        }
        Ok(Some(Box::new(SubjectTokenFile::new(path))))
    }
}

#[cfg(feature = "aws-web-identity")]
async fn aws_sts(audience: String, region: Option<&str>) -> Result<Box<dyn SubjectTokenSource>, Error> {
    let source = crate::token_exchange::AwsWebIdentity::builder(audience)
        .from_environment(region)
        .await?;
    Ok(Box::new(source))
}

#[cfg(not(feature = "aws-web-identity"))]
async fn aws_sts(_audience: String, _region: Option<&str>) -> Result<Box<dyn SubjectTokenSource>, Error> {
    Err(
        ConfigError::Aws("this build has no AWS STS web identity support (feature aws-web-identity)".into())
            .into(),
    )
}

#[cfg(feature = "aws-iam")]
async fn aws_iam(region: Option<&str>) -> Result<ClientAuth, Error> {
    let aws = crate::aws_iam::AwsIam::from_environment(region).await?;
    Ok(ClientAuth::AwsIam(aws))
}

#[cfg(not(feature = "aws-iam"))]
async fn aws_iam(_region: Option<&str>) -> Result<ClientAuth, Error> {
    Err(ConfigError::Aws("this build has no AWS IAM support (feature aws-iam)".into()).into())
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

/// Gets one token and prints `{"access_token": ..., "expires_in": ...}`
/// (and `"token_type": "DPoP"` for a DPoP-bound token) on
/// stdout (exit 0); on failure, one line on stderr: exit [`EXIT_USAGE`] for a
/// configuration error, [`EXIT_FAILURE`] when the token request failed.
pub async fn get(program: &str, credentials: &Credentials) -> ExitCode {
    let source = match credentials.source().await {
        Ok(source) => source,
        Err(e) => return report(program, &e),
    };
    match source.token().await {
        Ok(token) => {
            let mut out = serde_json::json!({
                "access_token": token.secret().as_str(),
                "expires_in": token.expires_in().as_secs(),
            });
            // Only for a DPoP-bound token: the bearer output stays as it was.
            if token.is_dpop_bound() {
                out["token_type"] = token.token_type().scheme().into();
            }
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => report(program, &e),
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args as _, FromArgMatches as _};

    use super::*;

    fn parse(args: &[&str]) -> Result<Credentials, clap::Error> {
        let command = Credentials::augment_args(clap::Command::new("t")).no_binary_name(true);
        let matches = command.try_get_matches_from(args)?;
        Credentials::from_arg_matches(&matches)
    }

    #[test]
    fn dpop_flags() {
        let base = [
            "--token-url",
            "https://t.example/token",
            "--client-id",
            "c",
            "--client-secret-file",
            "/s",
        ];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        let plain = with(&[]).unwrap();
        assert!(!plain.dpop());
        assert!(plain.dpop_key().unwrap().is_none());
        let generated = with(&["--dpop"]).unwrap();
        assert!(generated.dpop());
        let one = generated.dpop_key().unwrap().unwrap();
        let two = generated.dpop_key().unwrap().unwrap();
        assert_ne!(one.thumbprint(), two.thumbprint(), "a fresh key each start");

        let dir = std::env::temp_dir().join(format!("dpop-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        std::fs::write(&path, one.pem().as_str()).unwrap();
        let loaded = with(&["--dpop-key", path.to_str().unwrap()]).unwrap();
        assert!(loaded.dpop());
        assert_eq!(loaded.dpop_key().unwrap().unwrap().thumbprint(), one.thumbprint());
        std::fs::write(&path, "not a key").unwrap();
        let refused = loaded.dpop_key().unwrap_err();
        assert!(
            matches!(refused, Error::Config(ConfigError::DpopKey(_))),
            "{refused:?}"
        );
        let missing = with(&["--dpop-key", "/nonexistent/key.pem"])
            .unwrap()
            .dpop_key()
            .unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("cannot read DPoP key from /nonexistent/key.pem"),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn subject_token_values() {
        assert_eq!(
            "aws-sts".parse::<SubjectTokenFlag>(),
            Ok(SubjectTokenFlag::AwsSts { audience: None })
        );
        assert_eq!(
            "aws-sts:https://tokens.example.com:8443/a".parse::<SubjectTokenFlag>(),
            Ok(SubjectTokenFlag::AwsSts {
                audience: Some("https://tokens.example.com:8443/a".into())
            })
        );
        for bad in ["aws-sts:", "aws", "AWS-STS", "file:/x", ""] {
            assert!(bad.parse::<SubjectTokenFlag>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_subject_token_stands_instead_of_client_credentials() {
        let url = ["--token-url", "https://t.example/token"];
        let with = |extra: &[&str]| parse(&[&url[..], extra].concat());
        let exchange = with(&["--subject-token-file", "/run/token"]).unwrap();
        assert_eq!(exchange.client_id(), None);
        assert_eq!(exchange.subject_token().as_deref(), Some("file /run/token"));
        let aws = with(&["--subject-token", "aws-sts", "--sts-region", "eu-west-1"]).unwrap();
        assert_eq!(aws.subject_token().as_deref(), Some("aws-sts"));
        with(&["--aws-iam", "--client-id", "c", "--sts-region", "eu-west-1"]).unwrap();
        for refused in [
            &["--subject-token-file", "/run/token", "--client-id", "c"][..],
            &["--subject-token-file", "/run/token", "--client-secret-file", "/s"],
            &["--subject-token", "aws-sts", "--private-key", "/k"],
            &["--subject-token", "aws-sts", "--aws-iam"],
            &["--subject-token", "aws-sts", "--subject-token-file", "/run/token"],
            &["--subject-token-file", "/run/token", "--auth-method", "post"],
            &["--subject-token-file", "/run/token", "--sts-region", "eu-west-1"],
            &["--client-secret-file", "/s"],
        ] {
            assert!(with(refused).is_err(), "{refused:?}");
        }
    }
}
