//! Configuration layers and validation.

use oidc_server::config::{Config, ConfigError, Origin, Overrides};

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml(
        toml,
        Origin::File("/nonexistent/config.toml".into()),
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        &Overrides::default(),
    )
}

const MINIMAL: &str = r#"
issuer = "https://tokens.example.com"
[signing]
kind = "local"
generate = "ES256"
[[connectors]]
id = "c1"
secret_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
audiences = ["https://api.example.com"]
"#;

#[test]
fn embedded_default_is_valid_and_matches_keys_example() {
    let config = Config::load(None, std::iter::empty(), &Overrides::default()).unwrap();
    assert_eq!(config.issuer, "http://127.0.0.1:8080");
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.origin, Origin::Embedded);
    let demo = config
        .connectors
        .iter()
        .find(|c| c.id == "demo-connector")
        .unwrap();
    // The digest in the embedded config is the digest of the secret file's line.
    let secret = include_str!("../../../keys-example/demo-connector.secret").trim();
    assert_eq!(
        hex::encode(demo.secret_sha256.unwrap()),
        oidc_server::connectors::secret_digest_hex(secret)
    );
}

#[test]
fn environment_and_command_line_override_fields() {
    let env = [
        ("OIDC_SERVER__TOKENS__DEFAULT_TTL_SECS", "120"),
        ("OIDC_SERVER__HTTP__JWKS_MAX_AGE_SECS", "60"),
        ("OIDC_SERVER__LOG__FORMAT", "json"),
        ("UNRELATED", "x"),
    ];
    let config = load(MINIMAL, &env).unwrap();
    assert_eq!(config.lifetime.default_ttl().as_secs(), 120);
    assert_eq!(config.http.jwks_max_age.as_secs(), 60);
    assert_eq!(config.log.format, oidc_server::config::LogFormat::Json);

    let overrides = Overrides {
        listen: Some("0.0.0.0:9999".into()),
        issuer: Some("https://other.example.com".into()),
    };
    let env = [("OIDC_SERVER__ISSUER", "https://from-env.example.com")];
    let config = Config::from_toml(
        MINIMAL,
        Origin::Embedded,
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        &overrides,
    )
    .unwrap();
    assert_eq!(
        config.issuer, "https://other.example.com",
        "command line beats environment"
    );
    assert_eq!(config.listen.to_string(), "0.0.0.0:9999");
}

#[test]
fn every_problem_is_reported_with_its_field() {
    let toml = r#"
issuer = "http://tokens.example.com/"
listen = "nowhere"
[tokens]
default_ttl_secs = 1000
max_ttl_secs = 900
[signing]
kind = "local"
[[connectors]]
id = "bad id!"
secret_sha256 = "zz"
audiences = []
scopes = ["a"]
default_scopes = ["b"]
attributes = { sub = "admin" }
[[connectors]]
id = "c2"
audiences = ["x"]
"#;
    let Err(ConfigError::Invalid { problems, .. }) = load(toml, &[]) else {
        panic!("expected an invalid config");
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    for field in [
        "issuer",
        "listen",
        "tokens",
        "signing",
        "connectors[0].id",
        "connectors[0].secret_sha256",
        "connectors[0].audiences",
        "connectors[0].default_scopes",
        "connectors[0].attributes",
        "connectors[1]",
    ] {
        assert!(
            fields.contains(&field),
            "no problem reported for {field}: {problems:#?}"
        );
    }
    let text = ConfigError::Invalid {
        origin: "x".into(),
        problems,
    }
    .to_string();
    assert!(text.contains("use https"), "{text}");
    assert!(text.contains("would shadow a registered claim"), "{text}");
}

#[test]
fn unknown_fields_and_bad_toml_are_refused_with_a_location() {
    let err = load(&format!("{MINIMAL}\n[http]\nbody_limit = 5\n"), &[]).unwrap_err();
    assert!(err.to_string().contains("body_limit"), "{err}");
    let err = load("issuer = ", &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    let err = load(
        &MINIMAL.replace("generate = \"ES256\"", "generate = \"RS256\""),
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot generate RS256"), "{err}");
}

#[test]
fn issuer_rules() {
    for (issuer, ok) in [
        ("https://tokens.example.com", true),
        ("https://tokens.example.com/tenant-1", true),
        ("http://127.0.0.1:8080", true),
        ("http://localhost:8080", true),
        ("http://[::1]:8080", true),
        ("http://tokens.example.com", false),
        ("https://tokens.example.com/", false),
        ("https://tokens.example.com?x=1", false),
        ("ftp://tokens.example.com", false),
        ("https://", false),
    ] {
        let toml = MINIMAL.replace("https://tokens.example.com", issuer);
        assert_eq!(load(&toml, &[]).is_ok(), ok, "{issuer}");
    }
}

fn signing_problems(signing: &str) -> Vec<String> {
    let toml = MINIMAL.replace("kind = \"local\"\ngenerate = \"ES256\"", signing);
    match load(&toml, &[]) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => problems.iter().map(|p| p.field.clone()).collect(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn kms_signing_fields_are_checked() {
    assert!(signing_problems("kind = \"kms\"\nkey_id = \"alias/tokens\"").is_empty());
    assert!(signing_problems(
        "kind = \"kms\"\nkey_id = \"arn:aws:kms:eu-west-1:123456789012:key/1234\"\nalgorithm = \"PS256\""
    )
    .is_empty());
    assert!(
        signing_problems("kind = \"kms\"\nkey_set_secret = \"tokens/keys\"\npoll_interval_secs = 10")
            .is_empty()
    );
    assert_eq!(signing_problems("kind = \"kms\""), ["signing.key_id"]);
    assert_eq!(
        signing_problems("kind = \"kms\"\nkey_id = \"alias/a\"\nkey_set_secret = \"s\""),
        ["signing"]
    );
    assert_eq!(
        signing_problems("kind = \"kms\"\nkey_set_secret = \"s\"\nalgorithm = \"RS256\""),
        ["signing.algorithm"],
        "a key set records each key's algorithm"
    );
    assert_eq!(
        signing_problems("kind = \"kms\"\nkey_id = \"alias/a\"\nalgorithm = \"HS256\""),
        ["signing.algorithm"]
    );
    assert_eq!(
        signing_problems("kind = \"kms\"\nkey_id = \"alias/a\"\nmax_concurrency = 0"),
        ["signing.max_concurrency"]
    );
    // A KMS call must fit well inside the request timeout (10 s by default).
    assert_eq!(
        signing_problems("kind = \"kms\"\nkey_id = \"alias/a\"\ncall_timeout_ms = 9000"),
        ["signing.call_timeout_ms"]
    );
}

#[test]
fn envelope_signing_fields_are_checked() {
    assert!(signing_problems("kind = \"kms-envelope\"\nkey_set_secret = \"tokens/keys\"").is_empty());
    assert!(!signing_problems("kind = \"kms-envelope\"").is_empty());
    assert_eq!(
        signing_problems("kind = \"kms-envelope\"\nkey_set_secret = \"s\"\npoll_interval_secs = 0"),
        ["signing.poll_interval_secs"]
    );
    assert_eq!(
        signing_problems("kind = \"kms-envelope\"\nkey_set_secret = \"s\"\nleeway_secs = 3600"),
        ["signing.leeway_secs"]
    );
    let err = load(
        &MINIMAL.replace("generate = \"ES256\"", "generate = \"ES256\"\nkey_id = \"x\""),
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("key_id"),
        "fields of another kind are refused: {err}"
    );
}
