//! What each crate's users compile (ARCHITECTURE.md): a connector never
//! builds the issuer's AWS services, and a verifier-only build of oidc-core
//! stays small. Read from `cargo tree`, as an operator would check it.

use std::process::Command;

/// `cargo tree` of `package` (normal dependencies), one crate name per line.
fn tree(package: &str, extra: &[&str]) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .current_dir(e2e::workspace_path(""))
        .args([
            "tree", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}",
        ])
        .args(extra)
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn a_connector_build_has_no_kms_or_secrets_manager_sdk() {
    for features in [&[][..], &["--all-features"][..]] {
        let crates = tree("connector-client", features);
        assert!(
            crates.iter().any(|c| c == "aws-sigv4"),
            "aws-iam is a default feature: {crates:?}"
        );
        for issuer_side in ["aws-sdk-kms", "aws-sdk-secretsmanager", "aws-sdk-dynamodb"] {
            assert!(
                !crates.iter().any(|c| c == issuer_side),
                "connector-client {features:?} compiles {issuer_side}"
            );
        }
    }
}

#[test]
fn a_verifier_only_oidc_core_stays_small() {
    let crates = tree("oidc-core", &["--no-default-features"]);
    // 32 distinct crates when this test was written (issue 26); a few more
    // is a dependency's update, many more a feature that leaked into the
    // default build.
    assert!(crates.len() <= 40, "{} crates: {crates:?}", crates.len());
    assert!(!crates.iter().any(|c| c.starts_with("aws-")), "{crates:?}");
}
