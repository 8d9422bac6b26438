//! Documented command lines, parsed by the real command-line parsers:
//! `oidc-server` (its clap `Cli`, then the checks `main` applies),
//! `connector-token` (the clap definitions the binary uses) and the
//! `get-token` example (the shared `connector_client::cli::Credentials`).
//! Nothing runs: parsing makes no request and reads no file.
//!
//! How a documented line is read:
//! - `VAR=value` before the command sets the flag that reads `VAR` (the
//!   parsers never read the test's own environment);
//! - an argument that can come from a variable (`CONNECTOR_CLIENT_ID`, ...)
//!   may be left out, and so may any required one where the line says `...`;
//! - a placeholder value (an upper-case word such as `PATH` or `UID[:GID]`,
//!   or a shell variable such as `$ISSUER`) that its flag's parser refuses is
//!   dropped with its flag, and the rest of the line is parsed again.

use std::collections::BTreeSet;
use std::ffi::OsStr;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args as _, CommandFactory as _, FromArgMatches as _};

use super::shell::Tok;

/// The programs whose command lines the docs show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Program {
    OidcServer,
    ConnectorToken,
    GetToken,
}

impl Program {
    pub(super) fn name(self) -> &'static str {
        match self {
            Program::OidcServer => "oidc-server",
            Program::ConnectorToken => "connector-token",
            Program::GetToken => "get-token",
        }
    }

    /// The program's parser as the binary builds it (with its variables).
    fn command(self) -> clap::Command {
        match self {
            Program::OidcServer => oidc_server::cli::Cli::command(),
            Program::ConnectorToken => connector_client::cli::connector_token::Cli::command(),
            Program::GetToken => {
                connector_client::cli::Credentials::augment_args(clap::Command::new("get-token"))
            }
        }
    }
}

/// The parsers, built once.
pub(super) struct Parsers {
    /// With their variables, to look arguments up (built: global flags
    /// propagated to subcommands).
    full: Vec<(Program, clap::Command)>,
    /// Without variables, to parse.
    hermetic: Vec<(Program, clap::Command)>,
}

impl Parsers {
    pub(super) fn new() -> Parsers {
        let programs = [Program::OidcServer, Program::ConnectorToken, Program::GetToken];
        let full = programs
            .iter()
            .map(|p| {
                let mut command = p.command();
                command.build();
                (*p, command)
            })
            .collect();
        let hermetic = programs.iter().map(|p| (*p, without_env(p.command()))).collect();
        Parsers { full, hermetic }
    }

    fn full(&self, program: Program) -> &clap::Command {
        &self
            .full
            .iter()
            .find(|(p, _)| *p == program)
            .expect("every program")
            .1
    }

    fn hermetic(&self, program: Program) -> clap::Command {
        self.hermetic
            .iter()
            .find(|(p, _)| *p == program)
            .expect("every program")
            .1
            .clone()
    }

    /// Every variable any argument of any program reads.
    pub(super) fn variables(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (_, command) in &self.full {
            for_each_command(command, &mut |c| {
                for arg in c.get_arguments() {
                    if let Some(env) = arg.get_env() {
                        names.insert(env.to_string_lossy().into_owned());
                    }
                }
            });
        }
        names
    }

    /// Does some argument of some program have the long flag `flag`, and
    /// does it read `variable`? `Err` says what the parsers have instead.
    pub(super) fn flag_reads(&self, flag: &str, variable: &str) -> Result<(), String> {
        let long = flag.trim_start_matches("--");
        let mut found = BTreeSet::new();
        for (program, command) in &self.full {
            for_each_command(command, &mut |c| {
                for arg in c.get_arguments().filter(|a| a.get_long() == Some(long)) {
                    found.insert((
                        program.name(),
                        arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                    ));
                }
            });
        }
        if found.is_empty() {
            return Err(format!("no program has a flag {flag}"));
        }
        if found.iter().any(|(_, env)| env.as_deref() == Some(variable)) {
            return Ok(());
        }
        Err(format!("{flag} does not read {variable} (it reads {found:?})"))
    }

