//! `exec`: keep a token file fresh while a command runs with
//! `CONNECTOR_TOKEN_FILE` set; pass signals on to it and exit with its status.
//!
//! The command runs in its own process group, and signals are sent to that
//! group (as dumb-init does), so a shell wrapper's children get them too.
//! Except at a terminal: a new process group is a background group there,
//! and a command reading the terminal from it would be stopped (`SIGTTIN`).
//! When stdin is a terminal the command stays in exec's (foreground) group,
//! so it reads the terminal and job control (Ctrl-Z, `fg`) works on the
//! whole job; signals are then sent to the command alone (sending them to
//! the group would send them to exec too).
//!
//! exec is a child subreaper (Linux), as it is anyway as a container's PID 1:
//! processes orphaned under the command are re-parented to it, and it reaps
//! every child that exits, so none is left a zombie. It is the only one
//! waiting for its children (the command is spawned with std, which never
//! waits by itself, and exec starts no other process), so it reaps with
//! `wait(-1)` and keeps the status when the pid is the command's.
//!
//! Once the command exits, the token file (and the key file of
//! `--dpop-key-out`, as `agent` removes it) is removed (it was the only
//! reader) and the agent exits with the command's code, or 128 + the signal
//! that killed it.

use std::io::{self, IsTerminal as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use connector_client::cli::connector_token::{ExecArgs, INFO_FILE_VAR, TOKEN_FILE_VAR};
use connector_client::cli::{EXIT_FAILURE, EXIT_USAGE};
use connector_client::FileSink;
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};

use crate::agent::{self, fail};
use crate::signals::{self, Signals};

pub(crate) async fn run(args: ExecArgs) -> ExitCode {
    let mut signals = match Signals::new(&signals::FORWARDED) {
        Ok(signals) => signals,
        Err(e) => return fail(EXIT_FAILURE, &format!("cannot handle signals: {e}")),
    };
    // Registered before any child exists, so that no exit goes unnoticed.
    let mut exits = match Signals::new(&[Signal::CHILD]) {
        Ok(signals) => signals,
        Err(e) => return fail(EXIT_FAILURE, &format!("cannot handle signals: {e}")),
    };
    become_subreaper();
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
    let (tokens, files) = match agent::start(&args.credentials, &args.file, out).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let file = files.token.clone();
    let mut sink = FileSink::spawn(tokens, file.clone());

    // Wait for the first token: the command starts with a valid token file.
    loop {
        tokio::select! {
            () = sink.holding() => break,
            signal = signals.recv() => {
                if signals::STOP.contains(&signal) || signal == Signal::QUIT {
                    tracing::info!(signal = signals::name(signal), "stopping before the command started");
                    sink.stop().await;
                    files.remove();
                    return ExitCode::from(signals::exit_status(signal.as_raw()));
                }
            }
        }
    }

    // std, not Tokio: exec reaps its children itself (see the module docs).
    let mut command = std::process::Command::new(program);
    command.args(program_args).env(TOKEN_FILE_VAR, file.path());
    // At a terminal, a group of its own would be a background group.
    let own_group = !io::stdin().is_terminal();
    if own_group {
        command.process_group(0);
    }
    match file.info_path() {
        Some(info) => command.env(INFO_FILE_VAR, info),
        None => command.env_remove(INFO_FILE_VAR),
    };
    let name = Path::new(program).display().to_string();
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            sink.stop().await;
            files.remove();
            // As shells do: 127 for a command not found, 126 for one that cannot run.
            let code = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return fail(code, &format!("cannot run {name}: {e}"));
        }
    };
    let pid = Pid::from_child(&child);
    tracing::info!(command = %name, pid = child.id(), own_group, "command started");

    let status = loop {
        tokio::select! {
            _ = exits.recv() => match reap(pid) {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(e),
            },
            signal = signals.recv() => forward(pid, own_group, signal),
        }
    };
    sink.stop().await;
    files.remove();
    drop(private);
    match status {
        Ok(status) => {
            let code = match (status.exit_status(), status.terminating_signal()) {
                (Some(code), _) => u8::try_from(code).unwrap_or(u8::MAX),
                (None, Some(signal)) => signals::exit_status(signal),
                (None, None) => EXIT_FAILURE,
            };
            tracing::info!(command = %name, code, "command exited");
            ExitCode::from(code)
        }
        Err(e) => fail(EXIT_FAILURE, &format!("cannot wait for {name}: {e}")),
    }
}

/// Makes exec the reaper of processes orphaned under it (Linux; as PID 1 it
/// is one anyway).
fn become_subreaper() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        tracing::warn!(error = %e, "cannot become a child subreaper; orphans go to init");
    }
}

/// Reaps every child that has exited: orphans re-parented to exec, and the
/// command, whose status is returned once it has exited.
fn reap(command: Pid) -> io::Result<Option<WaitStatus>> {
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) if pid == command => return Ok(Some(status)),
            Ok(Some((pid, _))) => {
                tracing::debug!(pid = pid.as_raw_nonzero().get(), "reaped an orphaned process");
            }
            // Children left, none has exited.
            Ok(None) => return Ok(None),
            Err(rustix::io::Errno::INTR) => {}
            // No child at all: the command is gone and its status with it.
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends `signal` to the command's process group when it has one (it leads
/// it), else to the command.
fn forward(pid: Pid, own_group: bool, signal: Signal) {
    let sent = if own_group {
        rustix::process::kill_process_group(pid, signal)
            // The command may have left its group: reach it at least.
            .or_else(|_| rustix::process::kill_process(pid, signal))
    } else {
        rustix::process::kill_process(pid, signal)
    };
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
