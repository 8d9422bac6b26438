//! The command line: exit codes and outputs of each subcommand.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn oidc_server(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oidc-server"))
        .env_remove("OIDC_SERVER_CONFIG")
        .args(args)
        .output()
        .unwrap()
}

fn with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oidc-server"))
        .env_remove("OIDC_SERVER_CONFIG")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("oidc-server-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A key, its JWKS file, and a token signed with it by `issue`.
fn issued_token(dir: &std::path::Path, extra: &[&str]) -> (String, std::path::PathBuf) {
    let key = dir.join("key.pem");
    let keygen = oidc_server(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    let jwk: serde_json::Value = serde_json::from_slice(&keygen.stdout).unwrap();
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, serde_json::json!({ "keys": [jwk] }).to_string()).unwrap();
    let mut args = vec![
        "issue",
        "--key",
        key.to_str().unwrap(),
        "--issuer",
        "https://tokens.example.com",
        "--subject",
        "c1",
        "--audience",
        "https://api.example.com",
    ];
    args.extend_from_slice(extra);
    let issue = oidc_server(&args);
    assert!(issue.status.success(), "{}", text(&issue.stderr));
    (text(&issue.stdout).trim().to_owned(), jwks_file)
}

#[test]
fn keygen_writes_a_private_pem_and_prints_the_jwk() {
    let dir = temp_dir("keygen");
    let key = dir.join("k.pem");
    let out = oidc_server(&["keygen", "--alg", "EdDSA", "--out", key.to_str().unwrap()]);
    assert!(out.status.success());
    let jwk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jwk["crv"], "Ed25519");
    assert!(jwk.get("d").is_none(), "the JWK is public");
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Never overwrites.
    let again = oidc_server(&["keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    let bad = oidc_server(&["keygen", "--alg", "HS256"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn connectors_add_prints_a_secret_once_and_an_entry_with_its_digest() {
    let out = oidc_server(&[
        "connectors",
        "add",
        "--id",
        "c9",
        "--audience",
        "https://api.example.com",
        "--scope",
        "actions:read",
        "--attribute",
        "org_id=org-9",
    ]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("#   "))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        oidc_core::base64url::decode(&secret).unwrap().len(),
        32,
        "256-bit secret"
    );
    let entry: toml::Table = stdout.parse().unwrap();
    let connector = &entry["connectors"][0];
    assert_eq!(
        connector["secret_sha256"].as_str().unwrap(),
        oidc_server::connectors::secret_digest_hex(&secret)
    );
    assert_eq!(connector["attributes"]["org_id"].as_str(), Some("org-9"));
    // The printed entry is a valid connector for a config.
    let config = format!(
        "issuer = \"https://t.example.com\"\n[signing]\nkind = \"local\"\ngenerate = \"ES256\"\n{stdout}"
    );
    let dir = temp_dir("add");
    std::fs::write(dir.join("c.toml"), config).unwrap();
    let check = oidc_server(&["check-config", dir.join("c.toml").to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check.stderr));
}

#[test]
fn issue_and_verify_round_trip_with_exit_codes() {
    let dir = temp_dir("verify");
    let (token, jwks) = issued_token(&dir, &["--ttl", "120", "--scope", "actions:read"]);
    let jwks = jwks.to_str().unwrap();
    let base = [
        "verify",
        "--issuer",
        "https://tokens.example.com",
        "--audience",
        "https://api.example.com",
        "--jwks-file",
        jwks,
    ];

    let mut args = base.to_vec();
    args.push(&token);
    let ok = oidc_server(&args);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let claims: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(claims["sub"], "c1");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        120
    );

    // From stdin, with "-" or nothing.
    let mut args = base.to_vec();
    args.push("-");
    assert_eq!(with_stdin(&args, &format!("{token}\n")).status.code(), Some(0));
    assert_eq!(with_stdin(&base, &token).status.code(), Some(0));

    // Rejected: exit 1 and one line "rejected: REASON".
    let mut args = base.to_vec();
    args[4] = "https://other.example.com";
    args.push(&token);
    let rejected = oidc_server(&args);
    assert_eq!(rejected.status.code(), Some(1));
    let stderr = text(&rejected.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("rejected: audience"), "{stderr}");

    let mut args = base.to_vec();
    args.push("not-a-token");
    let rejected = oidc_server(&args);
    assert_eq!(rejected.status.code(), Some(1));
    assert!(text(&rejected.stderr).starts_with("rejected: malformed token"));

    // Usage and configuration errors: exit 2.
    assert_eq!(
        oidc_server(&["verify", "--issuer", "x", "--audience", "y", &token])
            .status
            .code(),
        Some(2)
    );
    let missing = oidc_server(&[
        "verify",
        "--issuer",
        "x",
        "--audience",
        "y",
        "--jwks-file",
        "/nonexistent",
        &token,
    ]);
    assert_eq!(missing.status.code(), Some(2));
    let http = oidc_server(&[
        "verify",
        "--issuer",
        "x",
        "--audience",
        "y",
        "--jwks-url",
        "http://example.com/jwks",
        &token,
    ]);
    assert_eq!(
        http.status.code(),
        Some(2),
        "plain http to a non-loopback host is refused"
    );
}