    /// Parses one documented command line of `program`: `args` after the
    /// program's name, `env` the variables set before it, `elided` when the
    /// line says `...`.
    pub(super) fn check(
        &self,
        program: Program,
        args: &[String],
        env: &[(String, String)],
        elided: bool,
    ) -> Result<(), String> {
        let mut argv: Vec<String> = std::iter::once(program.name().to_owned())
            .chain(args.iter().cloned())
            .collect();
        let path = subcommand_path(self.full(program), &argv);
        let resolved = resolve(self.full(program), &path);
        // A variable becomes its flag (unless the line gives the flag too).
        for (name, value) in env {
            let arg = resolved
                .get_arguments()
                .find(|a| a.get_env() == Some(OsStr::new(name)) && a.get_long().is_some());
            let Some(arg) = arg else { continue };
            let long = format!("--{}", arg.get_long().unwrap_or_default());
            if argv
                .iter()
                .any(|w| w == &long || w.starts_with(&format!("{long}=")))
            {
                continue;
            }
            let flag = if arg.get_action().takes_values() {
                Some(format!("{long}={value}"))
            } else {
                (value == "true" || value == "1").then_some(long)
            };
            if let Some(flag) = flag {
                let at = argv.iter().position(|w| w == "--").unwrap_or(argv.len());
                argv.insert(at, flag);
            }
        }
        loop {
            let error = match self.parse(program, &argv) {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => return Ok(()),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
                    let value = match error.get(ContextKind::InvalidValue) {
                        Some(ContextValue::String(value)) => value.clone(),
                        _ => String::new(),
                    };
                    match placeholder_at(&argv, &value) {
                        Some(at) => {
                            let with_flag = argv[at].contains('=') || at > 0 && argv[at - 1].starts_with('-');
                            let start = if with_flag && !argv[at].contains('=') {
                                at - 1
                            } else {
                                at
                            };
                            argv.drain(start..=at);
                        }
                        None => return Err(first_line(&error)),
                    }
                }
                ErrorKind::MissingRequiredArgument => {
                    let missing = match error.get(ContextKind::InvalidArg) {
                        Some(ContextValue::Strings(args)) => args.clone(),
                        _ => Vec::new(),
                    };
                    let from_env = |shown: &String| {
                        let long = shown
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .trim_start_matches("--");
                        resolved
                            .get_arguments()
                            .any(|a| a.get_long() == Some(long) && a.get_env().is_some())
                    };
                    if elided || (!missing.is_empty() && missing.iter().all(from_env)) {
                        return Ok(());
                    }
                    return Err(first_line(&error));
                }
                _ => return Err(first_line(&error)),
            }
        }
    }

    /// The names in a command line mentioned in prose: its subcommands exist
    /// and so do its `--flags` (values and required flags are left to the
    /// prose around it).
    pub(super) fn check_names(&self, program: Program, args: &[String]) -> Result<(), String> {
        let mut current = self.full(program);
        let mut path = vec![program.name().to_owned()];
        let mut value_next = false;
        for word in args {
            if word == "--" {
                break;
            }
            if let Some(long) = word.strip_prefix("--") {
                let (long, attached) = match long.split_once('=') {
                    Some((long, _)) => (long, true),
                    None => (long, false),
                };
                let arg = current.get_arguments().find(|a| a.get_long() == Some(long));
                let Some(arg) = arg else {
                    return Err(format!("`{}` has no flag --{long}", path.join(" ")));
                };
                value_next = !attached && arg.get_action().takes_values();
            } else if std::mem::take(&mut value_next) {
                continue;
            } else if let Some(sub) = current.find_subcommand(word) {
                current = sub;
                path.push(sub.get_name().to_owned());
            } else if current.has_subcommands() && current.get_positionals().next().is_none() {
                return Err(format!("`{}` has no subcommand {word}", path.join(" ")));
            }
        }
        Ok(())
    }

    /// clap's parser, then what `main` checks after it.
    fn parse(&self, program: Program, argv: &[String]) -> Result<(), clap::Error> {
        let matches = self.hermetic(program).try_get_matches_from(argv)?;
        match program {
            Program::OidcServer => {
                oidc_server::cli::Cli::from_arg_matches(&matches)?.checked()?;
            }
            Program::ConnectorToken => {
                connector_client::cli::connector_token::Cli::from_arg_matches(&matches)?;
            }
            Program::GetToken => {
                connector_client::cli::Credentials::from_arg_matches(&matches)?;
            }
        }
        Ok(())
    }
}

/// `command` and every subcommand under it.
fn for_each_command(command: &clap::Command, f: &mut impl FnMut(&clap::Command)) {
    f(command);
    for sub in command.get_subcommands() {
        for_each_command(sub, f);
    }
}

