//! `agent`: keep a token file fresh until SIGTERM or SIGINT; and the start-up
//! both `agent` and `exec` share.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use connector_client::cli::connector_token::{AgentArgs, FileOptions, PROGRAM};
use connector_client::cli::{self, Credentials, EXIT_FAILURE, EXIT_USAGE};
use connector_client::{CachedTokenSource, FileSink, TokenFile};

use crate::signals::{self, Signals};

pub(crate) async fn run(args: AgentArgs) -> ExitCode {
    // Registered first, so that a signal during start-up is not lost.
    let mut signals = match Signals::new(&signals::STOP) {
        Ok(signals) => signals,
        Err(e) => return fail(EXIT_FAILURE, &format!("cannot handle signals: {e}")),
    };
    let (tokens, files) = match start(&args.credentials, &args.file, args.out).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let sink = FileSink::spawn(tokens, files.token.clone());
    let signal = signals.recv().await;
    tracing::info!(signal = signals::name(signal), "stopping");
    sink.stop().await;
    if !args.keep_on_exit {
        files.remove();
    }
    ExitCode::SUCCESS
}

/// What `agent` and `exec` write: the token file and, with
/// `--dpop-key-out`, the DPoP key file.
pub(crate) struct Files {
    /// The token file (and its info file).
    pub(crate) token: Arc<TokenFile>,
    /// The key file of `--dpop-key-out`, unless it is the `--dpop-key`
    /// file the process was started with: that one is meant to outlive
    /// it, so it is not removed.
    key_to_remove: Option<TokenFile>,
}

impl Files {
    /// Removes the token file and the info file, and the key file written
    /// for this run, logging the outcome (at exit, once nothing else runs).
    pub(crate) fn remove(&self) {
        remove(&self.token, "token file");
        if let Some(key_file) = &self.key_to_remove {
            remove(key_file, "DPoP key file");
        }
    }
}

/// Checks the configuration and the files (the token file at `out` and the
/// key file of `--dpop-key-out`, written as `options` say), clears what an
/// earlier run left, writes the DPoP key to its file if asked, and starts
/// the cache (which fetches the first token at once). Configuration
/// problems are one line on stderr and exit status 2, before anything is
/// written.
pub(crate) async fn start(
    credentials: &Credentials,
    options: &FileOptions,
    out: PathBuf,
) -> Result<(CachedTokenSource, Files), ExitCode> {
    let file = options
        .token_file(out)
        .map_err(|e| fail(EXIT_USAGE, &cli::one_line(&e)))?;
    let key_out = options
        .dpop_key_file()
        .map_err(|e| fail(EXIT_USAGE, &cli::one_line(&e)))?;
    let dpop = credentials.dpop_key().map_err(|e| cli::report(PROGRAM, &e))?;
    let source = credentials
        .source_with(dpop.clone())
        .await
        .map_err(|e| cli::report(PROGRAM, &e))?;
    // Blocking file operations are fine here: nothing else runs yet.
    file.check().map_err(|e| fail(EXIT_USAGE, &cli::one_line(&e)))?;
    if let Some(key_file) = &key_out {
        key_file
            .check()
            .map_err(|e| fail(EXIT_USAGE, &cli::one_line(&e)))?;
    }
    match file.remove_leftovers() {
        Ok(true) => tracing::info!(
            path = %file.path().display(),
            "removed the token file of an earlier run (its token's age is unknown)"
        ),
        Ok(false) => {}
        Err(e) => return Err(fail(EXIT_FAILURE, &cli::one_line(&e))),
    }
    // The key first: a token bound to it is of no use to a reader without it.
    if let (Some(key_file), Some(key)) = (&key_out, &dpop) {
        key_file
            .write_contents(key.pem().as_str().as_bytes())
            .map_err(|e| fail(EXIT_FAILURE, &cli::one_line(&e)))?;
        tracing::info!(
            path = %key_file.path().display(),
            mode = %key_file.file_mode(),
            jkt = key.thumbprint(),
            "DPoP key written"
        );
    }
    let tokens = CachedTokenSource::new(source).map_err(|e| cli::report(PROGRAM, &e))?;
    let file = Arc::new(file);
    match (credentials.client_id(), credentials.subject_token()) {
        (Some(client_id), _) => tracing::info!(
            path = %file.path().display(),
            mode = %file.file_mode(),
            client_id,
            "keeping the token file fresh"
        ),
        (None, subject_token) => tracing::info!(
            path = %file.path().display(),
            mode = %file.file_mode(),
            subject_token = subject_token.as_deref().unwrap_or_default(),
            "keeping the token file fresh (token exchange)"
        ),
    }
    if let Some(key) = &dpop {
        tracing::info!(jkt = key.thumbprint(), "tokens are DPoP-bound");
    }
    let key_to_remove = key_out.filter(|key_file| credentials.dpop_key_file() != Some(key_file.path()));
    Ok((
        tokens,
        Files {
            token: file,
            key_to_remove,
        },
    ))
}

/// Removes `file` (and its info file), logging the outcome.
fn remove(file: &TokenFile, what: &str) {
    match file.remove() {
        Ok(true) => tracing::info!(path = %file.path().display(), "{what} removed"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "cannot remove the {what}"),
    }
}

/// Prints `connector-token: MESSAGE` and returns `code`.
pub(crate) fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("{PROGRAM}: {message}");
    ExitCode::from(code)
}
