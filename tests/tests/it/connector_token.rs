//! The `connector-token` binary against the real token server on loopback,
//! with tokens of a few seconds so that several refreshes happen in each test:
//! the agent's file is always whole, fresh and verifiable while a reader
//! hammers it; its mode is exact from creation on and comes back after an
//! outside chmod; it outlives an endpoint outage only while its token is
//! usable and comes back with the endpoint; `exec` hands its command a valid
//! token, passes SIGTERM on and exits with the command's status; bad
//! configuration is exit 2, one line, and nothing written.
//!
//! Everything is real: the binary as users run it, the server's HTTP
//! endpoint, its signatures checked with oidc-core against its JWKS. Time is
//! real too (the agent is another process), so every wait has a deadline.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use e2e::fault_proxy::{FaultProxy, Mode};
use e2e::scratch::Scratch;
use e2e::{client_key, test_config, TestServer, AUDIENCE, SECRET, SECRET_CLIENT};
use oidc_core::Algorithm;
use serde_json::Value;

/// The connector-token binary, built once per test run.
fn binary() -> &'static Path {
    e2e::connector_token_binary()
}

/// The test configuration with tokens of `ttl_secs`.
fn config(ttl_secs: u64) -> String {
    let (_key, jwks) = client_key(Algorithm::ES256);
    format!(
        "{}\n[tokens]\ndefault_ttl_secs = {ttl_secs}\nmax_ttl_secs = 900\n",
        test_config(&jwks)
    )
}

/// A scratch folder for this module's tests.
fn scratch() -> Scratch {
    Scratch::new("connector-token")
}

/// The client secret file of [`SECRET_CLIENT`] in `scratch`.
fn secret_file(scratch: &Scratch) -> String {
    scratch.file("client-secret", &format!("{SECRET}\n"))
}

/// The environment that configures the binary for [`SECRET_CLIENT`]: a
/// container definition needs no command line.
fn env_for(token_url: &str, secret_file: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CONNECTOR_TOKEN_URL", token_url.to_owned()),
        ("CONNECTOR_CLIENT_ID", SECRET_CLIENT.to_owned()),
        ("CONNECTOR_CLIENT_SECRET_FILE", secret_file.to_owned()),
        ("CONNECTOR_AUDIENCE", AUDIENCE.to_owned()),
    ]
}

/// A command for the binary with `env` and nothing inherited that could
/// configure it (no CONNECTOR_* variable, no RUST_LOG); stderr to `log`.
fn command(program: &Path, env: &[(&str, String)], log: &Path) -> tokio::process::Command {
    let mut command = e2e::connector_command(program);
    command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    command
}

/// A running `connector-token` process, its stderr in a file.
struct Running {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Running {
    fn spawn(mut command: tokio::process::Command, log: PathBuf) -> Self {
        Self {
            child: command.spawn().expect("start connector-token"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id().unwrap() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits (at most `limit`) for it to exit.
    async fn exit(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("connector-token did not exit in time; log:\n{}", self.log()))
            .unwrap()
    }

    /// SIGTERM, then its exit status.
    async fn terminate(&mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        self.exit(Duration::from_secs(15)).await
    }
}

/// Waits (real time, at most `limit`) until `condition` holds.
async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `exp` of a JWT, read without verification (the test verifies separately).
fn exp(token: &str) -> f64 {
    let payload = token.split('.').nth(1).expect("three parts");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    let claims: Value = serde_json::from_slice(&json).expect("JSON claims");
    claims["exp"].as_f64().expect("numeric exp")
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn read(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

fn log_lines<'a>(log: &'a str, message: &str) -> Vec<&'a str> {
    log.lines().filter(|line| line.contains(message)).collect()
}

/// A reader loop reads the token file (and its info file) thousands of times
/// during several refreshes: never missing, empty, partial or past its `exp`;
/// every distinct token verifies with the server's keys. The agent is set up
/// by environment variables only, logs one line per refresh (never a token
/// or the secret), and on SIGTERM exits 0 and removes the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_file_is_always_whole_fresh_and_valid_for_a_reader_loop() {
    tokio::task::spawn_blocking(binary).await.unwrap();
    let server = TestServer::start(&config(4)).await;
    let scratch = scratch();
    let out = scratch.path("token");
    let mut env = env_for(&server.token_url(), &secret_file(&scratch));
    env.push(("CONNECTOR_TOKEN_FILE", out.to_str().unwrap().to_owned()));
    let log = scratch.path("agent.log");
    let mut cmd = command(binary(), &env, &log);
    cmd.arg("agent");
    let mut agent = Running::spawn(cmd, log);
    // The info file follows the token file by a moment on the first write.
    let info = scratch.path("token.json");
    wait_for("the first token file", Duration::from_secs(30), || info.exists()).await;

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (out, info, done) = (out.clone(), info.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            let mut reads = 0u64;
            let mut seen = Vec::<String>::new();
            while !done.load(Ordering::SeqCst) {
                let token = read(&out).expect("the token file is never missing while the agent runs");
                assert!(!token.is_empty(), "an empty token file");
                assert_eq!(
                    token.split('.').count(),
                    3,
                    "a partial token: {} bytes",
                    token.len()
                );
                assert!(token.bytes().all(|b| b.is_ascii_graphic()), "not a bare token");
                let exp = exp(&token);
                assert!(now() < exp, "an expired token: exp {exp}, now {}", now());
                let info: Value = serde_json::from_str(&read(&info).expect("the info file"))
                    .expect("the info file is whole JSON");
                assert!(info["expires_at"].as_str().unwrap().ends_with('Z'));
                let info_exp = info["expires_at_unix"].as_f64().unwrap();
                assert!(now() < info_exp + 1.0, "the info file says it expired: {info}");
                assert_eq!(info["token_type"], "Bearer", "{info}");
                if seen.last() != Some(&token) {
                    seen.push(token);
                }
                reads += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
            (reads, seen)
        })
    };
    // Tokens of 4 s are refreshed every 1.8–2 s: several refreshes.
    tokio::time::sleep(Duration::from_secs(7)).await;
    done.store(true, Ordering::SeqCst);
    let (reads, seen) = reader.await.unwrap();
    assert!(reads >= 1000, "only {reads} reads");
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "a token came back after being replaced"
    );
    assert!(seen.len() >= 3, "only {} tokens in 7 s", seen.len());
    for token in &seen {
        let claims = server.verify(token).await;
        assert_eq!(claims.sub, SECRET_CLIENT);
    }
    // One request per refresh, no more.
    let issued = server.tokens_issued();
    assert!(
        issued as usize >= seen.len() && issued as usize <= seen.len() + 2,
        "{issued} tokens issued for {} seen",
        seen.len()
    );

