//! `oidc-server keys ...`: the key set in Secrets Manager that rotates by
//! itself. `init` creates it (its template, then its first document: a
//! current and a next key); `rotate` runs the four steps of Secrets
//! Manager's rotation protocol, the ones the stack's rotation function runs
//! on schedule; `show` prints the set in force. The rules run on the
//! document's own timings and Secrets Manager's clock
//! (`crate::keyset::rules`), whatever this command's configuration says.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::keyset::document::{KeyMaterial, KeyRef, KeySetTemplate, KeySetValue, SetKind, Timings};
use crate::keyset::{KeySetError, KeySetSecret, Rotation};
use aws_sdk_secretsmanager::primitives::{DateTime, DateTimeFormat};
use clap::{Args, Subcommand, ValueEnum};
use oidc_core::keys::KmsOptions;
use oidc_core::Algorithm;
use serde_json::{json, Value};

use super::{load, runtime, CliError};
use crate::config::{aws_defaults, Config, Origin, Overrides};

/// `keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the key set: its secret, then its first document (a current
    /// key that signs at once and a next key, published).
    Init(Box<InitArgs>),
    /// Rotate the key set now (previous ← current ← next ← a new key), if the
    /// rules allow: exit 1 with the reason and the earliest allowed time if not.
    Rotate(RotateArgs),
    /// Show the set in force: each key's role and age, the rules' timings,
    /// when the next rotation is allowed, KMS keys pending deletion.
    Show(ShowArgs),
}

/// Which key-set secret.
#[derive(Debug, Args, Default)]
pub struct SecretArgs {
    /// The key-set secret (default: `[signing] key_set_secret` of the config in force).
    #[arg(long)]
    pub secret: Option<String>,
}

/// Key set kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyKind {
    /// Asymmetric KMS keys: every token is one KMS `Sign`; the rotation creates them.
    Kms,
    /// Local keys kept encrypted under a symmetric KMS key.
    KmsEnvelope,
}

/// `keys init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Which secret (created here).
    #[command(flatten)]
    pub secret: SecretArgs,
    /// What kind of keys.
    #[arg(long, value_enum)]
    pub kind: KeyKind,
    /// kms-envelope: the symmetric KMS key new keys are sealed under (id, ARN or alias).
    #[arg(long)]
    pub key_id: Option<String>,
    /// ES256 (default) or EdDSA for kms-envelope; ES256, RS256 or PS256 for kms.
    #[arg(long)]
    pub alg: Option<String>,
    /// The issuer the set signs for (default: the config's).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Longest token lifetime (default: the config's `tokens.max_ttl_secs`).
    #[arg(long)]
    pub max_token_lifetime_secs: Option<u64>,
    /// JWKS max-age (default: the config's `http.jwks_max_age_secs`).
    #[arg(long)]
    pub jwks_max_age_secs: Option<u64>,
    /// How often every replica reads the set (default: the config's, or 30).
    #[arg(long)]
    pub poll_interval_secs: Option<u64>,
    /// Verifiers' clock leeway (default: the config's, or 60).
    #[arg(long)]
    pub leeway_secs: Option<u64>,
    /// The longest a rotation may take from its first step to its last (a
    /// later last step is refused and the rotation starts over; default 300).
    #[arg(long)]
    pub rotation_window_secs: Option<u64>,
    /// kms: the key spec of new keys (default: ECC_NIST_P256 for ES256, RSA_2048 for RS256/PS256).
    #[arg(long)]
    pub key_spec: Option<String>,
    /// kms: a principal (role ARN) the new keys' policy lets sign; repeatable.
    #[arg(long = "signer")]
    pub signers: Vec<String>,
    /// kms: a principal the new keys' policy lets manage them (the rotation role); repeatable.
    #[arg(long = "administrator")]
    pub administrators: Vec<String>,
    /// kms: waiting period of a leaving key's deletion, 7 to 30 days.
    #[arg(long, default_value_t = 30)]
    pub deletion_window_days: u32,
    /// kms: an existing KMS key to make the first current key (instead of creating one).
    #[arg(long)]
    pub first_key_id: Option<String>,
    /// Write only the template: the first rotation (the stack's rotation
    /// function, or `keys rotate`) makes the first document.
    #[arg(long)]
    pub template_only: bool,
}

