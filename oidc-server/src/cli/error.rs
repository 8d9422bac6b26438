//! How a command ends when it does not succeed: each outcome with its exit
//! code and the one way it is printed, in one place ([`super::run`]).

use std::fmt;

use crate::config::ConfigError;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a token was rejected (verify) or the command failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// A command that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Bad arguments or configuration: `error: …` on stderr, exit 2.
    Usage(String),
    /// The command could not do its job (a service failed, a file could not
    /// be written, the rules refused a step): `error: …`, exit 1.
    Failed(String),
    /// `verify` refused the token: `rejected: REASON`, exit 1.
    Rejected(String),
    /// `check-config` found problems: the report as it is, exit 2.
    InvalidConfig(ConfigError),
}

impl CliError {
    /// `Usage` from anything displayable.
    pub fn usage(e: impl fmt::Display) -> Self {
        Self::Usage(e.to_string())
    }

    /// `Failed` from anything displayable.
    pub fn failed(e: impl fmt::Display) -> Self {
        Self::Failed(e.to_string())
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::InvalidConfig(_) => EXIT_USAGE,
            Self::Failed(_) | Self::Rejected(_) => EXIT_FAILURE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) | Self::Failed(message) => write!(f, "error: {message}"),
            Self::Rejected(reason) => write!(f, "rejected: {reason}"),
            Self::InvalidConfig(e) => write!(f, "{e}"),
        }
    }
}

impl From<ConfigError> for CliError {
    /// A configuration that cannot be loaded is a usage error of the command.
    fn from(e: ConfigError) -> Self {
        Self::usage(e)
    }
}
