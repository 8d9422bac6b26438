//! The documentation, checked like code: every Markdown file of the
//! workspace (README.md, docs/, the crates' READMEs, BENCHMARKS.md, ...).
//!
//! - Every fenced `toml` block goes through `check-config`'s validation.
//!   Its fence says what it is: ```` ```toml ```` a whole configuration,
//!   ```` ```toml fragment ```` sections put into the embedded default
//!   (replacing the default's sections of the same name, so `[replay]
//!   store = "dynamodb"` without its `table` fails), ```` ```toml trust ````
//!   a trust file (`[[issuers]]`); `refused` added says the block shows a
//!   configuration the server rejects, and then it must be rejected.
//! - Every command line that runs `oidc-server` or `connector-token` (or
//!   the `get-token` example) is parsed by the real parser: in fenced `sh`
//!   blocks (a block marked ```` ```sh other ```` is not ours and is not
//!   read), and in inline code in tables; inline code in prose that starts
//!   with a program's name must name its subcommands and flags right.
//!   Synopses are docopt-style: `[optional]`, `(a | b)`, `a|b`, `...`.
//! - A table row that pairs a `--flag` with a `CONNECTOR_*` or
//!   `OIDC_SERVER_*` variable must be right about which variable the flag
//!   reads; every such variable named anywhere exists, and every
//!   `OIDC_SERVER__SECTION__FIELD` names a real field.
//!
//! The checks report every problem at once, each with its file and line.

mod commands;
mod config;
mod markdown;
mod shell;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use commands::{Parsers, Program};
use shell::{Mode, Tok};

/// Most command lines one synopsis may stand for.
const EXPANSION_LIMIT: usize = 4096;

fn root() -> PathBuf {
    e2e::workspace_path("")
        .canonicalize()
        .expect("the workspace folder")
}

/// Problems found, each `FILE:LINE: what`.
#[derive(Default)]
struct Report {
    problems: Vec<String>,
    /// Command lines parsed, configurations validated: a checker that
    /// finds nothing to check is broken, not passing.
    checked: usize,
}

impl Report {
    fn add(&mut self, doc: &str, line: usize, what: impl std::fmt::Display) {
        self.problems.push(format!("{doc}:{line}: {what}"));
    }

    fn assert_clean(&self, at_least: usize, what: &str) {
        assert!(
            self.problems.is_empty(),
            "{} problem(s) in the docs:\n{}",
            self.problems.len(),
            self.problems.join("\n")
        );
        assert!(
            self.checked >= at_least,
            "only {} {what} checked: the checker no longer finds them",
            self.checked
        );
    }
}

/// Checks the `toml` blocks of one document.
fn check_toml_blocks(doc: &markdown::Doc, root: &Path, report: &mut Report) {
    for fence in markdown::fences(&doc.text)
        .into_iter()
        .filter(|f| f.lang == "toml")
    {
        let (kind, refused) = match config::kind(&fence.markers) {
            Ok(kind) => kind,
            Err(e) => {
                report.add(&doc.path, fence.line, e);
                continue;
            }
        };
        report.checked += 1;
        match (config::check(kind, &fence.body, &doc.dir, root), refused) {
            (Ok(()), false) | (Err(_), true) => {}
            (Err(e), false) => report.add(
                &doc.path,
                fence.line,
                format!("```toml {kind:?} block is refused: {e}"),
            ),
            (Ok(()), true) => report.add(&doc.path, fence.line, "```toml ... refused block is accepted"),
        }
    }
}

/// Checks one synopsis or shell line: every simple command of ours in it
/// (and in its `$(...)`), every expansion of its usage notation.
fn check_line(parsers: &Parsers, text: &str, mode: Mode, doc: &str, line: usize, report: &mut Report) {
    let mangled = |e: String| format!("cannot read `{}`: {e}", text.trim());
    let (commands, substitutions) = match shell::commands(text, mode) {
        Ok(parts) => parts,
        Err(e) => {
            // Only our command lines must be in the docs' notation.
            if ["oidc-server", "connector-token", "get-token"]
                .iter()
                .any(|p| text.contains(p))
            {
                report.add(doc, line, mangled(e));
            }
            return;
        }
    };
    for substitution in substitutions {
        check_line(parsers, &substitution, Mode::Shell, doc, line, report);
    }
    for command in commands {
        let Some(commands::Invocation { program, env, args }) = commands::invocation(&command) else {
            continue;
        };
        let expansions = match shell::expand(args, EXPANSION_LIMIT) {
            Ok(expansions) => expansions,
            Err(e) => {
                report.add(doc, line, mangled(e));
                continue;
            }
        };
        for (argv, elided) in expansions {
            report.checked += 1;
            if let Err(e) = parsers.check(program, &argv, &env, elided) {
                report.add(doc, line, format!("`{} {}`: {e}", program.name(), argv.join(" ")));
            }
        }
    }
}