    let status = agent.terminate().await;
    assert_eq!(status.code(), Some(0), "log:\n{}", agent.log());
    assert!(!out.exists(), "the token file outlived the agent");
    assert!(!scratch.path("token.json").exists());
    let log = agent.log();
    let written = log_lines(&log, "token file written");
    assert!(written.len() >= seen.len(), "{log}");
    for line in &written {
        assert!(
            line.contains("expires_at=") && line.contains("next_refresh_at="),
            "{line}"
        );
    }
    assert!(
        log_lines(&log, "access token refreshed").is_empty(),
        "one line per refresh, not two:\n{log}"
    );
    assert!(!log.contains(SECRET), "the secret reached the log");
    for token in &seen {
        assert!(!log.contains(token.as_str()), "a token reached the log");
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token's signature reached the log");
    }
}

/// One sample of a file in the agent's output folder.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    inode: u64,
    temporary: bool,
    mode: u32,
    owner: (u32, u32),
    empty: bool,
}

/// Under a umask of 000, every file the agent makes in the folder (temporary
/// files included, sampled as fast as the test can list them) has exactly
/// the requested mode, and (as root, with `--owner`) the requested owner
/// before it holds a byte; an outside chmod and chown last only until the
/// next refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_file_has_its_mode_from_creation_and_gets_it_back_after_chmod() {
    tokio::task::spawn_blocking(binary).await.unwrap();
    let server = TestServer::start(&config(4)).await;
    let scratch = scratch();
    let secret = secret_file(&scratch);
    let dir = scratch.path("out");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("token");
    let root = std::fs::metadata(scratch.dir()).unwrap().uid() == 0;
    let owner = root.then_some((4321u32, 4322u32));

    let log = scratch.path("agent.log");
    let mut args = vec![
        "agent".to_owned(),
        "--out".to_owned(),
        out.to_str().unwrap().to_owned(),
        "--mode".to_owned(),
        "0640".to_owned(),
    ];
    if let Some((uid, gid)) = owner {
        args.extend(["--owner".to_owned(), format!("{uid}:{gid}")]);
    }
    // A umask of 000: a file created with the default mode and narrowed
    // afterwards would be 0666 until then.
    let sh = PathBuf::from("/bin/sh");
    let mut cmd = command(&sh, &env_for(&server.token_url(), &secret), &log);
    cmd.args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(binary())
        .args(&args);
    let mut agent = Running::spawn(cmd, log);

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (dir, done) = (dir.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            let mut seen = BTreeSet::<Seen>::new();
            let mut temporary = 0u64;
            while !done.load(Ordering::SeqCst) {
                for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                    // An entry may be renamed or removed between listing and stat.
                    let Ok(metadata) = std::fs::symlink_metadata(entry.path()) else {
                        continue;
                    };
                    let name = entry.file_name().into_string().unwrap();
                    if name.ends_with(".tmp") {
                        temporary += 1;
                    }
                    seen.insert(Seen {
                        inode: metadata.ino(),
                        temporary: name.ends_with(".tmp"),
                        mode: metadata.mode() & 0o7777,
                        owner: (metadata.uid(), metadata.gid()),
                        empty: metadata.len() == 0,
                    });
                }
            }
            (seen, temporary)
        })
    };

    wait_for("the first token file", Duration::from_secs(30), || out.exists()).await;
    let mode_of = |path: &Path| std::fs::metadata(path).unwrap().mode() & 0o7777;
    let info = dir.join("token.json");
    wait_for("the info file", Duration::from_secs(5), || info.exists()).await;
    assert_eq!(mode_of(&out), 0o640);
    assert_eq!(mode_of(&info), 0o640);

    // Widen it from outside; the next refresh puts the mode back.
    let inode = std::fs::metadata(&out).unwrap().ino();
    let tampered = [inode, std::fs::metadata(&info).unwrap().ino()];
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&info, std::fs::Permissions::from_mode(0o666)).unwrap();
    if root {
        std::os::unix::fs::chown(&out, Some(0), Some(0)).unwrap();
    }
    wait_for("a refresh", Duration::from_secs(10), || {
        std::fs::metadata(&out).is_ok_and(|m| m.ino() != inode)
    })
    .await;
    wait_for("the info file to follow", Duration::from_secs(5), || {
        std::fs::metadata(&info).is_ok_and(|m| m.mode() & 0o777 == 0o640)
    })
    .await;
    let metadata = std::fs::metadata(&out).unwrap();
    assert_eq!(
        metadata.mode() & 0o7777,
        0o640,
        "the mode is re-applied on the next write"
    );
    if let Some((uid, gid)) = owner {
        assert_eq!((metadata.uid(), metadata.gid()), (uid, gid), "and the owner");
    }
    // One more refresh while the watcher samples.
    let inode = metadata.ino();
    wait_for("another refresh", Duration::from_secs(10), || {
        std::fs::metadata(&out).is_ok_and(|m| m.ino() != inode)
    })
    .await;

    done.store(true, Ordering::SeqCst);
    let (seen, temporary) = watcher.await.unwrap();
    for file in seen.iter().filter(|f| !tampered.contains(&f.inode)) {
        assert_eq!(file.mode, 0o640, "{file:?}");
        // A temporary file is created by the agent's user, then given its
        // owner before anything is written to it.
        if let Some(owner) = owner.filter(|_| !(file.temporary && file.empty)) {
            assert_eq!(file.owner, owner, "{file:?}");
        }
    }
    eprintln!("sampled {} temporary files", temporary);
    assert_eq!(agent.terminate().await.code(), Some(0), "log:\n{}", agent.log());
}

