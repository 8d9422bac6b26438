//! The command line: `serve` (the default), `keygen`, `connectors add`,
//! `issue`, `check-config`, `verify` and `keys`. Each handler returns
//! `Result<(), CliError>`; [`run`] prints the error and maps it to the exit
//! code in one place; `main` only parses and calls [`run`].

mod error;
mod keys;
mod verify;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::{Algorithm, Issuer, KeySet, TokenRequest};

use crate::config::{self, Config, ConfigError, Origin, Overrides, ReplayConfig, SigningConfig};
use crate::connectors;
use crate::context::ServiceContext;
use crate::state::AppState;

pub use error::{CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
pub use keys::KeysCommand;
pub use verify::VerifyArgs;

/// Token service for connector identity tokens.
///
/// With no command, serves the configuration in force: the embedded
/// development default, or the file given by --config / OIDC_SERVER_CONFIG;
/// `serve`'s flags work without the word `serve` too.
#[derive(Debug, Parser)]
#[command(name = "oidc-server", version)]
pub struct Cli {
    /// TOML configuration file (default: the embedded development configuration).
    #[arg(long, global = true, env = config::CONFIG_ENV)]
    pub config: Option<PathBuf>,
    /// `serve`'s flags, for the default command: `oidc-server --listen ADDR`
    /// is `oidc-server serve --listen ADDR`. [`Cli::parse_args`] refuses them
    /// before another command (clap's `args_conflicts_with_subcommands`
    /// would refuse the global `--config` there too).
    #[command(flatten)]
    pub serve: ServeArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the token endpoint (the default command).
    Serve(ServeArgs),
    /// Generate a signing key: PKCS#8 PEM out, public JWK printed.
    Keygen(KeygenArgs),
    /// Manage connectors.
    #[command(subcommand)]
    Connectors(ConnectorsCommand),
    /// Issue a development token from a local key.
    Issue(IssueArgs),
    /// Validate a configuration and explain each problem.
    CheckConfig(CheckConfigArgs),
    /// Verify a token: claims as JSON on stdout (exit 0), or `rejected: REASON` on stderr (exit 1).
    Verify(VerifyArgs),
    /// The key set that rotates by itself: init, rotate, show.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `serve`.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Listen address (overrides the config).
    #[arg(long)]
    pub listen: Option<String>,
    /// Issuer URL (overrides the config).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Sign every token with this KMS key (key id, ARN, alias/NAME or alias
    /// ARN): a shortcut for `[signing] kind = "kms"` with `key_id`; the rest
    /// of the config in force applies. AWS settings come from the standard
    /// chain (AWS_REGION, AWS_ENDPOINT_URL, credentials).
    #[arg(long, value_name = "KEY")]
    pub kms_key_id: Option<String>,
}

/// `keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Algorithm: ES256 or EdDSA.
    #[arg(long, default_value = "ES256")]
    pub alg: String,
    /// Write the PEM here (mode 0600) and the JWK to stdout; without it, the
    /// PEM goes to stdout and the JWK to stderr.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `connectors ...`.
#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// Register a connector: prints a fresh secret once, and the config entry with its digest.
    Add(ConnectorAddArgs),
}

/// `connectors add`.
#[derive(Debug, Args)]
pub struct ConnectorAddArgs {
    /// Connector id (client_id and token subject).
    #[arg(long)]
    pub id: String,
    /// Audience it may ask for (repeat; the first is the default).
    #[arg(long = "audience", required = true)]
    pub audiences: Vec<String>,
    /// Scope it may ask for (repeat).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Attribute put in its tokens, KEY=VALUE (repeat).
    #[arg(long = "attribute", value_parser = parse_attribute)]
    pub attributes: Vec<(String, String)>,
}