/// Inline code in prose that starts with a program's name: its subcommands
/// and `--flags` exist (values and required flags are left to the prose).
fn check_prose_span(parsers: &Parsers, span: &str, doc: &str, line: usize, report: &mut Report) {
    let Ok((commands, _)) = shell::commands(span, Mode::Synopsis) else {
        return;
    };
    for command in commands {
        let Some(commands::Invocation { program, args, .. }) = commands::invocation(&command) else {
            continue;
        };
        // Only spans that are all program, words and flags (no bare name).
        if !matches!(command.first(), Some(Tok::Word { text, .. }) if text == program.name()) {
            continue;
        }
        let Ok(expansions) = shell::expand(args, EXPANSION_LIMIT) else {
            report.add(doc, line, format!("cannot read `{span}`"));
            continue;
        };
        for (argv, _) in expansions {
            report.checked += 1;
            if let Err(e) = parsers.check_names(program, &argv) {
                report.add(doc, line, format!("`{span}`: {e}"));
            }
        }
    }
}

#[test]
fn every_toml_block_of_the_docs_validates_as_its_fence_says() {
    let root = root();
    let mut report = Report::default();
    for doc in markdown::all(&root) {
        check_toml_blocks(&doc, &root, &mut report);
    }
    report.assert_clean(5, "TOML blocks");
}

#[test]
fn every_documented_command_line_parses() {
    let root = root();
    let parsers = Parsers::new();
    let mut report = Report::default();
    for doc in markdown::all(&root) {
        for fence in markdown::fences(&doc.text) {
            if !matches!(fence.lang.as_str(), "sh" | "bash" | "shell" | "console") {
                continue;
            }
            match fence.markers.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                [] => {}
                ["other"] => continue,
                _ => {
                    report.add(
                        &doc.path,
                        fence.line,
                        "unknown marker after ```sh (known: other, for a block that is not our CLI)",
                    );
                    continue;
                }
            }
            for (offset, text) in shell::logical_lines(&fence.body) {
                check_line(
                    &parsers,
                    &text,
                    Mode::Shell,
                    &doc.path,
                    fence.line + 1 + offset,
                    &mut report,
                );
            }
        }
        for row in markdown::rows(&doc.text) {
            for cell in &row.cells {
                for (_, span) in markdown::code_spans(cell) {
                    if starts_with_program(&span) {
                        check_line(&parsers, &span, Mode::Synopsis, &doc.path, row.line, &mut report);
                    }
                }
            }
        }
        for (line, span) in markdown::prose_spans(&doc.text) {
            if starts_with_program(&span) {
                check_prose_span(&parsers, &span, &doc.path, line, &mut report);
            }
        }
    }
    report.assert_clean(40, "command lines");
}

/// A command line of ours: a program's name and at least one argument (a
/// name alone is a mention).
fn starts_with_program(span: &str) -> bool {
    let mut words = span.split_whitespace();
    let first = words.next().unwrap_or("");
    ["oidc-server", "connector-token"].contains(&first) && words.next().is_some()
}

