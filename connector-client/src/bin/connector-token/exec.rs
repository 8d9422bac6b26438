//! `exec`: keep a token file fresh while a command runs with
//! `CONNECTOR_TOKEN_FILE` set; pass signals on to it and exit with its status.
//!
//! The command runs in its own process group, and signals are sent to that
//! group (as dumb-init does), so a shell wrapper's children get them too.
//! Once it exits, the token file is removed (it was the only reader) and the
//! agent exits with the command's code, or 128 + the signal that killed it.

use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use connector_client::cli::connector_token::{ExecArgs, INFO_FILE_VAR, TOKEN_FILE_VAR};
use connector_client::cli::{self, EXIT_FAILURE, EXIT_USAGE};
use connector_client::FileSink;
use rustix::process::{Pid, Signal};

use crate::agent::{self, fail};
use crate::signals::{self, Signals};

pub(crate) async fn run(args: ExecArgs) -> ExitCode {
    let mut signals = match Signals::new(&signals::FORWARDED) {
        Ok(signals) => signals,
        Err(e) => return fail(EXIT_FAILURE, &format!("cannot handle signals: {e}")),
    };
    let Some((program, program_args)) = args.command.split_first() else {
        return fail(EXIT_USAGE, "no command to run (give it after --)");
    };
    let private = match &args.out {
        Some(_) => None,
        None => match PrivateDir::create() {
            Ok(dir) => Some(dir),
            Err(e) => return fail(EXIT_FAILURE, &format!("cannot create a private folder: {e}")),
        },
    };
    let out = match (&args.out, &private) {
        (Some(out), _) => out.clone(),
        (None, Some(dir)) => dir.0.join("token"),
        (None, None) => return fail(EXIT_FAILURE, "no token file"),
    };
    // The command may change its working directory: give it an absolute path.
    let out = std::path::absolute(&out).unwrap_or(out);
    let file = match args.file.token_file(out) {
        Ok(file) => file,
        Err(e) => return fail(EXIT_USAGE, &cli::one_line(&e)),
    };
    let (tokens, file) = match agent::start(&args.credentials, file).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let mut sink = FileSink::spawn(tokens, file.clone());

    // Wait for the first token: the command starts with a valid token file.
    loop {
        tokio::select! {
            () = sink.holding() => break,
            signal = signals.recv() => {
                if signals::STOP.contains(&signal) || signal == Signal::QUIT {
                    tracing::info!(signal = signals::name(signal), "stopping before the command started");
                    sink.stop().await;
                    agent::remove(&file);
                    return ExitCode::from(signals::exit_status(signal.as_raw()));
                }
            }
        }
    }

    let mut command = tokio::process::Command::new(program);
    command
        .args(program_args)
        .env(TOKEN_FILE_VAR, file.path())
        .process_group(0);
    match file.info_path() {
        Some(info) => command.env(INFO_FILE_VAR, info),
        None => command.env_remove(INFO_FILE_VAR),
    };
    let name = Path::new(program).display().to_string();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            sink.stop().await;
            agent::remove(&file);
            // As shells do: 127 for a command not found, 126 for one that cannot run.
            let code = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return fail(code, &format!("cannot run {name}: {e}"));
        }
    };
    let id = child.id();
    let pid = id.and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw);
    tracing::info!(command = %name, pid = id.unwrap_or(0), "command started");

    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            signal = signals.recv() => {
                if let Some(pid) = pid {
                    forward(pid, signal);
                }
            }
        }
    };
    sink.stop().await;
    agent::remove(&file);
    drop(private);
    match status {
        Ok(status) => {
            let code = match (status.code(), status.signal()) {
                (Some(code), _) => u8::try_from(code).unwrap_or(u8::MAX),
                (None, Some(signal)) => signals::exit_status(signal),
                (None, None) => EXIT_FAILURE,
            };
            tracing::info!(command = %name, %status, "command exited");
            ExitCode::from(code)
        }
        Err(e) => fail(EXIT_FAILURE, &format!("cannot wait for {name}: {e}")),
    }
}

/// Sends `signal` to the command's process group (the command leads it).
fn forward(pid: Pid, signal: Signal) {
    let sent = rustix::process::kill_process_group(pid, signal)
        // The command may have left its group: reach it at least.
        .or_else(|_| rustix::process::kill_process(pid, signal));
    match sent {
        Ok(()) => tracing::info!(signal = signals::name(signal), "signal passed on to the command"),
        // It has exited already; its status comes next.
        Err(rustix::io::Errno::SRCH) => {}
        Err(e) => tracing::warn!(signal = signals::name(signal), error = %e, "cannot pass the signal on"),
    }
}

/// A folder only this user can enter, for the token file; removed when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create() -> io::Result<Self> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let mut attempts = 0;
        loop {
            let dir = base.join(format!(
                "connector-token-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Self(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove the private folder");
        }
    }
}
