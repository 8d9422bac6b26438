//! `oidc-server keys init` as a newcomer runs it from docs/deploy.md, against
//! moto_server: with the embedded development default it refuses to bind a
//! set to the development issuer unless `--issuer` names one; when the
//! envelope key does not exist it prints no success, says what to do, and
//! doing that (create the key, `keys rotate`) finishes the set.

use e2e::cli::{binary, envelope_init_args, run, text};
use e2e::moto::{self, Moto};

#[tokio::test]
async fn init_without_issuer_on_the_development_default_is_refused_and_creates_nothing() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let sym = moto::create_symmetric_key(&sdk).await;
    let secret = moto::unique("init-no-issuer");
    let bin = binary().await;

    let out = run(
        &bin,
        moto,
        &[
            "keys",
            "init",
            "--secret",
            &secret,
            "--kind",
            "kms-envelope",
            "--key-id",
            &sym,
        ],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--issuer"), "{stderr}");
    assert!(stderr.contains("embedded development default"), "{stderr}");
    assert!(!text(&out.stdout).contains("created"), "{}", text(&out.stdout));
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let described = secrets.describe_secret().secret_id(&secret).send().await;
    assert!(described.is_err(), "no secret may be created: {described:?}");

    // Naming the issuer is all it takes.
    let mut args = envelope_init_args(
        &secret,
        &sym,
        "https://tokens.example.com",
        [900, 300, 30, 60, 300],
    );
    args.truncate(10); // keys init --secret S --kind kms-envelope --key-id K --issuer URL
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&bin, moto, &args).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("for https://tokens.example.com"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn init_with_a_missing_envelope_key_claims_no_success_and_its_advice_finishes_the_set() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let alias = format!("alias/{}", moto::unique("not-yet"));
    let secret = moto::unique("init-missing-key");
    let bin = binary().await;

    let args = envelope_init_args(
        &secret,
        &alias,
        "https://tokens.example.com",
        [900, 300, 30, 60, 300],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&bin, moto, &args).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stdout.contains("created key set"),
        "success printed before it was true: {stdout}"
    );
    assert!(
        stderr.contains(&format!("symmetric KMS key {alias} must exist")),
        "{stderr}"
    );
    let advice = format!("oidc-server keys rotate --secret {secret}");
    assert!(stderr.contains(&advice), "{stderr}");

    // Follow the advice: create the key under that alias, then rotate.
    let kms = aws_sdk_kms::Client::new(&sdk);
    let key = moto::create_symmetric_key(&sdk).await;
    kms.create_alias()
        .alias_name(&alias)
        .target_key_id(&key)
        .send()
        .await
        .expect("CreateAlias");
    let out = run(&bin, moto, &["keys", "rotate", "--secret", &secret]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let show = run(&bin, moto, &["keys", "show", "--secret", &secret, "--json"]).await;
    assert!(show.status.success(), "{}", text(&show.stderr));
    let report: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let roles: Vec<&str> = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["current", "next"], "{report}");
    assert_eq!(report["issuer"], "https://tokens.example.com");
}
