//! The third-party tools `scripts/test.sh` installs: Python (PyJWT, moto) in
//! `.venv/`, Node packages (jose, oidc-provider) in `.node/`. Tests that need
//! one fail with a message naming the command that installs it; they are not
//! skipped silently.
//!
//! [`verify_with_pyjwt`] and [`verify_with_jose`] are the independent
//! verifiers every test uses: one script each, as strict as those libraries
//! let a control plane be.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
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

/// The folder holding the Node test packages (jose, oidc-provider).
pub fn node_modules() -> PathBuf {
    let path = tool("E2E_NODE_MODULES", ".node/node_modules");
    for package in ["jose", "oidc-provider"] {
        assert!(
            path.join(package).join("package.json").exists(),
            "{} has no {package}: run scripts/test.sh (it installs the Node test tools into .node)",
            path.display()
        );
    }
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

/// What a third-party verifier accepted: the token's protected header and claims.
#[derive(Debug)]
pub struct Accepted {
    /// The JOSE header.
    pub header: Value,
    /// The claims.
    pub claims: Value,
}

/// PyJWT (`PyJWKClient` on the JWKS URL, then `jwt.decode`): the key chosen
/// by `kid`, `typ: at+jwt`, exact `iss` and `aud`, and every claim we
/// promise present.
const PYJWT: &str = r#"
import json, sys, jwt
token, jwks_url, issuer, audience = sys.argv[1:5]
key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
header = jwt.get_unverified_header(token)
assert header["typ"] == "at+jwt", header
claims = jwt.decode(token, key.key, algorithms=[header["alg"]], audience=audience, issuer=issuer,
                    options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]})
print(json.dumps({"header": header, "claims": claims}))
"#;

/// npm jose (`createRemoteJWKSet` + `jwtVerify`): exact `iss` and `aud`, `typ: at+jwt`.
const JOSE: &str = r#"
import { createRemoteJWKSet, jwtVerify } from 'jose';
const [token, jwksUrl, issuer, audience] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(jwksUrl));
const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer, audience, typ: 'at+jwt' });
console.log(JSON.stringify({ header: protectedHeader, claims: payload }));
"#;

/// Verifies `token` with PyJWT against the keys at `jwks_url`, for `issuer`
/// and `audience`. A refusal is the script's output: its exit code and, in
/// `stderr`, PyJWT's exception (`InvalidAudienceError`, ...).
pub async fn verify_with_pyjwt(
    jwks_url: &str,
    issuer: &str,
    audience: &str,
    token: &str,
) -> Result<Accepted, Output> {
    accepted(run_python(PYJWT, &[token, jwks_url, issuer, audience]).await)
}

/// Verifies `token` with npm jose against the keys at `jwks_url`, for
/// `issuer` and `audience`. A refusal is the script's output: its exit code
/// and, in `stderr`, jose's error (naming the claim that failed).
pub async fn verify_with_jose(
    jwks_url: &str,
    issuer: &str,
    audience: &str,
    token: &str,
) -> Result<Accepted, Output> {
    accepted(run_node(JOSE, &[token, jwks_url, issuer, audience]).await)
}

fn accepted(output: Output) -> Result<Accepted, Output> {
    if output.code != 0 {
        return Err(output);
    }
    let mut printed: Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("the verifier printed no JSON ({e}): {output:?}"));
    Ok(Accepted {
        header: printed["header"].take(),
        claims: printed["claims"].take(),
    })
}

/// Runs a Python script with the virtualenv's Python.
pub async fn run_python(script: &str, args: &[&str]) -> Output {
    run(Command::new(python()).arg("-c").arg(script).args(args)).await
}

/// Runs a Node ES module script with the installed packages resolvable.
pub async fn run_node(script: &str, args: &[&str]) -> Output {
    let file = node_script("script", script);
    let output = run(Command::new("node").arg(&file).args(args)).await;
    let _ = std::fs::remove_file(&file);
    output
}

/// Writes `script` next to the installed packages, in a file of its own
/// (tests in one process run scripts concurrently).
fn node_script(name: &str, script: &str) -> PathBuf {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let file = tempdir_for_node(&node_modules()).join(format!("{name}-{}-{n}.mjs", std::process::id()));
    std::fs::write(&file, script).expect("write the node script");
    file
}

/// A long-running Node ES module script (a server): killed when dropped.
pub struct NodeProcess {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    file: PathBuf,
}

impl NodeProcess {
    /// Starts `script` (written next to the installed packages) with `args`;
    /// its standard error is inherited, so its complaints show in the test output.
    pub fn start(name: &str, script: &str, args: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt as _;
        let file = node_script(name, script);
        let mut child = Command::new("node")
            .arg(&file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            child,
            stdout: tokio::io::BufReader::new(stdout).lines(),
            file,
        }
    }

    /// The next line it prints (waits at most 30 s).
    pub async fn line(&mut self) -> String {
        let next = tokio::time::timeout(std::time::Duration::from_secs(30), self.stdout.next_line());
        match next.await {
            Ok(Ok(Some(line))) => line,
            other => panic!("the node process printed no line: {other:?}"),
        }
    }