/// The endpoint goes down right after the first token: the file keeps that
/// token, unchanged, until about its expiry, then disappears (a warning names
/// why); the endpoint comes back: so does the file, with a new valid token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_file_outlives_an_outage_only_while_its_token_is_usable() {
    tokio::task::spawn_blocking(binary).await.unwrap();
    // 10 s tokens: the agent stops serving one 1 s before its expiry, which
    // covers the server's exp being rounded down to a whole second.
    let server = TestServer::start(&config(10)).await;
    let proxy = FaultProxy::start(&server.url).await;
    let scratch = scratch();
    let out = scratch.path("token");
    let log = scratch.path("agent.log");
    let token_url = format!("{}/token", proxy.endpoint);
    let mut cmd = command(binary(), &env_for(&token_url, &secret_file(&scratch)), &log);
    cmd.args(["agent", "--out", out.to_str().unwrap()]);
    let mut agent = Running::spawn(cmd, log);

    wait_for("the first token file", Duration::from_secs(30), || out.exists()).await;
    proxy.set(Mode::Refuse);
    let held = read(&out).unwrap();
    let held_exp = exp(&held);
    server.verify(&held).await;

    // Down: the same token until it goes.
    let gone_at = loop {
        match read(&out) {
            Some(token) => assert_eq!(token, held, "a new token while the endpoint is down"),
            None => break now(),
        }
        assert!(now() < held_exp + 5.0, "the token file outlived its token");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert!(
        gone_at > held_exp - 2.5,
        "removed {:.1} s before its exp: it should stay while the token is usable",
        held_exp - gone_at
    );
    assert!(
        gone_at < held_exp + 0.5,
        "removed {:.1} s after its exp",
        gone_at - held_exp
    );
    // The info file goes right after the token file, then the warning is logged.
    wait_for("the warning", Duration::from_secs(5), || {
        agent.log().contains("token file removed")
    })
    .await;
    assert!(!scratch.path("token.json").exists(), "the info file went too");
    let warning = log_lines(&agent.log(), "token file removed").join("\n");
    assert!(warning.contains("WARN"), "{}", agent.log());
    assert!(warning.contains("no new one could be obtained"), "{warning}");
    assert!(warning.contains("failures="), "{warning}");
    assert!(
        warning.contains(&token_url),
        "the warning names the last error: {warning}"
    );

    // Back: the next attempt (backoff at most 8 s by now) brings the file back.
    proxy.set(Mode::Pass);
    wait_for("the token file to return", Duration::from_secs(20), || {
        out.exists()
    })
    .await;
    let fresh = read(&out).unwrap();
    assert_ne!(fresh, held);
    let claims = server.verify(&fresh).await;
    assert_eq!(claims.sub, SECRET_CLIENT);
    assert!(now() < exp(&fresh));
    assert_eq!(agent.terminate().await.code(), Some(0), "log:\n{}", agent.log());
}