/// `keys rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Which secret.
    #[command(flatten)]
    pub secret: SecretArgs,
    /// kms sets: use this KMS key as the new next key instead of creating one.
    #[arg(long)]
    pub next_key_id: Option<String>,
}

/// `keys show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Which secret.
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `keys ...`.
pub(super) fn run(config_path: Option<PathBuf>, command: KeysCommand) -> Result<(), CliError> {
    let config = load(config_path, &Overrides::default())?;
    runtime()?.block_on(async move {
        let sdk = oidc_core::aws::load_sdk_config().await;
        let mut options = KmsOptions::default();
        options.calls.call_timeout = Duration::from_secs(10);
        match command {
            KeysCommand::Init(args) => {
                let template = template(&config, &args)?;
                let secret = secret_name(&config, &args.secret)?;
                let rotation = Rotation::connect(&sdk, &secret, options);
                init(&rotation, &template, args.template_only).await
            }
            KeysCommand::Rotate(args) => {
                let secret = secret_name(&config, &args.secret)?;
                let mut rotation = Rotation::connect(&sdk, &secret, options);
                if let Some(key_id) = args.next_key_id {
                    rotation = rotation.with_next_key(key_id);
                }
                rotate(&rotation).await
            }
            KeysCommand::Show(args) => {
                let secret = secret_name(&config, &args.secret)?;
                let rotation = Rotation::connect(&sdk, &secret, options);
                let report = report(&rotation).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                } else {
                    print_report(&report);
                }
                Ok(())
            }
        }
    })
}

impl From<KeySetError> for CliError {
    /// Secrets Manager or KMS failed, or the rules refused the rotation.
    fn from(e: KeySetError) -> Self {
        match e {
            KeySetError::TooEarly(early) => Self::Failed(format!(
                "rotation refused: {early}; earliest allowed: {}",
                rfc3339(early.earliest)
            )),
            e => Self::failed(e),
        }
    }
}

/// `--secret`, or the config's key set.
fn secret_name(config: &Config, args: &SecretArgs) -> Result<String, CliError> {
    match (&args.secret, config.signing.key_set()) {
        (Some(secret), _) => Ok(secret.clone()),
        (None, Some(set)) => Ok(set.secret.clone()),
        (None, None) => Err(CliError::Usage(
            "no key set: pass --secret NAME or use a config whose [signing] has key_set_secret".into(),
        )),
    }
}