#[test]
fn every_documented_variable_exists_and_flag_tables_name_the_right_ones() {
    let root = root();
    let parsers = Parsers::new();
    let mut known: BTreeSet<String> = parsers.variables();
    // Read by the code itself, not through a flag.
    known.extend(
        [
            oidc_server::config::CONFIG_ENV,
            oidc_server::config::CONFIG_TOML_ENV,
            oidc_server::lambda::ISSUER_PARAMETER_ENV,
            oidc_server::lambda::rotation::HANDLER_ENV,
            oidc_server::lambda::rotation::TEMPLATE_ENV,
        ]
        .map(str::to_owned),
    );
    // The documented form of every field override.
    let pattern = format!("{}SECTION__FIELD", oidc_server::config::ENV_PREFIX);
    let mut report = Report::default();
    for doc in markdown::all(&root) {
        for (line, name, value) in variables(&doc.text) {
            report.checked += 1;
            if name == pattern {
                continue;
            }
            if name.starts_with(oidc_server::config::ENV_PREFIX) {
                if let Err(e) = config::check_override(&root, &name, value.as_deref()) {
                    report.add(
                        &doc.path,
                        line,
                        format!("{name} is no configuration field override: {e}"),
                    );
                }
            } else if !known.contains(&name) {
                report.add(&doc.path, line, format!("no program reads {name}"));
            }
        }
        for row in markdown::rows(&doc.text) {
            let spans: Vec<String> = row
                .cells
                .iter()
                .flat_map(|c| markdown::code_spans(c))
                .map(|(_, s)| s)
                .collect();
            let flag = spans
                .iter()
                .find(|s| s.starts_with("--"))
                .and_then(|s| s.split_whitespace().next());
            let variable = spans
                .iter()
                .find(|s| s.starts_with("CONNECTOR_") || s.starts_with("OIDC_SERVER_"))
                .map(|s| s.split('=').next().unwrap_or(s));
            if let (Some(flag), Some(variable)) = (flag, variable) {
                report.checked += 1;
                if let Err(e) = parsers.flag_reads(flag, variable) {
                    report.add(&doc.path, row.line, e);
                }
            }
        }
    }
    report.assert_clean(30, "variables");
}

/// `CONNECTOR_*` and `OIDC_SERVER_*` names in `text`, with the value when
/// one is written right after them (`NAME=value`, up to a space or a
/// backtick), and their lines.
fn variables(text: &str) -> Vec<(usize, String, Option<String>)> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if !line.is_char_boundary(i) {
                i += 1;
                continue;
            }
            let at_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            let rest = &line[i..];
            if at_word && (rest.starts_with("CONNECTOR_") || rest.starts_with("OIDC_SERVER_")) {
                let len = rest
                    .bytes()
                    .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
                    .count();
                let name = rest[..len].trim_end_matches('_');
                if name.len() > "OIDC_SERVER".len() && !name.ends_with("CONNECTOR") {
                    let value = rest[len..]
                        .strip_prefix('=')
                        .map(|v| v.split([' ', '`', '"', ')']).next().unwrap_or("").to_owned())
                        .filter(|v| !v.is_empty() && !v.starts_with("..."));
                    found.push((index + 1, name.to_owned(), value));
                }
                i += len.max(1);
            } else {
                i += 1;
            }
        }
    }
    found
}

