//! The `oidc-server` binary with KMS, as an operator uses it: `serve
//! --kms-key-id KEY` on the config in force, and `keys init | show |
//! rotate` on a key-set secret, against moto_server, with the embedded
//! default configuration (the rules run on the key set's own timings) and
//! with the local clock hours off (they run on Secrets Manager's clock).

use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::cli::{binary, command as oidc_server, envelope_init_args, run, run_command, text, Running};
use e2e::moto::{self, free_port, Moto};
use oidc_core::keys::der;
use oidc_core::{AccessTokenClaims, Policy, Verifier};

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

/// `oidc-server keys ARGS` with the process clock moved by `offset` (a
/// libfaketime offset such as `+3h`).
async fn run_skewed(bin: &std::path::Path, moto: &Moto, offset: &str, args: &[&str]) -> std::process::Output {
    let mut command = oidc_server(bin, moto, args);
    command
        .env("LD_PRELOAD", e2e::tools::faketime_library())
        .env("FAKETIME", offset)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    run_command(command).await
}

fn show_json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[tokio::test]
async fn keys_init_show_and_rotate_follow_the_documents_rules_on_secrets_managers_clock() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let secret = moto::unique("cli-key-set");
    let bin = binary().await;

    // P = 1, A = 1, T = 3, L = 1, W = 2: rotations at least 7 s apart,
    // whatever the embedded default config (T = 900, A = 300) would say.
    let init = envelope_init_args(&secret, &sym, "https://issuer.test", [3, 1, 1, 1, 2]);
    let args: Vec<&str> = init.iter().map(String::as_str).collect();
    let out = run(&bin, moto, &args).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("warning: poll interval 1 s"),
        "{}",
        text(&out.stderr)
    );
    let first = show_json(&run(&bin, moto, &["keys", "show", "--secret", &secret, "--json"]).await);
    let roles: Vec<&str> = first["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["current", "next"], "{first}");
    assert_eq!(first["timings"]["min_rotation_interval_secs"], 7, "{first}");
    assert_eq!(first["timings"]["rotation_window_secs"], 2, "{first}");
    let created = first["created_at"].as_u64().unwrap();
    assert_eq!(first["next_rotation_at"].as_u64(), Some(created + 7), "{first}");
    let text_show = run(&bin, moto, &["keys", "show", "--secret", &secret]).await;
    assert!(
        text(&text_show.stdout).contains("next rotation allowed: "),
        "{}",
        text(&text_show.stdout)
    );

    // Too early, with the clock right or three hours ahead: refused, with
    // the earliest time; nothing pending is left behind.
    for offset in ["+0", "+3h"] {
        let out = run_skewed(&bin, moto, offset, &["keys", "rotate", "--secret", &secret]).await;
        assert_eq!(out.status.code(), Some(1), "{offset}: {}", text(&out.stdout));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("rotation refused") && stderr.contains("earliest allowed: "),
            "{stderr}"
        );
        let earliest = aws_sdk_secretsmanager::primitives::DateTime::from_secs((created + 7) as i64)
            .fmt(aws_sdk_secretsmanager::primitives::DateTimeFormat::DateTime)
            .unwrap();
        assert!(
            stderr.contains(&earliest),
            "{offset}: {stderr} (expected {earliest})"
        );
    }
    let after = show_json(&run(&bin, moto, &["keys", "show", "--secret", &secret, "--json"]).await);
    assert_eq!(after["version_id"], first["version_id"]);
    assert!(
        !after["versions"].to_string().contains("AWSPENDING"),
        "a refused rotation leaves no pending version: {after}"
    );

    // Once allowed, with the clock three hours behind: rotated.
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    let out = run_skewed(&bin, moto, "-3h", &["keys", "rotate", "--secret", &secret]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rotated = show_json(&run(&bin, moto, &["keys", "show", "--secret", &secret, "--json"]).await);
    let kid = |doc: &serde_json::Value, role: &str| {
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["role"] == role)
            .map(|k| k["kid"].as_str().unwrap().to_owned())
    };
    assert_eq!(kid(&rotated, "previous"), kid(&first, "current"));
    assert_eq!(kid(&rotated, "current"), kid(&first, "next"));
    assert!(kid(&rotated, "next").is_some() && kid(&rotated, "next") != kid(&first, "next"));
    assert!(
        rotated["versions"].to_string().contains("AWSPREVIOUS"),
        "{rotated}"
    );

    // With the clock three hours ahead, the last step's rotation window is
    // still read on Secrets Manager's clock: rotated, not "too late".
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    let out = run_skewed(&bin, moto, "+3h", &["keys", "rotate", "--secret", &secret]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = show_json(&run(&bin, moto, &["keys", "show", "--secret", &secret, "--json"]).await);
    assert_eq!(kid(&again, "current"), kid(&rotated, "next"));

    // A second init does not overwrite the set.
    let out = run(&bin, moto, &args).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exists already"),
        "{}",
        text(&out.stderr)
    );
}