/// The shell command `exec` runs in these tests: records what it was given,
/// says when it is ready, and on SIGTERM records that and exits 42.
const CHILD: &str = r#"
dir=$1
printf '%s' "$CONNECTOR_TOKEN_FILE" > "$dir/path"
printf '%s' "$CONNECTOR_TOKEN_INFO_FILE" > "$dir/info-path"
cp "$CONNECTOR_TOKEN_FILE" "$dir/seen"
trap 'echo TERM > "$dir/got-term"; exit 42' TERM
echo ready > "$dir/ready"
while :; do sleep 0.05; done
"#;

/// `exec`: the command starts with `CONNECTOR_TOKEN_FILE` naming a file that
/// holds a valid token, the file keeps being refreshed while it runs, SIGTERM
/// to the agent reaches the command, and the agent exits with its code (42),
/// or 128 + the signal that killed it (143); a command that exits by itself
/// gives its code; a missing one 127. The token file goes with the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_gives_the_command_a_valid_token_passes_sigterm_on_and_exits_with_its_status() {
    tokio::task::spawn_blocking(binary).await.unwrap();
    let server = TestServer::start(&config(4)).await;
    let scratch = scratch();
    let env = env_for(&server.token_url(), &secret_file(&scratch));
    let out = scratch.path("token");
    let child_dir = scratch.path("child");
    std::fs::create_dir(&child_dir).unwrap();

    let log = scratch.path("exec.log");
    let mut cmd = command(binary(), &env, &log);
    cmd.args([
        "exec",
        "--out",
        out.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        CHILD,
        "sh",
    ])
    .arg(&child_dir);
    let mut exec = Running::spawn(cmd, log);
    let ready = child_dir.join("ready");
    wait_for("the command to start", Duration::from_secs(30), || ready.exists()).await;
    assert_eq!(
        std::fs::read_to_string(child_dir.join("path")).unwrap(),
        out.to_str().unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(child_dir.join("info-path")).unwrap(),
        format!("{}.json", out.to_str().unwrap())
    );
    let seen = std::fs::read_to_string(child_dir.join("seen")).unwrap();
    assert!(now() < exp(&seen), "the command started with an expired token");
    assert_eq!(server.verify(&seen).await.sub, SECRET_CLIENT);
    // Refreshed while the command runs.
    wait_for("a refresh under exec", Duration::from_secs(10), || {
        read(&out).is_some_and(|token| token != seen)
    })
    .await;

    let status = exec.terminate().await;
    assert!(
        child_dir.join("got-term").exists(),
        "the command never got SIGTERM"
    );
    assert_eq!(status.code(), Some(42), "log:\n{}", exec.log());
    assert!(!out.exists(), "the token file outlived the command");

    // Killed by the signal: 128 + 15. Without --out: a private folder, gone after.
    let log = scratch.path("exec-killed.log");
    let mut cmd = command(binary(), &env, &log);
    let script = r#"printf '%s' "$CONNECTOR_TOKEN_FILE" > "$1/private"; exec sleep 60"#;
    cmd.args(["exec", "--", "sh", "-c", script, "sh"]).arg(&child_dir);
    let mut exec = Running::spawn(cmd, log);
    let private = child_dir.join("private");
    wait_for("the command to start", Duration::from_secs(30), || {
        std::fs::metadata(&private).is_ok_and(|m| m.len() > 0)
    })
    .await;
    let private = PathBuf::from(std::fs::read_to_string(&private).unwrap());
    let folder = private.parent().unwrap().to_owned();
    assert_eq!(
        std::fs::metadata(&folder).unwrap().mode() & 0o777,
        0o700,
        "a private folder"
    );
    assert_eq!(server.verify(&read(&private).unwrap()).await.sub, SECRET_CLIENT);
    let status = exec.terminate().await;
    assert_eq!(status.code(), Some(143), "log:\n{}", exec.log());
    assert!(!folder.exists(), "the private folder outlived the command");

    // Exits by itself: its code. Not found: 127, with one line.
    let log = scratch.path("exec-exit.log");
    let mut cmd = command(binary(), &env, &log);
    cmd.args([
        "exec",
        "--",
        "sh",
        "-c",
        "test -s \"$CONNECTOR_TOKEN_FILE\" && exit 7",
    ]);
    let mut exec = Running::spawn(cmd, log);
    assert_eq!(
        exec.exit(Duration::from_secs(30)).await.code(),
        Some(7),
        "{}",
        exec.log()
    );
    let log = scratch.path("exec-missing.log");
    let mut cmd = command(binary(), &env, &log);
    cmd.args(["exec", "--", "/nonexistent/connector"]);
    let mut exec = Running::spawn(cmd, log);
    assert_eq!(exec.exit(Duration::from_secs(30)).await.code(), Some(127));
    assert!(
        exec.log()
            .contains("connector-token: cannot run /nonexistent/connector"),
        "{}",
        exec.log()
    );
}

