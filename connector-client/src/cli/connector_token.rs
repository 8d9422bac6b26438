//! The command line of the `connector-token` binary: its clap definitions
//! only (what it does with them is the binary's). They live in the library
//! so that tests outside the binary (the workspace's documentation tests)
//! parse documented command lines with the real parser. Not a stable
//! interface.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::Credentials;
use crate::{FileMode, Owner, TokenFile, TokenFileError};

/// The program's name, in messages.
pub const PROGRAM: &str = "connector-token";

/// The variable that tells the command of `exec` where its token is (also
/// `--out`'s variable).
pub const TOKEN_FILE_VAR: &str = "CONNECTOR_TOKEN_FILE";
/// The variable naming the info file for the command of `exec`, when there
/// is one (also `--info-file`'s variable).
pub const INFO_FILE_VAR: &str = "CONNECTOR_TOKEN_INFO_FILE";

/// A fresh connector identity token: printed once, kept in a file, or handed
/// to a command.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version)]
pub struct Cli {
    /// Log format on stderr (RUST_LOG sets the filter; default: info).
    #[arg(
        long,
        global = true,
        env = "CONNECTOR_TOKEN_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Get one token and print {"access_token": ..., "expires_in": ...}.
    Get(GetArgs),
    /// Keep a token file fresh until SIGTERM or SIGINT.
    Agent(AgentArgs),
    /// Keep a token file fresh while COMMAND runs with CONNECTOR_TOKEN_FILE
    /// set; forward signals to it and exit with its status.
    Exec(ExecArgs),
    /// Print one DPoP proof (RFC 9449) for a request, signed with a key file
    /// (what `--dpop-key-out` writes), for shell scripts.
    Proof(ProofArgs),
}

/// `proof`.
#[derive(Debug, Args)]
pub struct ProofArgs {
    /// The request's method (`htm`), e.g. GET.
    #[arg(long, value_name = "METHOD")]
    pub htm: String,
    /// The request's URL (`htu`); a query or fragment is left out.
    #[arg(long, value_name = "URL")]
    pub htu: String,
    /// A file holding the access token the proof goes with (`ath`), e.g.
    /// the agent's token file.
    #[arg(long, value_name = "PATH", conflicts_with = "access_token_env")]
    pub token_file: Option<PathBuf>,
    /// The name of an environment variable holding the access token (`ath`).
    #[arg(long, value_name = "VAR")]
    pub access_token_env: Option<String>,
    /// The PKCS#8 PEM DPoP key to sign with.
    #[arg(long, env = "CONNECTOR_DPOP_KEY_FILE", value_name = "PATH")]
    pub dpop_key: PathBuf,
    /// The server's nonce (its last DPoP-Nonce header).
    #[arg(long, value_name = "NONCE")]
    pub nonce: Option<String>,
}

/// `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Where the token comes from.
    #[command(flatten)]
    pub credentials: Credentials,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The token file to keep fresh.
    #[arg(long, env = TOKEN_FILE_VAR, value_name = "PATH")]
    pub out: PathBuf,
    /// Leave the token file in place on exit. By default it is removed, since
    /// nothing keeps it fresh any more.
    #[arg(long, env = "CONNECTOR_TOKEN_KEEP_ON_EXIT")]
    pub keep_on_exit: bool,
    /// How the files are written.
    #[command(flatten)]
    pub file: FileOptions,
    /// Where the token comes from.
    #[command(flatten)]
    pub credentials: Credentials,
}

/// How the token file (and the DPoP key file) is written: `agent`'s and
/// `exec`'s.
#[derive(Debug, Args)]
pub struct FileOptions {
    /// Mode of the token file and the info file (octal), set on every write;
    /// the files never exist with wider permissions.
    #[arg(long, env = "CONNECTOR_TOKEN_MODE", default_value = "0600")]
    pub mode: FileMode,
    /// Owner of the files, UID or UID:GID (numeric), set on every write. Needs
    /// root or CAP_CHOWN for another user.
    #[arg(long, env = "CONNECTOR_TOKEN_OWNER", value_name = "UID[:GID]")]
    pub owner: Option<Owner>,
    /// The info file, with the token's expiry and scheme as JSON
    /// ({"expires_at": RFC 3339, "expires_at_unix": seconds, "token_type":
    /// "Bearer"|"DPoP", "scope": ...}) [default: PATH.json].
    #[arg(long, env = INFO_FILE_VAR, value_name = "PATH")]
    pub info_file: Option<PathBuf>,
    /// Write no info file.
    #[arg(long, env = "CONNECTOR_TOKEN_NO_INFO_FILE", conflicts_with = "info_file")]
    pub no_info_file: bool,
    /// With --dpop or --dpop-key: write the DPoP private key (PKCS#8 PEM) to
    /// PATH, with the token file's mode and owner (default 0600) and the
    /// same atomic write, before the first token, so that a connector in
    /// another language signs its proofs with it. Removed on exit like the
    /// token file (unless it is the --dpop-key file).
    #[arg(
        long,
        env = "CONNECTOR_DPOP_KEY_OUT",
        value_name = "PATH",
        requires = "dpop_on"
    )]
    pub dpop_key_out: Option<PathBuf>,
}

impl FileOptions {
    /// The key file of `--dpop-key-out`, if given: these options' mode and
    /// owner, no info file.
    pub fn dpop_key_file(&self) -> Result<Option<TokenFile>, TokenFileError> {
        let Some(path) = &self.dpop_key_out else {
            return Ok(None);
        };
        let mut file = TokenFile::new(path.clone())?.mode(self.mode).info_file(None);
        if let Some(owner) = self.owner {
            file = file.owner(owner);
        }
        Ok(Some(file))
    }

    /// The token file at `out`, written as these options say.
    pub fn token_file(&self, out: PathBuf) -> Result<TokenFile, TokenFileError> {
        let mut file = TokenFile::new(out)?.mode(self.mode);
        if let Some(owner) = self.owner {
            file = file.owner(owner);
        }
        if self.no_info_file {
            file = file.info_file(None);
        } else if let Some(info) = &self.info_file {
            file = file.info_file(Some(info.clone()));
        }
        Ok(file)
    }
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The token file [default: a private folder (mode 0700) under
    /// XDG_RUNTIME_DIR or the temporary folder, removed at exit].
    #[arg(long, env = TOKEN_FILE_VAR, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// How the files are written.
    #[command(flatten)]
    pub file: FileOptions,
    /// Where the token comes from.
    #[command(flatten)]
    pub credentials: Credentials,
    /// The command to run (after `--`), and its arguments.
    #[arg(last = true, required = true, num_args = 1.., value_name = "COMMAND")]
    pub command: Vec<OsString>,
}