fn parse_attribute(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// `issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Subject (connector id).
    #[arg(long)]
    pub subject: String,
    /// Audience.
    #[arg(long)]
    pub audience: String,
    /// Scope (space separated).
    #[arg(long)]
    pub scope: Option<String>,
    /// Lifetime in seconds (capped by the config's max_ttl_secs).
    #[arg(long)]
    pub ttl: Option<u64>,
    /// PKCS#8 PEM key (default: the local key of the config in force).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Issuer (default: the config's).
    #[arg(long)]
    pub issuer: Option<String>,
}

/// `check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The file to check (default: --config, else the embedded default).
    pub path: Option<PathBuf>,
}

impl Cli {
    /// Parses `args` (the program name first) as `main` does: clap's parser,
    /// then [`Cli::checked`].
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(args)?.checked()
    }

    /// Parses the process's command line; on an error prints clap's message
    /// and exits (2).
    pub fn parse_args() -> Cli {
        Self::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// `serve`'s flags before the command are for `serve` only: merged into
    /// `serve`'s own (which win), refused before any other command.
    pub fn checked(mut self) -> Result<Cli, clap::Error> {
        let top = std::mem::take(&mut self.serve);
        let given = [
            ("--listen", top.listen.is_some()),
            ("--issuer", top.issuer.is_some()),
            ("--kms-key-id", top.kms_key_id.is_some()),
        ];
        match &mut self.command {
            None => self.serve = top,
            Some(Command::Serve(args)) => {
                args.listen = args.listen.take().or(top.listen);
                args.issuer = args.issuer.take().or(top.issuer);
                args.kms_key_id = args.kms_key_id.take().or(top.kms_key_id);
            }
            Some(_) => {
                if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
                    return Err(<Self as clap::CommandFactory>::command().error(
                        clap::error::ErrorKind::ArgumentConflict,
                        format!("{flag} is a flag of `serve` (the default command), not of this command"),
                    ));
                }
            }
        }
        Ok(self)
    }
}

/// Runs the command line; returns the exit code.
pub fn run(cli: Cli) -> u8 {
    let command = cli.command.unwrap_or(Command::Serve(cli.serve));
    let result = match command {
        Command::Serve(args) => serve(cli.config, args),
        Command::Keygen(args) => keygen(args),
        Command::Connectors(ConnectorsCommand::Add(args)) => add_connector(args),
        Command::Issue(args) => issue(cli.config, args),
        Command::CheckConfig(args) => check_config(args.path.or(cli.config)),
        Command::Verify(args) => verify::run(args),
        Command::Keys(command) => keys::run(cli.config, command),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(error) => {
            eprintln!("{error}");
            error.exit_code()
        }
    }
}

fn load(path: Option<PathBuf>, overrides: &Overrides) -> Result<Config, ConfigError> {
    Config::load(path.as_deref(), std::env::vars(), overrides)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))
}

fn serve(path: Option<PathBuf>, args: ServeArgs) -> Result<(), CliError> {
    let overrides = Overrides {
        listen: args.listen,
        issuer: args.issuer,
    };
    let mut config = load(path, &overrides)?;
    if let Some(key_id) = &args.kms_key_id {
        config = config.with_kms_key_id(key_id)?;
    }
    let config = Arc::new(config);
    // Held until the server has stopped: then every queued line is written.
    let _logs = crate::telemetry::init(&config.log);
    runtime()?.block_on(async move {
        let state = AppState::start(config.clone(), &ServiceContext::default())
            .await
            .map_err(CliError::usage)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", config.listen)))?;
        let bound = listener.local_addr().unwrap_or(config.listen);
        // The metrics listener stops when the public one has.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let metrics_listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| CliError::Failed(format!("cannot listen on {addr} (metrics): {e}")))?;
                tracing::info!(listen = %metrics_listener.local_addr().unwrap_or(addr), "metrics listening");
                let mut stopped = stopped.clone();
                Some(tokio::spawn(crate::run_metrics(
                    state.clone(),
                    metrics_listener,
                    async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    },
                )))
            }
            None => None,
        };
        print_banner(&config, bound);
        let served = crate::run(state, listener, crate::shutdown_signal()).await;
        let _ = stop.send(true);
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        served.map_err(|e| CliError::Failed(format!("server failed: {e}")))
    })
}