/// The template `keys init` writes, checked the way a server reads it.
fn template(config: &Config, args: &InitArgs) -> Result<KeySetTemplate, CliError> {
    let usage = |m: &str| CliError::Usage(m.to_owned());
    let alg = args
        .alg
        .as_deref()
        .map(|a| {
            a.parse::<Algorithm>()
                .map_err(|e| CliError::Usage(format!("--alg: {e}")))
        })
        .transpose()?
        .unwrap_or(Algorithm::ES256);
    let kind = match args.kind {
        KeyKind::KmsEnvelope => {
            if !args.signers.is_empty() || !args.administrators.is_empty() || args.key_spec.is_some() {
                return Err(usage(
                    "--signer, --administrator and --key-spec apply to --kind kms",
                ));
            }
            if args.first_key_id.is_some() {
                return Err(usage("--first-key-id names a KMS signing key: --kind kms only"));
            }
            if !matches!(alg, Algorithm::ES256 | Algorithm::EdDSA) {
                return Err(usage(
                    "kms-envelope keys are generated here: --alg ES256 or EdDSA",
                ));
            }
            SetKind::KmsEnvelope {
                kms_key_id: args
                    .key_id
                    .clone()
                    .ok_or_else(|| usage("--kind kms-envelope needs --key-id SYMMETRIC_KMS_KEY"))?,
                alg,
            }
        }
        KeyKind::Kms => {
            if args.key_id.is_some() {
                return Err(usage(
                    "--key-id is the envelope key of --kind kms-envelope; a kms set creates its keys \
                     (or adopts one: --first-key-id)",
                ));
            }
            let key_spec = match (&args.key_spec, alg) {
                (Some(spec), _) => spec.clone(),
                (None, Algorithm::ES256) => "ECC_NIST_P256".into(),
                (None, Algorithm::RS256 | Algorithm::PS256) => "RSA_2048".into(),
                (None, other) => return Err(CliError::Usage(format!("KMS has no {other} signing keys"))),
            };
            SetKind::Kms {
                key_spec,
                alg,
                signers: args.signers.clone(),
                administrators: args.administrators.clone(),
                deletion_window_days: args.deletion_window_days,
            }
        }
    };
    let set = config.signing.key_set();
    let secs = Duration::from_secs;
    let timings = Timings {
        max_token_lifetime: args
            .max_token_lifetime_secs
            .map_or(config.lifetime.max_ttl(), secs),
        jwks_max_age: args.jwks_max_age_secs.map_or(config.http.jwks_max_age, secs),
        poll_interval: args
            .poll_interval_secs
            .map(secs)
            .unwrap_or_else(|| set.map_or(secs(aws_defaults::POLL_INTERVAL_SECS), |s| s.poll_interval)),
        leeway: args
            .leeway_secs
            .map(secs)
            .unwrap_or_else(|| set.map_or(secs(aws_defaults::LEEWAY_SECS), |s| s.leeway)),
        rotation_window: args
            .rotation_window_secs
            .map_or(Timings::DEFAULT_ROTATION_WINDOW, secs),
    };
    let template = KeySetTemplate {
        issuer: issuer(config, args)?,
        kind,
        timings,
        first_key_id: args.first_key_id.clone(),
    };
    // What a server and the rotation will read: refused here, not there.
    match KeySetValue::parse(&template.to_json()) {
        Ok(KeySetValue::Template(parsed)) => Ok(parsed),
        Ok(KeySetValue::Document(_)) => unreachable!("a template has no keys"),
        Err(e) => Err(CliError::Usage(e.to_string())),
    }
}

/// The issuer a new set signs for: `--issuer`, else the config's. A set
/// keeps its issuer for good and a server with another one refuses it, so
/// the embedded development default's loopback issuer is never taken
/// silently: the operator names the issuer (or the config that has it).
fn issuer(config: &Config, args: &InitArgs) -> Result<String, CliError> {
    match &args.issuer {
        Some(issuer) => Ok(issuer.clone()),
        None if config.origin == Origin::Embedded => Err(CliError::Usage(format!(
            "keys init: pass --issuer URL (your server's issuer, e.g. https://tokens.example.com) or \
             --config FILE (your server's configuration): the config in force is the embedded development \
             default, and a key set keeps its issuer for good (its issuer would be {}, which a server \
             with another issuer refuses)",
            config.issuer
        ))),
        None => Ok(config.issuer.clone()),
    }
}