#[test]
fn check_config_explains_each_error() {
    let dir = temp_dir("check");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "issuer = \"http://example.com\"\n[signing]\nkind = \"local\"\nkey_file = \"missing.pem\"\n",
    )
    .unwrap();
    let out = oidc_server(&["check-config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("issuer:") && stderr.contains("use https"),
        "{stderr}"
    );
    assert!(
        stderr.contains("signing.key_file:") && stderr.contains("missing.pem"),
        "{stderr}"
    );

    let ok = oidc_server(&["check-config"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("embedded development default"));
}

#[test]
fn check_config_explains_upstream_issuers_and_refuses_ambiguous_bindings() {
    let dir = temp_dir("check-upstream");
    let file = dir.join("exchange.toml");
    let config = |second_subject: &str| {
        format!(
            r#"issuer = "https://tokens.example.com"
[signing]
kind = "local"
generate = "ES256"
[replay]
store = "dynamodb"
table = "replay"

[[upstream_issuers]]
name = "aws"
issuer = "https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tokens.sts.global.api.aws"
typ = ["JWT"]
algorithms = ["RS256", "ES384"]
max_lifetime_secs = 3600

[[upstream_issuers]]
name = "k8s"
issuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
typ = [""]
algorithms = ["RS256"]
one_time_use = false

[[connectors]]
id = "poller"
audiences = ["https://api.example.com"]
federated = [{{ issuer = "aws", subject = "arn:aws:iam::123456789012:role/connectors/*" }}]

[[connectors]]
id = "other"
audiences = ["https://api.example.com"]
federated = [{{ issuer = "aws", subject = "{second_subject}" }}]
"#
        )
    };
    std::fs::write(&file, config("arn:aws:iam::123456789012:role/other")).unwrap();
    let out = oidc_server(&["check-config", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "upstream issuer aws (upstream_issuers[0]): iss https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tokens.sts.global.api.aws; \
         aud one of https://tokens.example.com; algorithms RS256, ES384; typ JWT; lifetime at most 3600 s",
        "each token exchanged once",
        "keys by discovery (https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.tokens.sts.global.api.aws/.well-known/openid-configuration)",
        "bound to 2 connector(s)",
        "note: no connector binds upstream issuer k8s",
        "warning: upstream issuer k8s has one_time_use = false and no max_token_age_secs",
    ] {
        assert!(stdout.contains(expected), "{expected}\nin {stdout}");
    }
    // A second role pattern that overlaps the first: refused, exit 2.
    std::fs::write(&file, config("arn:aws:iam::123456789012:role/*/poller")).unwrap();
    let out = oidc_server(&["check-config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "connectors[1].federated[0]: could match the same upstream tokens as connectors[0].federated[0]"
        ),
        "{stderr}"
    );
}

#[test]
fn verify_with_a_trust_file_names_the_entry() {
    let dir = temp_dir("verify-trust");
    let (token, jwks) = issued_token(&dir, &[]);
    let trust = dir.join("trust.toml");
    let write = |issuer: &str, audience: &str| {
        std::fs::write(
            &trust,
            format!(
                "[[issuers]]\nname = \"tenant-1\"\nissuer = \"{issuer}\"\naudiences = [\"{audience}\"]\n\
                 jwks_file = \"{}\"\n\n[[issuers]]\nname = \"down\"\nissuer = \"http://127.0.0.1:1\"\n\
                 audiences = [\"{audience}\"]\n",
                jwks.file_name().unwrap().to_str().unwrap()
            ),
        )
        .unwrap();
    };
    let trust_arg = trust.to_str().unwrap();
    write("https://tokens.example.com", "https://api.example.com");

    let ok = oidc_server(&["verify", "--trust", trust_arg, &token]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let out: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(out["issuer_name"], "tenant-1");
    assert_eq!(out["claims"]["sub"], "c1");
    assert_eq!(
        with_stdin(&["verify", "--trust", trust_arg, "-"], &token)
            .status
            .code(),
        Some(0)
    );

    // Rejected, exit 1: the entry's audience, then an issuer not in the file.
    write("https://tokens.example.com", "https://other.example.com");
    let rejected = oidc_server(&["verify", "--trust", trust_arg, &token]);
    assert_eq!(rejected.status.code(), Some(1));
    assert!(
        text(&rejected.stderr).starts_with("rejected: audience"),
        "{}",
        text(&rejected.stderr)
    );
    write("https://tokens.example.org", "https://api.example.com");
    let unknown = oidc_server(&["verify", "--trust", trust_arg, &token]);
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = text(&unknown.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("rejected: issuer \"https://tokens.example.com\" is not trusted"),
        "{stderr}"
    );

    // Exit 2: a bad file, --trust with --issuer, an issuer whose keys cannot be fetched.
    std::fs::write(&trust, "[[issuers]]\nname = \"x\"\n").unwrap();
    let bad = oidc_server(&["verify", "--trust", trust_arg, &token]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("trust file is not valid"),
        "{}",
        text(&bad.stderr)
    );
    let both = oidc_server(&["verify", "--trust", trust_arg, "--issuer", "x", &token]);
    assert_eq!(both.status.code(), Some(2));
    let down = dir.join("down.toml");
    std::fs::write(
        &down,
        "[[issuers]]\nname = \"down\"\nissuer = \"https://tokens.example.com\"\n\
         audiences = [\"https://api.example.com\"]\njwks_uri = \"http://127.0.0.1:1/jwks.json\"\n",
    )
    .unwrap();
    let unavailable = oidc_server(&["verify", "--trust", down.to_str().unwrap(), &token]);
    assert_eq!(
        unavailable.status.code(),
        Some(2),
        "{}",
        text(&unavailable.stderr)
    );
    assert!(
        text(&unavailable.stderr).contains("key set unavailable"),
        "{}",
        text(&unavailable.stderr)
    );
}