/// Tells the operator where the server is and, for the embedded default, how
/// to get a token (the secret is read from its file, never printed).
fn print_banner(config: &Config, bound: std::net::SocketAddr) {
    tracing::info!(issuer = %config.issuer, listen = %bound, signing = %config.signing, origin = %config.origin, "oidc-server listening");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "oidc-server listening on http://{bound} (issuer {})",
        config.issuer
    );
    if config.origin == Origin::Embedded {
        let _ = writeln!(out, "{}", demo_curl(bound, |path| path.is_file()));
    }
    let _ = out.flush();
}

/// The embedded default's "get a token" hint. The demo secret is read from
/// its file, never printed: `keys-example/demo-connector.secret` where the
/// command runs (a checkout: `cargo run`), else the checkout the binary was
/// built from if it is on this machine; an installed binary or an image has
/// neither, and is told where the file comes from instead of given a path
/// of the build machine.
fn demo_curl(bound: std::net::SocketAddr, exists: impl Fn(&std::path::Path) -> bool) -> String {
    let relative = std::path::Path::new("keys-example/demo-connector.secret");
    let built = std::path::Path::new(config::KEYS_EXAMPLE_DIR).join("demo-connector.secret");
    let (file, note) = if exists(relative) {
        (relative.to_path_buf(), "")
    } else if exists(&built) {
        (built.canonicalize().unwrap_or(built), "")
    } else {
        (
            relative.to_path_buf(),
            "\n  (run it in a checkout of the source repository: keys-example/demo-connector.secret holds \
             the demo connector's public development secret)",
        )
    };
    format!(
        "Embedded development default. Get a token with:\n  curl -s -u \"demo-connector:$(cat {})\" -d \
         grant_type=client_credentials http://{bound}/token{note}",
        file.display()
    )
}

fn keygen(args: KeygenArgs) -> Result<(), CliError> {
    let alg = match args.alg.parse::<Algorithm>() {
        Ok(alg @ (Algorithm::ES256 | Algorithm::EdDSA)) => alg,
        Ok(other) => {
            return Err(CliError::Usage(format!(
                "cannot generate {other} keys here; use ES256 or EdDSA (RSA keys: create them with OpenSSL or in KMS)"
            )))
        }
        Err(e) => return Err(CliError::Usage(format!("--alg: {e}"))),
    };
    let (signer, pem) = LocalSigner::generate(alg).map_err(CliError::failed)?;
    let jwk = serde_json::Value::Object(signer.verifying_key().to_jwk()).to_string();
    match args.out {
        Some(path) => {
            write_private(&path, pem.as_str())
                .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
            println!("{jwk}");
        }
        None => {
            print!("{}", pem.as_str());
            eprintln!("{jwk}");
        }
    }
    Ok(())
}

/// Creates `path` readable by its owner only, refusing to overwrite.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

fn add_connector(args: ConnectorAddArgs) -> Result<(), CliError> {
    let secret =
        connectors::new_secret().map_err(|_| CliError::failed("the random number generator failed"))?;
    let mut entry = toml::Table::new();
    entry.insert("id".into(), args.id.clone().into());
    entry.insert(
        "secret_sha256".into(),
        connectors::secret_digest_hex(&secret).into(),
    );
    entry.insert("audiences".into(), args.audiences.clone().into());
    entry.insert("scopes".into(), args.scopes.clone().into());
    let attributes: toml::Table = args.attributes.into_iter().map(|(k, v)| (k, v.into())).collect();
    entry.insert("attributes".into(), attributes.into());
    let mut doc = toml::Table::new();
    doc.insert("connectors".into(), toml::Value::Array(vec![entry.into()]));
    let text = toml::to_string(&doc).unwrap_or_default();
    println!(
        "# Client secret for {:?}: shown once, store it in the connector's secret store:",
        args.id
    );
    println!("#   {}", secret.as_str());
    println!("# Add this to the server config (only the digest is stored):");
    print!("{text}");
    Ok(())
}