/// The command of the `exec --dpop-key-out` test: copies what it finds at
/// start (the key file `$2`, its mode, the token and info files) to `$1`.
const KEY_CHILD: &str = r#"
stat -c %a "$2" > "$1/mode"
cp "$2" "$1/key"
cp "$CONNECTOR_TOKEN_FILE" "$1/token"
cp "$CONNECTOR_TOKEN_INFO_FILE" "$1/info"
"#;

/// `exec --dpop --dpop-key-out PATH`, as `agent`: the key file (mode 0600)
/// is there when the command starts, the command's token is bound to it
/// (`cnf.jkt`) and its info file says `DPoP`; both files go with the
/// command. With `--dpop-key K --dpop-key-out K`, the key given is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_writes_the_dpop_key_for_the_command_and_removes_it_after() {
    tokio::task::spawn_blocking(binary).await.unwrap();
    let server = TestServer::start(&config(300)).await;
    let scratch = scratch();
    let env = env_for(&server.token_url(), &secret_file(&scratch));
    let (out, key_out) = (scratch.path("token"), scratch.path("dpop.pem"));
    let child_dir = scratch.path("child");
    std::fs::create_dir(&child_dir).unwrap();

    let log = scratch.path("exec.log");
    let mut cmd = command(binary(), &env, &log);
    cmd.args(["exec", "--dpop", "--out"])
        .arg(&out)
        .arg("--dpop-key-out")
        .arg(&key_out)
        .args(["--", "sh", "-c", KEY_CHILD, "sh"])
        .arg(&child_dir)
        .arg(&key_out);
    let mut exec = Running::spawn(cmd, log);
    assert_eq!(
        exec.exit(Duration::from_secs(30)).await.code(),
        Some(0),
        "{}",
        exec.log()
    );
    let seen = |name: &str| std::fs::read_to_string(child_dir.join(name)).unwrap();
    assert_eq!(seen("mode").trim(), "600");
    let key = connector_client::DpopKey::from_pem(&seen("key")).unwrap();
    let claims = server.verify(&seen("token")).await;
    assert_eq!(
        claims.cnf.and_then(|cnf| cnf.jkt).as_deref(),
        Some(key.thumbprint()),
        "the command's token is bound to the key it was given"
    );
    let info: Value = serde_json::from_str(&seen("info")).unwrap();
    assert_eq!(info["token_type"], "DPoP", "{info}");
    assert!(!key_out.exists(), "the key file outlived the command");
    assert!(!out.exists(), "the token file outlived the command");

    // The --dpop-key file itself as --dpop-key-out: left in place.
    let pem = key.pem().as_str().to_owned();
    std::fs::write(&key_out, &pem).unwrap();
    let log = scratch.path("exec-kept.log");
    let mut cmd = command(binary(), &env, &log);
    cmd.args(["exec", "--out"])
        .arg(&out)
        .arg("--dpop-key")
        .arg(&key_out)
        .arg("--dpop-key-out")
        .arg(&key_out)
        .args(["--", "sh", "-c", KEY_CHILD, "sh"])
        .arg(&child_dir)
        .arg(&key_out);
    let mut exec = Running::spawn(cmd, log);
    assert_eq!(
        exec.exit(Duration::from_secs(30)).await.code(),
        Some(0),
        "{}",
        exec.log()
    );
    let claims = server.verify(&seen("token")).await;
    assert_eq!(
        claims.cnf.and_then(|cnf| cnf.jkt).as_deref(),
        Some(key.thumbprint())
    );
    assert_eq!(
        std::fs::read_to_string(&key_out).unwrap(),
        pem,
        "the --dpop-key file is kept"
    );
    assert!(!out.exists(), "the token file outlived the command");
}

