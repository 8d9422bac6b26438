//! The `oidc-server` binary with KMS, as an operator uses it: `serve
//! --kms-key-id KEY` on the config in force, and `keys stage | show |
//! promote` on a key-set secret, against moto_server.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::moto::{self, free_port, Moto};
use oidc_core::internal::der;
use oidc_core::{AccessTokenClaims, Policy, Verifier};

/// Kills the server however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn binary() -> std::path::PathBuf {
    tokio::task::spawn_blocking(|| e2e::built_executable(&["--bin", "oidc-server"], "oidc-server"))
        .await
        .unwrap()
}

fn oidc_server(bin: &std::path::Path, moto: &Moto, args: &[&str]) -> Command {
    let mut command = Command::new(bin);
    command
        .envs(moto.env())
        .env_remove("OIDC_SERVER_CONFIG")
        .env_remove("OIDC_SERVER_CONFIG_TOML")
        .env("RUST_LOG", "warn")
        .args(args);
    command
}

async fn run(bin: &std::path::Path, moto: &Moto, args: &[&str]) -> Output {
    let mut command = oidc_server(bin, moto, args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The RFC 7638 thumbprint of a KMS key's public key, read with the SDK.
async fn kms_thumbprint(moto: &Moto, key_id: &str) -> String {
    let kms = aws_sdk_kms::Client::new(&moto.sdk_config().await);
    let public = kms.get_public_key().key_id(key_id).send().await.unwrap();
    der::spki_public_key(public.public_key().unwrap().as_ref())
        .unwrap()
        .thumbprint()
}

#[tokio::test]
async fn serve_with_kms_key_id_signs_through_kms() {
    let moto = Moto::shared();
    let alias = moto::create_signing_key(&moto.sdk_config().await, "ECC_NIST_P256").await;
    let bin = binary().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");
    // The embedded development config, with KMS signing instead of its local key.
    let child = oidc_server(
        &bin,
        moto,
        &[
            "serve",
            "--kms-key-id",
            &alias,
            "--listen",
            &addr,
            "--issuer",
            &url,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let _running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = e2e::http().get(format!("{url}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secret = std::fs::read_to_string(e2e::workspace_path("keys-example/demo-connector.secret")).unwrap();
    let body: serde_json::Value = e2e::http()
        .post(format!("{url}/token"))
        .basic_auth("demo-connector", Some(secret.trim()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = body["access_token"].as_str().unwrap_or_else(|| panic!("{body}"));

    let keys = oidc_core::verify::RemoteJwks::builder(format!("{url}/.well-known/jwks.json"))
        .build()
        .unwrap();
    let policy = Policy::builder(url.clone(), ["http://127.0.0.1:9090"])
        .build()
        .unwrap();
    let verified = Verifier::new(policy, keys)
        .verify::<AccessTokenClaims>(token)
        .await
        .unwrap();
    assert_eq!(verified.claims().sub, "demo-connector");
    assert_eq!(
        verified.kid(),
        kms_thumbprint(moto, &alias).await,
        "signed by the KMS key, not the local one"
    );
}

#[tokio::test]
async fn keys_stage_show_and_promote_follow_the_rules() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let first = moto::create_signing_key(&sdk, "ECC_NIST_P256").await;
    let second = moto::create_signing_key(&sdk, "ECC_NIST_P256").await;
    let secret = moto::unique("cli-key-set");
    let bin = binary().await;

    // Into an empty set, the first key is active at once.
    let out = run(
        &bin,
        moto,
        &[
            "keys", "stage", "--secret", &secret, "--kind", "kms", "--key-id", &first,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let show = run(&bin, moto, &["keys", "show", "--secret", &secret]).await;
    assert!(show.status.success(), "{}", text(&show.stderr));
    let first_kid = kms_thumbprint(moto, &first).await;
    let stdout = text(&show.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains(&first_kid))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.trim_start().starts_with("active") && line.contains("signing now"),
        "{stdout}"
    );

    // Nothing staged: nothing to promote.
    let out = run(&bin, moto, &["keys", "promote", "--secret", &secret]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("stage one first"),
        "{}",
        text(&out.stderr)
    );

    // A second key is staged as next and may not be promoted before it is mature.
    let out = run(
        &bin,
        moto,
        &[
            "keys", "stage", "--secret", &secret, "--kind", "kms", "--key-id", &second,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(
        &run(&bin, moto, &["keys", "show", "--secret", &secret])
            .await
            .stdout,
    );
    let second_kid = kms_thumbprint(moto, &second).await;
    let line = stdout
        .lines()
        .find(|l| l.contains(&second_kid))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.trim_start().starts_with("next"), "{stdout}");
    assert!(
        stdout.contains(&format!("promote {second_kid}: at ")),
        "show says when: {stdout}"
    );
    let out = run(&bin, moto, &["keys", "promote", "--secret", &secret]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("may be promoted at"),
        "{}",
        text(&out.stderr)
    );
    // And nothing is retiring yet.
    let out = run(&bin, moto, &["keys", "retire", "--secret", &secret]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("nothing to retire"),
        "{}",
        text(&out.stderr)
    );
}