fn issue(path: Option<PathBuf>, args: IssueArgs) -> Result<(), CliError> {
    let config = load(path, &Overrides::default())?;
    let signer = match &args.key {
        Some(key) => std::fs::read_to_string(key)
            .map_err(|e| format!("cannot read {}: {e}", key.display()))
            .and_then(|pem| LocalSigner::from_pem(&pem).map_err(|e| e.to_string())),
        None => match &config.signing {
            SigningConfig::Local(key) => key.signer().map_err(|e| e.to_string()),
            SigningConfig::Kms(_) | SigningConfig::KmsEnvelope(_) => Err(
                "`issue` signs with a local key: pass --key FILE (the config in force signs with KMS)".into(),
            ),
        },
    }
    .map_err(CliError::Usage)?;
    let issuer_url = args.issuer.unwrap_or_else(|| config.issuer.clone());
    let issuer = Issuer::new(
        issuer_url,
        Arc::new(KeySet::single(Arc::new(signer))),
        config.lifetime,
    )
    .map_err(CliError::usage)?;
    let mut request = TokenRequest::new(args.subject, args.audience);
    request.scope = args.scope;
    request.ttl = args.ttl.map(Duration::from_secs);
    let issued = runtime()?
        .block_on(issuer.issue(&request))
        .map_err(CliError::failed)?;
    println!("{}", issued.token.as_str());
    Ok(())
}

fn check_config(path: Option<PathBuf>) -> Result<(), CliError> {
    let config = load(path, &Overrides::default()).map_err(CliError::InvalidConfig)?;
    println!(
        "config OK ({}): issuer {}, listen {}, {} connector(s), tokens {} s (max {} s)",
        config.origin,
        config.issuer,
        config.listen,
        config.connectors.len(),
        config.lifetime.default_ttl().as_secs(),
        config.lifetime.max_ttl().as_secs()
    );
    match config.metrics_listen {
        Some(addr) => println!("metrics: GET /metrics on {addr} (not on the public listener)"),
        None => println!(
            "metrics: no [metrics] section, so no metrics listener (set [metrics] listen = \"ADDR\")"
        ),
    }
    for line in explain_upstream(&config) {
        println!("{line}");
    }
    for line in explain_dpop(&config) {
        println!("{line}");
    }
    if let Some(problem) = config.fleet_replay_problem() {
        println!("note: in Lambda mode (the bootstrap binary) this config refuses to start: {problem}");
    }
    if let Some(set) = config.signing.key_set() {
        println!(
            "key set: {} read every {} s; the server refuses to start if its token lifetime ({} s), JWKS \
             max-age ({} s) or poll interval exceed the set's (`oidc-server keys show`)",
            set.secret,
            set.poll_interval.as_secs(),
            config.lifetime.max_ttl().as_secs(),
            config.http.jwks_max_age.as_secs()
        );
        // Durations go down to 1 s for tests; production wants more.
        let timings = crate::keyset::document::Timings {
            max_token_lifetime: config.lifetime.max_ttl(),
            jwks_max_age: config.http.jwks_max_age,
            poll_interval: set.poll_interval,
            leeway: set.leeway,
            rotation_window: crate::keyset::document::Timings::DEFAULT_ROTATION_WINDOW,
        };
        for warning in timings.warnings() {
            println!("warning: {warning}");
        }
    }
    Ok(())
}