/// The command `exec` runs in the reaping test: leaves an orphan (a
/// background `sleep` whose parent shell exits at once), records the orphan's
/// new parent and its own, and waits for the orphan to be gone from `/proc`
/// (a zombie stays there until it is reaped): exit 7 once it is, 3 if it is
/// still there after 20 s.
const ORPHANING: &str = r#"
dir=$1
sh -c 'sleep 1 & echo $! > "$1/orphan"' sh "$dir"
orphan=$(cat "$dir/orphan")
set -- $(sed 's/.*) //' /proc/$orphan/stat)
echo "$2" > "$dir/orphan-parent"
echo "$PPID" > "$dir/exec-pid"
i=0
while [ -e /proc/$orphan ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
if [ -e /proc/$orphan ]; then cat /proc/$orphan/stat > "$dir/left"; exit 3; fi
exit 7
"#;

/// Runs `connector-token exec -- sh -c ORPHANING` behind `prefix` (nothing,
/// or a new PID namespace) and returns its exit code, the pid the command
/// saw as its parent (exec), and the pid the orphan was re-parented to.
async fn run_orphaning(
    prefix: &[&str],
    scratch: &Scratch,
    env: &[(&str, String)],
    name: &str,
) -> (Option<i32>, String, String) {
    let dir = scratch.path(name);
    std::fs::create_dir(&dir).unwrap();
    let log = scratch.path(&format!("{name}.log"));
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut cmd = command(Path::new(program), env, &log);
            cmd.args(args).arg(binary());
            cmd
        }
        None => command(binary(), env, &log),
    };
    cmd.args(["exec", "--out", dir.join("token").to_str().unwrap(), "--"])
        .args(["sh", "-c", ORPHANING, "sh"])
        .arg(&dir);
    let mut exec = Running::spawn(cmd, log);
    let code = exec.exit(Duration::from_secs(60)).await.code();
    let left = read(&dir.join("left"));
    assert_eq!(left, None, "a zombie was left; log:\n{}", exec.log());
    let field = |file: &str| read(&dir.join(file)).unwrap_or_default().trim().to_owned();
    (code, field("exec-pid"), field("orphan-parent"))
}

/// `exec` reaps every child that exits, not only its command, and still
/// passes the command's own exit code on: a command that leaves an orphaned
/// grandchild finds it re-parented to exec (a child subreaper) and reaped
/// once it exits; and the same as PID 1 of a new PID namespace (a
/// container's init), where an unreaped orphan would stay a zombie. The PID
/// namespace needs `unshare` and the privilege to use it; without them that
/// half says so and is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reaps_orphaned_grandchildren_as_a_subreaper_and_as_pid_1() {
    tokio::task::spawn_blocking(binary).await.unwrap();
    let server = TestServer::start(&config(30)).await;
    let scratch = scratch();
    let env = env_for(&server.token_url(), &secret_file(&scratch));

    let (code, exec_pid, parent) = run_orphaning(&[], &scratch, &env, "subreaper").await;
    assert_eq!(code, Some(7), "the command's code is passed on");
    assert_eq!(parent, exec_pid, "the orphan was re-parented to exec");

    let namespace = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
    let usable = tokio::process::Command::new(namespace[0])
        .args(&namespace[1..])
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success());
    if !usable {
        println!("skipped the PID-1 half: `unshare --pid --fork --mount-proc` cannot run here");
        return;
    }
    let (code, exec_pid, parent) = run_orphaning(&namespace, &scratch, &env, "pid1").await;
    assert_eq!(code, Some(7), "the command's code is passed on");
    assert_eq!(
        (exec_pid.as_str(), parent.as_str()),
        ("1", "1"),
        "exec is PID 1, and the orphan's parent"
    );
}

/// Runs `connector-token exec` in a new session whose controlling terminal
/// is a pseudo-terminal (as under `docker run -it` or a login shell), types a
/// line once the command is ready, then sends SIGTERM to exec once the
/// command has read it; prints what happened as JSON.
const AT_A_TERMINAL: &str = r#"
import json, os, pty, select, signal, sys, time
binary, folder = sys.argv[1], sys.argv[2]
command = """
printf 'ready\n'
IFS= read -r line
printf '%s' "$line" > "$1/read"
trap 'exit 42' TERM
while :; do sleep 0.05; done
"""
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "exec", "--out", os.path.join(folder, "token"), "--", "sh", "-c", command, "sh", folder])
transcript, typed, signalled, status = b"", False, False, None
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    if select.select([fd], [], [], 0.05)[0]:
        try:
            transcript += os.read(fd, 4096)
        except OSError:
            pass
    if not typed and b"ready" in transcript:
        os.write(fd, b"hello from the terminal\n")
        typed = True
    if not signalled and os.path.exists(os.path.join(folder, "read")):
        os.kill(pid, signal.SIGTERM)
        signalled = True
    done, raw = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(raw)
        break
if status is None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
read = None
if os.path.exists(os.path.join(folder, "read")):
    read = open(os.path.join(folder, "read")).read()
print(json.dumps({"typed": typed, "read": read, "status": status, "transcript": transcript.decode(errors="replace")}))
"#;