#[test]
fn the_example_config_validates_when_copied_with_the_files_its_comment_names() {
    let root = root();
    let text = config::embedded_default(&root);
    // The comment at its top says what to copy with it; each name in it
    // that is a file of keys-example/ is copied.
    let comment: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = std::env::temp_dir().join(format!("docs-example-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), &text).unwrap();
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(root.join("keys-example")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "config.toml" && comment.contains(&name) {
            std::fs::copy(entry.path(), dir.join(&name)).unwrap();
            copied.push(name);
        }
    }
    let path = dir.join("config.toml");
    let loaded = oidc_server::config::Config::load(
        Some(&path),
        Vec::<(String, String)>::new(),
        &oidc_server::config::Overrides::default(),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        loaded.is_ok(),
        "keys-example/config.toml copied with {copied:?} (the files its comment names) is refused: {}",
        loaded.err().map(|e| e.to_string()).unwrap_or_default()
    );
}

// The checker's own teeth: what it must refuse.

#[test]
fn the_checker_refuses_broken_snippets() {
    let root = root();
    let parsers = Parsers::new();
    let dir = root.join("docs");
    let fragment = |body: &str| config::check(config::Kind::Fragment, body, &dir, &root);
    assert!(
        fragment("[replay]\nstore = \"dynamodb\"\n").is_err(),
        "a dynamodb store needs its table"
    );
    assert!(fragment("[replay]\nstore = \"dynamodb\"\ntable = \"replay\"\n").is_ok());
    let connector = "[[connectors]]\nid = \"c\"\naudiences = [\"https://a.example\"]\n\
                     aws_principals = [\"arn:aws:iam::123456789012:role/c\"]\n";
    assert!(fragment(connector).is_err(), "aws_principals need [aws_iam]");
    assert!(fragment(&format!(
        "[aws_iam]\nsts_endpoint = \"https://sts.eu-west-1.amazonaws.com\"\n\n{connector}"
    ))
    .is_ok());
    assert!(config::check(config::Kind::Trust, "[[issuers]]\nname = \"a\"\n", &dir, &root).is_err());
    assert!(
        config::kind(&["fragmnet".to_owned()]).is_err(),
        "a misspelt marker is reported"
    );

    let line = |text: &str, mode: Mode| {
        let mut report = Report::default();
        check_line(&parsers, text, mode, "test.md", 1, &mut report);
        assert!(report.checked > 0, "{text}: nothing checked");
        report.problems
    };
    // A subcommand's required flag, an unknown flag, serve's flag before another command.
    assert!(!line("oidc-server keys init --secret S", Mode::Shell).is_empty());
    assert!(!line("oidc-server check-config --strict", Mode::Shell).is_empty());
    assert!(!line("oidc-server --listen 127.0.0.1:1 keygen", Mode::Shell).is_empty());
    // Every expansion of a synopsis is parsed: one bad alternative is enough.
    assert!(!line(
        "oidc-server keys (init | rotate | show) --secret NAME",
        Mode::Synopsis
    )
    .is_empty());
    assert!(line("oidc-server (rotate | show) --secret NAME", Mode::Synopsis).len() == 2);
    assert!(line("oidc-server keys (rotate | show) --secret NAME", Mode::Synopsis).is_empty());
    // Variables stand for their flags; a value the parser refuses is reported.
    assert!(line(
        "CONNECTOR_CLIENT_ID=c connector-token get --token-url https://t.example/token",
        Mode::Shell
    )
    .is_empty());
    assert!(!line(
        "connector-token agent --out /tmp/t --mode 0999 --client-id c --issuer https://i.example",
        Mode::Shell
    )
    .is_empty());
    assert!(!line(
        "cargo run -p connector-client --bin connector-token -- agent --outt /tmp/t",
        Mode::Shell
    )
    .is_empty());
    assert!(!line("x=$(connector-token get --no-such-flag)", Mode::Shell).is_empty());

    assert!(parsers.flag_reads("--client-id", "CONNECTOR_CLIENT_ID").is_ok());
    assert!(parsers.flag_reads("--client-id", "CONNECTOR_TOKEN_URL").is_err());
    assert!(config::check_override(&root, "OIDC_SERVER__TOKENS__MAX_TTL_SECS", None).is_ok());
    assert!(config::check_override(&root, "OIDC_SERVER__TOKENS__MAX_TTL", None).is_err());
    assert!(config::check_override(&root, "OIDC_SERVER__METRICS__LISTEN", Some("nowhere")).is_err());
}

#[test]
fn the_checker_reads_markdown_and_usage_notation_as_github_and_docopt_do() {
    let table = "| a | b |\n|---|---|\n| `oidc-server keygen [--alg ES256\\|EdDSA]` | x |\n";
    let rows = markdown::rows(table);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        markdown::code_spans(&rows[1].cells[0])[0].1,
        "oidc-server keygen [--alg ES256|EdDSA]"
    );
    let (commands, _) = shell::commands(
        "oidc-server keygen [--alg ES256|EdDSA] [--out key.pem]",
        Mode::Synopsis,
    )
    .unwrap();
    let expansions = shell::expand(&commands[0][1..], 100).unwrap();
    assert_eq!(expansions.len(), 6, "{expansions:?}");
    let fences = markdown::fences("x\n  ```toml fragment\n  [replay]\n  ```\n");
    assert_eq!(
        (
            fences[0].lang.as_str(),
            &fences[0].markers[..],
            fences[0].body.as_str()
        ),
        ("toml", &["fragment".to_owned()][..], "[replay]\n")
    );
    let (commands, subs) = shell::commands(
        "A=1 cargo run -p oidc-server -- verify --discover \"$(cat t)\" 2>&1 | grep x # a comment",
        Mode::Shell,
    )
    .unwrap();
    assert_eq!(commands.len(), 2);
    assert_eq!(subs, ["cat t"]);
    let commands::Invocation { program, env, args } = commands::invocation(&commands[0]).unwrap();
    assert_eq!(program, Program::OidcServer);
    assert_eq!(env, [("A".to_owned(), "1".to_owned())]);
    assert_eq!(
        args.iter().filter_map(Tok::word).collect::<Vec<_>>(),
        ["verify", "--discover", "VALUE"]
    );
    assert!(commands::is_placeholder("UID[:GID]") && commands::is_placeholder("$ISSUER/token"));
    assert!(!commands::is_placeholder("0640"));
}