/// `check-config`'s lines on DPoP: which connectors require proofs, what
/// a proof must be, whether server nonces are on and what the replay
/// store means for proofs.
fn explain_dpop(config: &Config) -> Vec<String> {
    let dpop = &config.dpop;
    let required: Vec<&str> = config
        .connectors
        .iter()
        .filter(|c| c.dpop == oidc_core::dpop::DpopMode::Required)
        .map(|c| c.id.as_str())
        .collect();
    let algorithms: Vec<&str> = dpop.algorithms.iter().map(|a| a.name()).collect();
    let mut lines = vec![format!(
        "dpop: a DPoP proof on POST /token binds the token to the proof's key (cnf.jkt, token_type DPoP); \
         proofs for POST {}/token signed with {}, iat at most {} s old; {}",
        config.issuer,
        algorithms.join(", "),
        dpop.iat_window.as_secs(),
        if required.is_empty() {
            "no connector requires one (dpop = \"required\" on a connector does)".to_owned()
        } else {
            format!(
                "required by {} connector(s) ({}): without a proof they get invalid_dpop_proof, never a bearer token",
                required.len(),
                required.join(", ")
            )
        }
    )];
    match (&dpop.nonces, &dpop.nonce_key_source) {
        (Some(nonces), source) => lines.push(format!(
            "dpop: server nonces on (key from {}, step {} s): a proof without a current nonce gets use_dpop_nonce \
             and a DPoP-Nonce to retry with; every replica must have the same key",
            source.as_deref().unwrap_or("config"),
            nonces.step_secs()
        )),
        (None, _) => lines.push(
            "dpop: no server nonces (set [dpop] nonce_key_file or nonce_key_env, the same key on every replica, to \
             require them)"
                .to_owned(),
        ),
    }
    let store = match config.replay {
        ReplayConfig::Memory => {
            "in this process only ([replay] store = \"memory\"): a proof replayed at another \
                                 replica within its window would be accepted there"
                .to_owned()
        }
        ReplayConfig::DynamoDb { ref table, .. } => {
            format!("fleet-wide in DynamoDB table {table} (dpop# keys): a proof is accepted once across every replica")
        }
    };
    lines.push(format!("dpop: proof jtis are remembered {store}"));
    lines
}