    /// Stops it and waits for it to end.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
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

/// libfaketime, its thread-safe build (`libfaketimeMT.so.1`, compiled by
/// `scripts/test.sh` into the virtualenv's `lib/` from the source the
/// `libfaketime` package vendors): run a process with `LD_PRELOAD` set to it
/// and `FAKETIME=+3h` and its clock is three hours ahead.
///
/// Thread-safe because the default build re-reads a timestamp file into one
/// buffer shared by all threads without a lock: a multi-threaded server (moto)
/// reading a clock that moves can parse a torn buffer and exit.
pub fn faketime_library() -> PathBuf {
    // The virtualenv of `python()` (`E2E_PYTHON` is `<venv>/bin/python`).
    let lib = python()
        .parent()
        .and_then(std::path::Path::parent)
        .map_or_else(|| crate::workspace_path(".venv"), PathBuf::from)
        .join("lib/libfaketimeMT.so.1");
    assert!(
        lib.exists(),
        "{} is missing: run scripts/test.sh (it installs the Python test tools into .venv and builds libfaketime's thread-safe library there)",
        lib.display()
    );
    lib
}

const PYJWT_CACHING: &str = r#"
import json, sys, jwt
url, issuer, audience, lifespan = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
# PyJWKClient's defaults, but the JWK set cached for the JWKS max-age.
client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=lifespan)
print("ready", flush=True)
for line in sys.stdin:
    token = line.strip()
    try:
        key = client.get_signing_key_from_jwt(token)
        jwt.decode(token, key.key, algorithms=["ES256", "EdDSA", "RS256", "PS256"], audience=audience,
                   issuer=issuer, options={"require": ["exp", "iss", "aud", "sub"]})
        print(json.dumps({"ok": True, "kid": key.key_id}), flush=True)
    except Exception as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
"#;

const JOSE_CACHING: &str = r#"
import { createRemoteJWKSet, jwtVerify, decodeProtectedHeader } from 'jose';
import readline from 'node:readline';
const [url, issuer, audience, maxAgeMs] = process.argv.slice(2);
// The JWK set cached for the JWKS max-age, and refetched for an unknown kid
// no more often than that.
const jwks = createRemoteJWKSet(new URL(url), { cacheMaxAge: Number(maxAgeMs), cooldownDuration: Number(maxAgeMs) });
console.log('ready');
for await (const line of readline.createInterface({ input: process.stdin })) {
  const token = line.trim();
  try {
    await jwtVerify(token, jwks, { issuer, audience, requiredClaims: ['exp', 'sub'] });
    console.log(JSON.stringify({ ok: true, kid: decodeProtectedHeader(token).kid }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: `${e.code ?? e.name}: ${e.message}` }));
  }
}
"#;

/// A third-party verifier that lives across many tokens and caches the JWKS
/// as a control plane would: PyJWT's `PyJWKClient` or jose's
/// `createRemoteJWKSet`, cache lifetime the JWKS max-age.
pub struct CachingVerifier {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    file: Option<PathBuf>,
}

impl CachingVerifier {
    /// PyJWT's `PyJWKClient` on `jwks_url`, caching its set for `max_age`.
    pub async fn pyjwt(jwks_url: &str, issuer: &str, audience: &str, max_age: std::time::Duration) -> Self {
        let mut command = Command::new(python());
        command.arg("-c").arg(PYJWT_CACHING).args([
            jwks_url,
            issuer,
            audience,
            &max_age.as_secs_f64().to_string(),
        ]);
        Self::start(command, None).await
    }

    /// jose's `createRemoteJWKSet` on `jwks_url`, `cacheMaxAge` and
    /// `cooldownDuration` `max_age`.
    pub async fn jose(jwks_url: &str, issuer: &str, audience: &str, max_age: std::time::Duration) -> Self {
        let file = node_script("caching-verifier", JOSE_CACHING);
        let mut command = Command::new("node");
        command
            .arg(&file)
            .args([jwks_url, issuer, audience, &max_age.as_millis().to_string()]);
        Self::start(command, Some(file)).await
    }

    async fn start(mut command: Command, file: Option<PathBuf>) -> Self {
        use tokio::io::AsyncBufReadExt as _;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the verifier");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut verifier = Self {
            child,
            stdin,
            stdout,
            file,
        };
        assert_eq!(verifier.line().await, "ready");
        verifier
    }

    async fn line(&mut self) -> String {
        let next = tokio::time::timeout(std::time::Duration::from_secs(30), self.stdout.next_line());
        match next.await {
            Ok(Ok(Some(line))) => line,
            other => panic!("the verifier printed no line: {other:?}"),
        }
    }

    /// Verifies `token`: its kid, or the library's error.
    pub async fn verify(&mut self, token: &str) -> Result<String, String> {
        use tokio::io::AsyncWriteExt as _;
        self.stdin
            .write_all(format!("{token}\n").as_bytes())
            .await
            .expect("write to the verifier");
        let line = self.line().await;
        let printed: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        match printed["ok"].as_bool() {
            Some(true) => Ok(printed["kid"].as_str().unwrap_or_default().to_owned()),
            _ => Err(printed["error"].as_str().unwrap_or_default().to_owned()),
        }
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for CachingVerifier {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }
}