/// `exec` at a terminal: the command stays in the terminal's foreground
/// process group, so it reads the line typed there instead of being stopped
/// by SIGTTIN (a process group of its own would be a background group), and
/// a SIGTERM to exec still reaches it (exit 42, passed on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_at_a_terminal_keeps_the_command_in_the_foreground_and_passes_signals_on() {
    tokio::task::spawn_blocking(binary).await.unwrap();
    let server = TestServer::start(&config(30)).await;
    let scratch = scratch();
    let env = env_for(&server.token_url(), &secret_file(&scratch));
    let folder = scratch.path("terminal");
    std::fs::create_dir(&folder).unwrap();
    let log = scratch.path("terminal.log");
    let mut cmd = command(&e2e::tools::python(), &env, &log);
    cmd.args(["-c", AT_A_TERMINAL]).arg(binary()).arg(&folder);
    let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the terminal script finished")
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let transcript = report["transcript"].as_str().unwrap_or_default();
    assert_eq!(
        report["typed"], true,
        "the command never said it was ready:\n{transcript}"
    );
    assert_eq!(
        report["read"], "hello from the terminal",
        "the command could not read the terminal (stopped in a background group?):\n{transcript}"
    );
    assert_eq!(
        report["status"], 42,
        "SIGTERM passed on, the code passed back:\n{transcript}"
    );
}

/// What a run of the binary that should fail at start did.
struct Refused {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run_to_end(args: &[&str], env: &[(&str, String)], log: &Path) -> Refused {
    let mut cmd = command(binary(), env, log);
    // Tokio's output() pipes stderr whatever was configured.
    cmd.args(args);
    let output = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("connector-token finished in time")
        .unwrap();
    Refused {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// One bad configuration: what it is, the arguments, the environment, and
/// the text its error line must contain.
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'static str, String)>, String);

/// Bad configuration at start (missing secret file, bad or insecure URL, a
/// secret and a private key at once, by flags or environment, a bad mode, a
/// missing folder; for agent, exec and get): exit 2, one line naming the
/// problem, nothing on stdout, no file written, no token requested. The same
/// configuration without the fault works (`get` prints a token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_exits_2_with_one_line_and_writes_nothing() {
    tokio::task::spawn_blocking(binary).await.unwrap();
    let server = TestServer::start(&config(4)).await;
    let scratch = scratch();
    let secret = secret_file(&scratch);
    let out_dir = scratch.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("token");
    let out = out.to_str().unwrap();
    let (_key, pem) = oidc_core::keys::LocalSigner::generate(Algorithm::ES256).unwrap();
    let key = scratch.path("client.pem");
    std::fs::write(&key, pem.as_str()).unwrap();
    let key = key.to_str().unwrap();
    let good = env_for(&server.token_url(), &secret);
    let with = |name: &'static str, value: &str| {
        let mut env: Vec<(&str, String)> = good.iter().filter(|(k, _)| *k != name).cloned().collect();
        env.push((name, value.to_owned()));
        env
    };
    let missing = scratch.path("no-such-secret");
    let missing = missing.to_str().unwrap();
    let key_out = out_dir.join("dpop.pem");
    let key_out = key_out.to_str().unwrap();

