//! The third-party tools `scripts/test.sh` installs: Python (PyJWT, moto) in
//! `.venv/`, Node packages (jose) in `.node/`. Tests that need one fail with a
//! message naming the command that installs it; they are not skipped silently.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;

fn tool(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) => PathBuf::from(path),
        None => crate::workspace_path(fallback),
    }
}

/// The virtualenv's Python (with PyJWT and moto).
pub fn python() -> PathBuf {
    let path = tool("E2E_PYTHON", ".venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it installs the Python test tools into .venv)",
        path.display()
    );
    path
}

/// The folder holding the Node test packages (jose).
pub fn node_modules() -> PathBuf {
    let path = tool("E2E_NODE_MODULES", ".node/node_modules");
    assert!(
        path.join("jose").exists(),
        "{} has no jose: run scripts/test.sh (it installs the Node test tools into .node)",
        path.display()
    );
    path
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Output {
    /// Exit status code (-1 when killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a Python script with the virtualenv's Python.
pub async fn run_python(script: &str, args: &[&str]) -> Output {
    run(Command::new(python()).arg("-c").arg(script).args(args)).await
}

/// Runs a Node ES module script with the installed packages resolvable.
pub async fn run_node(script: &str, args: &[&str]) -> Output {
    let modules = node_modules();
    let dir = tempdir_for_node(&modules);
    let file = dir.join(format!("script-{}.mjs", std::process::id()));
    std::fs::write(&file, script).expect("write the node script");
    let output = run(Command::new("node").arg(&file).args(args)).await;
    let _ = std::fs::remove_file(&file);
    output
}

/// ES modules resolve packages from the script's folder upwards, so scripts
/// are written next to `node_modules`.
fn tempdir_for_node(modules: &std::path::Path) -> PathBuf {
    modules
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

async fn run(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("start the command");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