async fn init(rotation: &Rotation, template: &KeySetTemplate, template_only: bool) -> Result<(), CliError> {
    let secret = rotation.secret();
    for warning in template.timings.warnings() {
        eprintln!("warning: {warning}");
    }
    secret
        .create(
            &template.to_json(),
            &format!(
                "Connector token signing keys of {} (a key set that rotates by itself)",
                template.issuer
            ),
            None,
        )
        .await
        .map_err(|e| match e {
            KeySetError::Refused(reason)
                if reason.contains("ResourceExists") || reason.contains("already exists") =>
            {
                CliError::Failed(format!(
                    "secret {} exists already: rotate it with `oidc-server keys rotate --secret {}`",
                    secret.secret_id(),
                    secret.secret_id()
                ))
            }
            e => e.into(),
        })?;
    let rules = template.timings.min_rotation_interval().as_secs();
    let created = format!(
        "created key set {} ({}, {}) for {}; rotations at least {rules} s apart",
        secret.secret_id(),
        template.kind.name(),
        template.kind.algorithm(),
        template.issuer
    );
    if template_only {
        println!("{created}");
        println!("template only: the first rotation makes the first keys");
        return Ok(());
    }
    // Success is printed once the set has its keys: until then the secret
    // holds the template only, and the operator is told how to finish.
    let first = rotation.rotate().await.map_err(|e| {
        let id = secret.secret_id();
        let needs = match &template.kind {
            SetKind::KmsEnvelope { kms_key_id, .. } => format!(
                "the symmetric KMS key {kms_key_id} must exist (aws kms create-key, then aws kms create-alias \
                 for an alias) and allow this role kms:Encrypt"
            ),
            SetKind::Kms { .. } => {
                "this role must be allowed to create KMS keys (kms:CreateKey with tags) and read their \
                 public keys (kms:GetPublicKey)"
                    .to_owned()
            }
        };
        let cause = match CliError::from(e) {
            CliError::Failed(m) | CliError::Usage(m) => m,
            other => other.to_string(),
        };
        CliError::Failed(format!(
            "the first keys of key set {id} could not be made: {cause}\nThe secret {id} exists and holds \
             the template only; {needs}. Then make the first keys with `oidc-server keys rotate --secret {id}`."
        ))
    })?;
    println!("{created}");
    println!(
        "current {} (signs now), next {} (published)",
        first.current, first.next
    );
    Ok(())
}