/// `check-config`'s lines on `[[upstream_issuers]]`: what each entry
/// accepts, where its keys come from, who it is bound to, and what to
/// watch.
fn explain_upstream(config: &Config) -> Vec<String> {
    use oidc_core::verify::trust::IssuerKeys;
    let mut lines = Vec::new();
    for (index, upstream) in config.upstream_issuers.iter().enumerate() {
        let entry = &upstream.entry;
        let policy = entry.policy();
        let keys = match entry.keys() {
            IssuerKeys::Discovery => format!(
                "keys by discovery ({}/.well-known/openid-configuration), fetched at its first exchange and cached",
                entry.issuer()
            ),
            IssuerKeys::JwksUri(url) => format!("keys from {url}, fetched at its first exchange and cached"),
            IssuerKeys::Pinned(set) => format!("{} pinned key(s), never fetched", set.len()),
            _ => "keys as configured".to_owned(),
        };
        let algorithms = match policy.algorithms() {
            Some(algs) => algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "),
            None => "each key's own (a key without alg is refused)".to_owned(),
        };
        let types: Vec<&str> = policy
            .types()
            .iter()
            .map(|t| if t.is_empty() { "(none)" } else { t.as_str() })
            .collect();
        let age = match policy.max_token_age_secs() {
            Some(secs) => format!(", issued at most {secs} s before"),
            None => String::new(),
        };
        let reuse = if upstream.one_time_use {
            "each token exchanged once (recorded in the replay store until its exp)"
        } else {
            "tokens reusable until their exp (one_time_use = false)"
        };
        let bound: Vec<&str> = config
            .connectors
            .iter()
            .filter(|c| c.federated.iter().any(|b| b.issuer == entry.name()))
            .map(|c| c.id.as_str())
            .collect();
        lines.push(format!(
            "upstream issuer {} (upstream_issuers[{index}]): iss {}; aud one of {}; algorithms {algorithms}; typ {}; \
             lifetime at most {} s{age}; tokens up to {} bytes; {reuse}; {keys}; bound to {} connector(s){}",
            entry.name(),
            entry.issuer(),
            policy.audiences().join(", "),
            types.join(", "),
            policy.max_lifetime_secs(),
            policy.max_token_len(),
            bound.len(),
            if bound.is_empty() {
                String::new()
            } else {
                format!(" ({})", bound.join(", "))
            },
        ));
        if bound.is_empty() {
            lines.push(format!(
                "note: no connector binds upstream issuer {}: its tokens are refused (add federated = [{{ issuer = {:?}, \
                 subject = \"...\" }}] to a connector)",
                entry.name(),
                entry.name()
            ));
        }
        if !upstream.one_time_use && policy.max_token_age_secs().is_none() {
            lines.push(format!(
                "warning: upstream issuer {} has one_time_use = false and no max_token_age_secs: each of its tokens \
                 can be exchanged again and again until its exp; bound the age (a Kubernetes projected token: \
                 max_token_age_secs = 3600 or the token's expirationSeconds)",
                entry.name()
            ));
        }
    }
    if !config.upstream_issuers.is_empty() {
        let limit = config.http.body_limit_bytes;
        let largest = config
            .upstream_issuers
            .iter()
            .map(|u| u.entry.policy().max_token_len())
            .max()
            .unwrap_or(0);
        // A token is form-encoded: base64url and dots need no escaping, so
        // the body is the token plus the other parameters.
        if largest + 1024 > limit {
            lines.push(format!(
                "warning: [http] body_limit_bytes = {limit} leaves no room for the largest upstream token accepted \
                 ({largest} bytes) and the other parameters: raise it to at least {}",
                largest + 1024
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_args(std::iter::once("oidc-server").chain(args.iter().copied()))
    }

    #[test]
    fn serve_is_the_default_command_with_its_flags() {
        let cli = parse(&[
            "--listen",
            "127.0.0.1:9",
            "--issuer",
            "https://i.example",
            "--kms-key-id",
            "k",
        ])
        .expect("serve's flags without `serve`");
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(cli.serve.kms_key_id.as_deref(), Some("k"));
        let cli = parse(&["--config", "c.toml", "serve", "--listen", "127.0.0.1:9"]).expect("with `serve`");
        assert!(
            matches!(cli.command, Some(Command::Serve(ref a)) if a.listen.as_deref() == Some("127.0.0.1:9"))
        );
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("c.toml")));
        // --config stays global; serve's flags do not reach other commands.
        assert!(parse(&["--config", "c.toml", "check-config"]).is_ok());
        assert!(parse(&["keys", "show", "--config", "c.toml"]).is_ok());
        let refused = parse(&["--listen", "127.0.0.1:9", "keygen"]).expect_err("serve's flag before keygen");
        assert!(
            refused.to_string().contains("--listen is a flag of `serve`"),
            "{refused}"
        );
        // Before and after `serve`: its own win.
        let cli = parse(&[
            "--listen",
            "127.0.0.1:1",
            "--issuer",
            "https://i.example",
            "serve",
            "--listen",
            "127.0.0.1:2",
        ])
        .expect("both");
        match cli.command {
            Some(Command::Serve(a)) => {
                assert_eq!(a.listen.as_deref(), Some("127.0.0.1:2"));
                assert_eq!(a.issuer.as_deref(), Some("https://i.example"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_demo_curl_names_a_secret_file_that_is_there_or_says_where_it_comes_from() {
        let bound: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("address");
        // In a checkout (cargo run from its root): the short relative path.
        let here = demo_curl(bound, |p| {
            p == std::path::Path::new("keys-example/demo-connector.secret")
        });
        assert!(
            here.contains("$(cat keys-example/demo-connector.secret)"),
            "{here}"
        );
        // An installed binary or an image: no path of the build machine.
        let installed = demo_curl(bound, |_| false);
        assert!(!installed.contains(config::KEYS_EXAMPLE_DIR), "{installed}");
        assert!(
            installed.contains("$(cat keys-example/demo-connector.secret)"),
            "{installed}"
        );
        assert!(
            installed.contains("checkout of the source repository"),
            "{installed}"
        );
        // Neither prints the secret itself.
        let secret = include_str!("../../../keys-example/demo-connector.secret").trim();
        assert!(!here.contains(secret) && !installed.contains(secret));
    }
}
