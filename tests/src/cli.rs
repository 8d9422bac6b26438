//! The `oidc-server` binary as an operator runs it: built once with the
//! tests' profile, run against the emulator with the embedded default
//! configuration (nothing but the environment the test gives).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use crate::moto::Moto;

/// Kills a spawned process however the test ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `oidc-server` binary (built if needed).
pub async fn binary() -> PathBuf {
    tokio::task::spawn_blocking(|| crate::built_executable(&["--bin", "oidc-server"], "oidc-server"))
        .await
        .expect("build task")
}

/// `oidc-server ARGS` against `moto`, with no configuration file of the
/// environment's (the embedded default applies).
pub fn command(bin: &Path, moto: &Moto, args: &[&str]) -> Command {
    let mut command = Command::new(bin);
    command
        .envs(moto.env())
        .env_remove("OIDC_SERVER_CONFIG")
        .env_remove("OIDC_SERVER_CONFIG_TOML")
        .env("RUST_LOG", "warn")
        .args(args);
    command
}

/// Runs [`command`] to its end.
pub async fn run(bin: &Path, moto: &Moto, args: &[&str]) -> Output {
    run_command(command(bin, moto, args)).await
}

/// Runs `command` to its end (off the async threads).
pub async fn run_command(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run oidc-server"))
        .await
        .expect("command task")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The arguments of `oidc-server keys init` for a kms-envelope set sealed by
/// `key_id`, with the rules' timings in seconds: `[lifetime, JWKS max-age,
/// poll interval, leeway, rotation window]` (tests use second-scale values).
pub fn envelope_init_args(secret: &str, key_id: &str, issuer: &str, timings: [u64; 5]) -> Vec<String> {
    let [lifetime, max_age, poll, leeway, window] = timings.map(|n| n.to_string());
    [
        "keys",
        "init",
        "--secret",
        secret,
        "--kind",
        "kms-envelope",
        "--key-id",
        key_id,
        "--issuer",
        issuer,
        "--max-token-lifetime-secs",
        &lifetime,
        "--jwks-max-age-secs",
        &max_age,
        "--poll-interval-secs",
        &poll,
        "--leeway-secs",
        &leeway,
        "--rotation-window-secs",
        &window,
    ]
    .map(str::to_owned)
    .to_vec()
}