/// `command` with no argument reading a variable, all the way down.
fn without_env(command: clap::Command) -> clap::Command {
    command
        .mut_args(|a| a.env(None::<&'static str>))
        .mut_subcommands(without_env)
}

/// The subcommands `argv` names, in order.
fn subcommand_path(command: &clap::Command, argv: &[String]) -> Vec<String> {
    let mut path = Vec::new();
    let mut current = command;
    for word in argv.iter().skip(1) {
        if word == "--" {
            break;
        }
        if let Some(sub) = current.find_subcommand(word) {
            path.push(sub.get_name().to_owned());
            current = sub;
        }
    }
    path
}

fn resolve<'a>(command: &'a clap::Command, path: &[String]) -> &'a clap::Command {
    path.iter()
        .fold(command, |c, name| c.find_subcommand(name).expect("found before"))
}

/// Where `value` is in `argv` (alone, or after `--flag=`), if it is a
/// placeholder: an upper-case word (`PATH`, `UID[:GID]`, `K=V`, `ARGS...`)
/// or a shell variable (`$ISSUER`, `$ISSUER/token`).
fn placeholder_at(argv: &[String], value: &str) -> Option<usize> {
    if !is_placeholder(value) {
        return None;
    }
    argv.iter().rposition(|w| {
        w == value
            || w.split_once('=')
                .is_some_and(|(flag, v)| flag.starts_with("--") && v == value)
    })
}

pub(super) fn is_placeholder(word: &str) -> bool {
    word.starts_with('$')
        || word.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "_[]:=.-".contains(c))
}

fn first_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A simple command that runs one of ours.
pub(super) struct Invocation<'a> {
    pub(super) program: Program,
    /// `NAME=value` set before it.
    pub(super) env: Vec<(String, String)>,
    /// Its arguments.
    pub(super) args: &'a [Tok],
}

/// The program a simple command runs, the variables set before it, and its
/// arguments; `None` when it runs none of ours.
pub(super) fn invocation(tokens: &[Tok]) -> Option<Invocation<'_>> {
    let mut env = Vec::new();
    let mut i = 0;
    let word = |i: usize| tokens.get(i).and_then(Tok::word);
    while let Some(w) = word(i) {
        if let Some((name, value)) = assignment(w) {
            env.push((name, value));
            i += 1;
            continue;
        }
        let name = w.rsplit('/').next().unwrap_or(w);
        match name {
            "oidc-server" | "connector-token" | "get-token" => {
                let program = match name {
                    "oidc-server" => Program::OidcServer,
                    "connector-token" => Program::ConnectorToken,
                    _ => Program::GetToken,
                };
                let args = &tokens[i + 1..];
                return Some(Invocation { program, env, args });
            }
            "cargo" if word(i + 1) == Some("run") => {
                let (program, args) = cargo_run(&tokens[i + 2..])?;
                return Some(Invocation { program, env, args });
            }
            // Wrappers: their options, then the command they run.
            "sudo" | "env" | "exec" | "time" | "nohup" | "valgrind" | "strace" => {
                i += 1;
                while let Some(w) = word(i) {
                    if let Some(pair) = assignment(w) {
                        env.push(pair);
                    } else if !w.starts_with('-') {
                        break;
                    }
                    i += 1;
                }
            }
            _ => return None,
        }
    }
    None
}

/// `NAME=value` (a shell assignment).
fn assignment(word: &str) -> Option<(String, String)> {
    let (name, value) = word.split_once('=')?;
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| (name.to_owned(), value.to_owned()))
}

/// `cargo run [OPTIONS] [-- ARGS]` of one of ours: which, and `ARGS`.
fn cargo_run(tokens: &[Tok]) -> Option<(Program, &[Tok])> {
    let (mut package, mut bin, mut example) = (None, None, None);
    let mut i = 0;
    let mut args: &[Tok] = &[];
    while let Some(token) = tokens.get(i) {
        let w = token.word()?;
        let value = tokens.get(i + 1).and_then(Tok::word).map(str::to_owned);
        match w {
            "--" => {
                args = &tokens[i + 1..];
                break;
            }
            "-p" | "--package" => package = value,
            "--bin" => bin = value,
            "--example" => example = value,
            "--features" | "-F" | "--manifest-path" | "--target-dir" | "--target" | "--profile" | "-j"
            | "--jobs" => {}
            w if w.starts_with('-') => {
                i += 1;
                continue;
            }
            _ => return None,
        }
        i += 2;
    }
    let program = match (package.as_deref(), bin.as_deref(), example.as_deref()) {
        (Some("oidc-server"), None | Some("oidc-server"), None) => Program::OidcServer,
        (Some("connector-client"), Some("connector-token"), None) => Program::ConnectorToken,
        (Some("connector-client"), None, Some("get-token")) => Program::GetToken,
        _ => return None,
    };
    Some((program, args))
}