    let cases: Vec<Case> = vec![
        (
            "missing secret file",
            vec!["agent", "--out", out],
            with("CONNECTOR_CLIENT_SECRET_FILE", missing),
            format!("cannot read client secret from {missing}: No such file or directory"),
        ),
        (
            "bad URL",
            vec!["agent", "--out", out],
            with("CONNECTOR_TOKEN_URL", "not a url"),
            "token URL \"not a url\" is not a valid URL".into(),
        ),
        (
            "plain http to another host",
            vec!["agent", "--out", out],
            with("CONNECTOR_TOKEN_URL", "http://tokens.example.com/token"),
            "token URL http://tokens.example.com/token must use https".into(),
        ),
        (
            "a secret and a private key",
            vec![
                "agent",
                "--out",
                out,
                "--client-secret-file",
                &secret,
                "--private-key",
                key,
            ],
            good.clone(),
            "the argument '--client-secret-file <PATH>' cannot be used with '--private-key <PATH>'".into(),
        ),
        (
            "a secret from the environment and a private key",
            vec!["agent", "--out", out, "--private-key", key],
            good.clone(),
            "cannot be used with".into(),
        ),
        (
            "a bad mode",
            vec!["agent", "--out", out, "--mode", "0999"],
            good.clone(),
            "invalid value '0999' for '--mode <MODE>'".into(),
        ),
        (
            "a missing folder",
            vec!["agent", "--out", "/nonexistent/folder/token"],
            good.clone(),
            "cannot use the directory /nonexistent/folder: No such file or directory".into(),
        ),
        (
            "exec with a missing secret file",
            vec!["exec", "--out", out, "--", "touch", out],
            with("CONNECTOR_CLIENT_SECRET_FILE", missing),
            "cannot read client secret from".into(),
        ),
        (
            "exec with --dpop-key-out but no DPoP",
            vec!["exec", "--out", out, "--dpop-key-out", key_out, "--", "true"],
            good.clone(),
            "--dpop".into(),
        ),
        (
            "exec with --dpop-key-out in a missing folder",
            vec![
                "exec",
                "--out",
                out,
                "--dpop",
                "--dpop-key-out",
                "/nonexistent/folder/dpop.pem",
                "--",
                "true",
            ],
            good.clone(),
            "cannot use the directory /nonexistent/folder: No such file or directory".into(),
        ),
        (
            "get with a bad URL",
            vec!["get"],
            with("CONNECTOR_TOKEN_URL", "ftp://127.0.0.1/token"),
            "token URL".into(),
        ),
    ];
    for (i, (what, args, env, problem)) in cases.into_iter().enumerate() {
        let log = scratch.path(&format!("case-{i}.log"));
        let run = run_to_end(&args, &env, &log).await;
        assert_eq!(run.code, Some(2), "{what}: exit code; stderr: {}", run.stderr);
        assert_eq!(run.stdout, "", "{what}");
        assert_eq!(run.stderr.lines().count(), 1, "{what}: one line: {}", run.stderr);
        assert!(
            run.stderr.starts_with("connector-token: "),
            "{what}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(&problem), "{what}: {}", run.stderr);
        assert!(!run.stderr.contains(SECRET), "{what}: the secret in the message");
        assert!(
            std::fs::read_dir(&out_dir).unwrap().next().is_none(),
            "{what}: something was written"
        );
    }
    assert_eq!(
        server.token_requests(),
        0,
        "a bad configuration requested a token"
    );

    // The good configuration works.
    let log = scratch.path("get.log");
    let run = run_to_end(&["get"], &good, &log).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let printed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(printed["expires_in"], 4);
    assert_eq!(
        server.verify(printed["access_token"].as_str().unwrap()).await.sub,
        SECRET_CLIENT
    );
}

/// Variables set in the two deployment fragments, by container.
const FRAGMENT_VARIABLES: &str = r#"
import json, sys, yaml
ecs = json.load(open(sys.argv[1]))
pod = yaml.safe_load(open(sys.argv[2]))["spec"]
out = {}
for c in ecs["containerDefinitions"]:
    out["ecs/" + c["name"]] = [e["name"] for e in c.get("environment", [])]
for c in pod.get("initContainers", []) + pod["containers"]:
    out["k8s/" + c["name"]] = [e["name"] for e in c.get("env", [])]
print(json.dumps(out))
"#;

/// The ECS and Kubernetes fragments and docs/connector-token.md name only
/// variables and flags the binary reads (`--help` lists each with its
/// variable), and both fragments give the connector the file the sidecar
/// writes: documentation and deployment cannot drift from the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_fragments_and_docs_use_only_what_the_binary_reads() {
    tokio::task::spawn_blocking(binary).await.unwrap();
    let mut help = String::new();
    for command in ["get", "agent", "exec", "proof"] {
        let output = tokio::process::Command::new(binary())
            .args([command, "--help"])
            .output()
            .await
            .unwrap();
        assert!(output.status.success());
        help.push_str(&String::from_utf8(output.stdout).unwrap());
    }
    let known_variable = |name: &str| help.contains(&format!("[env: {name}="));
    let known_flag = |flag: &str| help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n"));

    let ecs = e2e::workspace_path("deploy/ecs/connector-token-task.json");
    let pod = e2e::workspace_path("deploy/kubernetes/connector-token-pod.yaml");
    let out = e2e::tools::run_python(
        FRAGMENT_VARIABLES,
        &[ecs.to_str().unwrap(), pod.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let containers: Value = serde_json::from_str(&out.stdout).unwrap();
    for (container, names) in containers.as_object().unwrap() {
        for name in names.as_array().unwrap() {
            let name = name.as_str().unwrap();
            assert!(
                !name.starts_with("CONNECTOR_") || known_variable(name),
                "{container} sets {name}, which connector-token does not read"
            );
        }
    }
    for platform in ["ecs", "k8s"] {
        let sidecar = &containers[format!("{platform}/connector-token")];
        let connector = &containers[format!("{platform}/connector")];
        assert!(
            sidecar
                .as_array()
                .unwrap()
                .contains(&Value::from("CONNECTOR_TOKEN_FILE")),
            "{platform}"
        );
        assert!(
            connector
                .as_array()
                .unwrap()
                .contains(&Value::from("CONNECTOR_TOKEN_FILE")),
            "{platform}"
        );
    }

    let docs = std::fs::read_to_string(e2e::workspace_path("docs/connector-token.md")).unwrap();
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for word in words(&docs) {
        // CONNECTOR_TOKEN_FILE and CONNECTOR_TOKEN_INFO_FILE are also what exec sets.
        if word.starts_with("CONNECTOR_") {
            assert!(known_variable(&word), "docs/connector-token.md names {word}");
        }
    }
    for line in docs
        .lines()
        .filter(|l| l.contains("connector-token agent") || l.contains("connector-token exec"))
    {
        let from = line.find("connector-token ").unwrap();
        // Up to the end of the code span, and before `--` (the command's own flags).
        let command = line[from..].split('`').next().unwrap();
        let command = command.split(" -- ").next().unwrap();
        for flag in words(command)
            .into_iter()
            .filter(|w| w.starts_with("--") && w.len() > 2)
        {
            assert!(known_flag(&flag), "docs/connector-token.md uses {flag}: {line}");
        }
    }
}