async fn rotate(rotation: &Rotation) -> Result<(), CliError> {
    let rotated = rotation.rotate().await?;
    println!(
        "rotated {}: version {}; current {} (signs now), next {} (published)",
        rotation.secret().secret_id(),
        rotated.version_id,
        rotated.current,
        rotated.next
    );
    if let Some(key) = rotated.deleted {
        println!("KMS key {key} left the set: deletion scheduled");
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rfc3339(secs: u64) -> String {
    DateTime::from_secs(i64::try_from(secs).unwrap_or(i64::MAX))
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| secs.to_string())
}

fn key_json(role: &str, key: &KeyRef, created_at: u64, now: u64) -> Value {
    let entered = key.entered(created_at);
    let material = match &key.material {
        KeyMaterial::Kms { key_id } => json!({"kms_key": key_id}),
        KeyMaterial::KmsEnvelope { kms_key_id, .. } => json!({"sealed_under": kms_key_id}),
    };
    json!({
        "role": role,
        "kid": key.kid(),
        "alg": key.verifying_key.algorithm().name(),
        "entered_at": entered,
        "age_secs": now.saturating_sub(entered),
        "material": material,
    })
}

/// What `keys show` prints, as JSON (the text form is made from it).
async fn report(rotation: &Rotation) -> Result<Value, CliError> {
    let secret: &KeySetSecret = rotation.secret();
    let now = now();
    let stored = secret.current().await?.ok_or_else(|| {
        CliError::Failed(format!(
            "secret {} holds no key set yet (or does not exist): a stack's rotation function makes its first \
             one; otherwise create it with `oidc-server keys init`",
            secret.secret_id()
        ))
    })?;
    let stages = secret.stages().await?;
    let mut versions: Vec<Value> = stages
        .iter()
        .map(|(id, labels)| json!({"version_id": id, "stages": labels}))
        .collect();
    versions.sort_by_key(|v| v["version_id"].as_str().map(str::to_owned));
    let (template, keys) = match &stored.value {
        KeySetValue::Template(template) => (template.clone(), Vec::new()),
        KeySetValue::Document(document) => {
            let mut keys = vec![
                key_json("current", &document.current, stored.created_at, now),
                key_json("next", &document.next, stored.created_at, now),
            ];
            if let Some(previous) = &document.previous {
                keys.push(key_json("previous", previous, stored.created_at, now));
            }
            (document.template(), keys)
        }
    };
    let t = template.timings;
    let pending_deletion = match template.kind {
        SetKind::Kms { .. } => rotation
            .keys()
            .pending_deletion()
            .await?
            .into_iter()
            .map(|p| json!({"key_id": p.key_id, "deletion_at": p.deletion_at}))
            .collect(),
        SetKind::KmsEnvelope { .. } => Vec::new(),
    };
    let has_keys = !keys.is_empty();
    Ok(json!({
        "secret": secret.secret_id(),
        "issuer": template.issuer,
        "kind": template.kind.name(),
        "alg": template.kind.algorithm().name(),
        "version_id": stored.version_id,
        "created_at": stored.created_at,
        "now": now,
        "timings": {
            "max_token_lifetime_secs": t.max_token_lifetime.as_secs(),
            "jwks_max_age_secs": t.jwks_max_age.as_secs(),
            "poll_interval_secs": t.poll_interval.as_secs(),
            "leeway_secs": t.leeway.as_secs(),
            "rotation_window_secs": t.window_secs(),
            "maturity_secs": t.maturity_secs(),
            "retire_secs": t.retire_secs(),
            "min_rotation_interval_secs": t.min_rotation_interval().as_secs(),
        },
        "keys": keys,
        // A set with no keys yet may rotate at once (its first document).
        "next_rotation_at": if has_keys { t.earliest_rotation(stored.created_at) } else { stored.created_at },
        // What a server reading the set now would cap its tokens at.
        "signs_until": has_keys.then(|| t.signing_limit(stored.created_at, now)),
        "versions": versions,
        "pending_deletion": pending_deletion,
        "warnings": t.warnings(),
    }))
}

fn ago(now: u64, at: u64) -> String {
    if at <= now {
        format!("{} s ago", now - at)
    } else {
        format!("in {} s", at - now)
    }
}

fn print_report(r: &Value) {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let now = n(&r["now"]);
    let t = &r["timings"];
    println!(
        "key set {} ({} {}) for {}",
        s(&r["secret"]),
        s(&r["kind"]),
        s(&r["alg"]),
        s(&r["issuer"])
    );
    println!(
        "in force: version {} since {} ({})",
        s(&r["version_id"]),
        rfc3339(n(&r["created_at"])),
        ago(now, n(&r["created_at"]))
    );
    println!(
        "rules: token lifetime {} s, JWKS max-age {} s, poll {} s, leeway {} s, rotation window {} s: rotations \
         at least {} s apart",
        n(&t["max_token_lifetime_secs"]),
        n(&t["jwks_max_age_secs"]),
        n(&t["poll_interval_secs"]),
        n(&t["leeway_secs"]),
        n(&t["rotation_window_secs"]),
        n(&t["min_rotation_interval_secs"])
    );
    let keys = r["keys"].as_array().cloned().unwrap_or_default();
    if keys.is_empty() {
        println!("  (no keys yet: the first rotation makes them)");
    }
    for key in keys {
        let material = key["material"]
            .as_object()
            .and_then(|m| m.iter().next())
            .map(|(k, v)| format!("{} {}", k.replace('_', " "), s(v)))
            .unwrap_or_default();
        println!(
            "  {:<8} {} {} entered {} ({}); {material}",
            s(&key["role"]),
            s(&key["kid"]),
            s(&key["alg"]),
            rfc3339(n(&key["entered_at"])),
            ago(now, n(&key["entered_at"]))
        );
    }
    let next = n(&r["next_rotation_at"]);
    println!("next rotation allowed: {} ({})", rfc3339(next), ago(now, next));
    if let Some(until) = r["signs_until"].as_u64() {
        println!(
            "tokens of the current key expire by: {} (for a server reading the set now; every read moves it on)",
            rfc3339(until)
        );
    }
    for version in r["versions"].as_array().into_iter().flatten() {
        let stages: Vec<String> = version["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        println!("  version {} {}", s(&version["version_id"]), stages.join(","));
    }
    for pending in r["pending_deletion"].as_array().into_iter().flatten() {
        let at = pending["deletion_at"]
            .as_u64()
            .map_or_else(|| "?".to_owned(), rfc3339);
        println!(
            "  KMS key {} pending deletion (deleted {at})",
            s(&pending["key_id"])
        );
    }
    for warning in r["warnings"].as_array().into_iter().flatten() {
        println!("warning: {}", s(warning));
    }
}
