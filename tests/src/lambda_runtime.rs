//! The Lambda binary as Lambda runs it: `bootstrap` under an emulator of
//! the Lambda Runtime API and of function URLs that someone else maintains,
//! cargo-lambda's `cargo lambda watch --only-lambda-apis` (PyPI
//! `cargo-lambda`, the same release as on crates.io but prebuilt; installed
//! by `scripts/test.sh` into `.venv/`), driven over HTTP as clients drive a
//! function URL, and through the Lambda `Invoke` API for rotation events.
//!
//! The emulator starts no function of its own: [`LambdaEmulator::start_function`]
//! starts `bootstrap` with `AWS_LAMBDA_RUNTIME_API` pointing at it, as
//! Lambda starts an execution environment, so a test can freeze the
//! environment (`SIGSTOP`) and thaw it, or watch its init fail. Both
//! processes run under `sh`, which kills them when its standard input
//! closes (the handle dropped, or the test process gone).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::moto::free_port;

/// The function name `--only-lambda-apis` serves (`_`).
const FUNCTION: &str = "_";

/// The `cargo-lambda` executable: `E2E_CARGO_LAMBDA`, else `.venv/bin/cargo-lambda`.
pub fn cargo_lambda() -> PathBuf {
    let path = std::env::var_os("E2E_CARGO_LAMBDA")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_path(".venv/bin/cargo-lambda"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it installs cargo-lambda into .venv)",
        path.display()
    );
    path
}

/// The `bootstrap` binary: `E2E_BOOTSTRAP` when set (the cold-start
/// benchmark measures the artifact the stack ships, built with the `lambda`
/// profile), else built once per test process with the tests' profile.
pub fn bootstrap() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| match std::env::var_os("E2E_BOOTSTRAP") {
            Some(path) => {
                let path = PathBuf::from(path);
                assert!(path.is_file(), "E2E_BOOTSTRAP: {} is missing", path.display());
                path
            }
            None => crate::built_executable(&["--bin", "bootstrap"], "bootstrap"),
        })
        .clone()
}

/// A process under `sh` that dies when `stdin` closes; `pid` is the
/// process itself, not the shell, which ends with it.
struct Guarded {
    shell: Child,
    stdin: Option<ChildStdin>,
    pid: i32,
}

impl Guarded {
    fn spawn(program: &Path, args: &[&str], env: &[(String, String)], cwd: &Path, log: &Path) -> Self {
        let quoted: Vec<String> = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let script = format!(
            // A background job's standard input is /dev/null unless given:
            // the watcher reads the shell's own (fd 3) until it closes.
            "exec 3<&0; {} >>'{}' 2>&1 </dev/null & pid=$!; echo $pid; \
             (cat <&3 >/dev/null; kill -CONT $pid; kill $pid) 2>/dev/null & wait $pid",
            quoted.join(" "),
            log.display()
        );
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(cwd)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sh");
        let mut line = String::new();
        BufReader::new(shell.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the child's pid");
        let pid = line.trim().parse().expect("a pid");
        Self {
            stdin: shell.stdin.take(),
            shell,
            pid,
        }
    }

    /// Whether the process has ended (its shell with it).
    fn ended(&mut self) -> bool {
        !matches!(self.shell.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.shell.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `cargo lambda watch --only-lambda-apis`.
pub struct LambdaEmulator {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
    _process: Guarded,
}

impl LambdaEmulator {
    /// Starts the emulator on a free port (its invocations wait up to
    /// `timeout` for the function).
    pub fn start(timeout: Duration) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("e2e-cargo-lambda-{port}.log"));
        let process = Guarded::spawn(
            &cargo_lambda(),
            &[
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
                "--timeout",
                &timeout.as_secs().max(1).to_string(),
            ],
            &[],
            // It reads the workspace's metadata (no build: the function is ours to start).
            &crate::workspace_path(""),
            &log,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen on {port} within 30 s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            log,
            _process: process,
        }
    }

    /// `AWS_LAMBDA_RUNTIME_API` for a function under this emulator.
    pub fn runtime_api(&self) -> String {
        format!("http://127.0.0.1:{}/.rt", self.port)
    }

    /// The function URL's base (`GET {function_url}/healthz`).
    pub fn function_url(&self) -> String {
        format!("http://127.0.0.1:{}/lambda-url/{FUNCTION}", self.port)
    }

    /// The Lambda `Invoke` API for the function (the rotation events).
    pub fn invoke_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{FUNCTION}/invocations",
            self.port
        )
    }

    /// Starts `bootstrap` as an execution environment of this emulator,
    /// in `cwd`, with `env` added to the variables Lambda sets.
    pub fn start_function(&self, cwd: &Path, env: &[(String, String)]) -> LambdaFunction {
        let log = std::env::temp_dir().join(format!(
            "e2e-bootstrap-{}-{}.log",
            self.port,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let mut vars: Vec<(String, String)> = [
            ("AWS_LAMBDA_RUNTIME_API", self.runtime_api()),
            ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION.into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
            ("RUST_BACKTRACE", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(env.iter().cloned());
        let program = bootstrap();
        let started = Instant::now();
        let process = Guarded::spawn(&program, &[], &vars, cwd, &log);
        LambdaFunction {
            log,
            started,
            process,
        }
    }
}

/// A `bootstrap` process: one execution environment.
pub struct LambdaFunction {
    /// Where its standard output and error go.
    pub log: PathBuf,
    /// When the process was started.
    pub started: Instant,
    process: Guarded,
}

impl LambdaFunction {
    /// Freezes the environment, as Lambda does between invocations.
    pub fn freeze(&self) {
        signal(self.process.pid, "STOP");
    }

    /// Thaws it.
    pub fn thaw(&self) {
        signal(self.process.pid, "CONT");
    }

    /// What it wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `limit` for the process to end; whether it did.
    pub fn wait_for_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.process.ended() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process.ended()
    }
}

fn signal(pid: i32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}
