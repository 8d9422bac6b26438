//! `oidc-server keys ...`: the KMS-backed key set in Secrets Manager: create
//! an envelope key, stage a KMS or envelope key as next, promote, retire, and
//! show the key set with what may happen next and when. The rotation rules
//! (in `oidc_core::keyset::rotation`) are enforced here and by every server.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use oidc_core::internal::{SystemClock, WallClock};
use oidc_core::keys::kms_envelope::{self, SealedKey};
use oidc_core::keys::{KmsOptions, KmsSigner, Pkcs8Pem, Signer};
use oidc_core::keyset::aws::{KeySetError, KeySetSecret, StageOutcome};
use oidc_core::keyset::rotation::{KeyBackend, KeyRecord, RotationTimings, StagedKeys};
use oidc_core::Algorithm;

use super::{load, runtime, CliError};
use crate::config::{aws_defaults, Config, KeySetConfig, Overrides};

/// `keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the key set: kids, stages, publication and activation times, and
    /// what may happen next and when.
    Show(SecretArgs),
    /// Generate a key locally and encrypt it under a symmetric KMS key; print
    /// its record (JSON, no plaintext) to stage later with `keys stage --record`.
    CreateEnvelope(CreateEnvelopeArgs),
    /// Stage a new key as next: published now, promotable once every replica
    /// and every verifier's cache has it. With no key active it is active at once.
    Stage(StageArgs),
    /// Make the next key active (the active key becomes retiring).
    Promote(SecretArgs),
    /// Remove the retiring key, once its last token has expired.
    Retire(SecretArgs),
}

/// Which key-set secret.
#[derive(Debug, Args, Default)]
pub struct SecretArgs {
    /// The key-set secret (default: `[signing] key_set_secret` of the config in force).
    #[arg(long)]
    pub secret: Option<String>,
}

/// Key kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyKind {
    /// An asymmetric KMS key signs every token.
    Kms,
    /// A local key kept encrypted under a symmetric KMS key.
    KmsEnvelope,
}

/// `keys create-envelope`.
#[derive(Debug, Args)]
pub struct CreateEnvelopeArgs {
    /// The symmetric KMS key to encrypt with (id, ARN or alias).
    #[arg(long)]
    pub kms_key_id: String,
    /// ES256 or EdDSA for a generated key; for --pem, RS256 or PS256 picks the RSA algorithm.
    #[arg(long)]
    pub alg: Option<String>,
    /// Encrypt this PKCS#8 PEM key instead of generating one.
    #[arg(long)]
    pub pem: Option<PathBuf>,
    /// Issuer bound into the encryption context (default: the config's).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Write the record here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `keys stage`.
#[derive(Debug, Args)]
pub struct StageArgs {
    /// Which secret.
    #[command(flatten)]
    pub secret: SecretArgs,
    /// What kind of key (with --key-id).
    #[arg(long, value_enum, requires = "key_id", conflicts_with = "record")]
    pub kind: Option<KeyKind>,
    /// kms: the asymmetric signing key; kms-envelope: the symmetric key to encrypt a new key with.
    #[arg(long, requires = "kind")]
    pub key_id: Option<String>,
    /// kms: RS256 or PS256 for an RSA key; kms-envelope: ES256 (default) or EdDSA.
    #[arg(long)]
    pub alg: Option<String>,
    /// Stage a record made by `keys create-envelope`.
    #[arg(long)]
    pub record: Option<PathBuf>,
}

/// Runs `keys ...`.
pub(super) fn run(config_path: Option<PathBuf>, command: KeysCommand) -> Result<(), CliError> {
    let config = load(config_path, &Overrides::default())?;
    runtime()?.block_on(async move {
        let sdk = oidc_core::aws::load_sdk_config().await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        let mut options = KmsOptions::default();
        options.calls.call_timeout = Duration::from_secs(10);
        let clock = SystemClock;
        let open_secret = |args: &SecretArgs| -> Result<(KeySetSecret, RotationTimings), CliError> {
            let set = key_set_config(&config, args).map_err(CliError::Usage)?;
            let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
            let timings = crate::signing::rotation_timings(&config, &set);
            Ok((KeySetSecret::new(&secrets, set.secret, options.clone()), timings))
        };
        match command {
            KeysCommand::Show(args) => {
                let (secret, timings) = open_secret(&args)?;
                show(&secret, &timings, clock.now()).await
            }
            KeysCommand::CreateEnvelope(args) => {
                create_envelope(&config, &kms, &options, args, clock.now()).await
            }
            KeysCommand::Stage(args) => {
                let (secret, timings) = open_secret(&args.secret)?;
                stage(&config, &kms, &options, &secret, &timings, args, clock.now()).await
            }
            KeysCommand::Promote(args) => {
                let (secret, timings) = open_secret(&args)?;
                let now = clock.now();
                let before = secret.promote(&timings, now).await?;
                let kid = before
                    .next
                    .as_ref()
                    .map(|k| k.record.kid().to_owned())
                    .unwrap_or_default();
                println!("promoted {kid}: active from {now}");
                if let Some(active) = &before.active {
                    if active.record.kid() != kid {
                        println!(
                            "{} is retiring: retire it at {} (`oidc-server keys retire`)",
                            active.record.kid(),
                            timings.retirable_at(&next_active(&before, now))
                        );
                    }
                }
                Ok(())
            }
            KeysCommand::Retire(args) => {
                let (secret, timings) = open_secret(&args)?;
                let before = secret.retire(&timings, clock.now()).await?;
                let kid = before
                    .retiring
                    .as_ref()
                    .map(|k| k.record.kid().to_owned())
                    .unwrap_or_default();
                println!("retired {kid}: no longer published");
                Ok(())
            }
        }
    })
}

impl From<KeySetError> for CliError {
    /// Secrets Manager failed or the rotation rules refused the step.
    fn from(e: KeySetError) -> Self {
        Self::failed(e)
    }
}

/// The active record as it is right after promoting `before.next` at `now`.
fn next_active(before: &StagedKeys, now: u64) -> KeyRecord {
    let mut record = before
        .next
        .as_ref()
        .map(|k| k.record.clone())
        .unwrap_or_else(|| unreachable!("promote succeeded, so a next key existed"));
    record.activated_at = Some(now);
    record
}

/// The key set of the config in force, or `--secret` with default timings.
fn key_set_config(config: &Config, args: &SecretArgs) -> Result<KeySetConfig, String> {
    let configured = config.signing.key_set().cloned();
    match (configured, &args.secret) {
        (Some(mut set), Some(secret)) => {
            set.secret = secret.clone();
            Ok(set)
        }
        (Some(set), None) => Ok(set),
        (None, Some(secret)) => Ok(KeySetConfig {
            secret: secret.clone(),
            poll_interval: Duration::from_secs(aws_defaults::POLL_INTERVAL_SECS),
            call_timeout: Duration::from_millis(aws_defaults::CALL_TIMEOUT_MS),
            leeway: Duration::from_secs(aws_defaults::LEEWAY_SECS),
        }),
        (None, None) => {
            Err("no key set: pass --secret NAME or use a config whose [signing] has key_set_secret".into())
        }
    }
}

async fn show(secret: &KeySetSecret, timings: &RotationTimings, now: u64) -> Result<(), CliError> {
    let keys = secret.read().await?;
    println!("key set {} (now {now})", secret.secret_id());
    println!(
        "rules: a key signs {} s after publication (poll {} s + JWKS max-age {} s); a retiring key is removed {} s after \
         the next activation (+ max TTL {} s + leeway {} s)",
        timings.maturity_secs(),
        timings.poll_interval.as_secs(),
        timings.jwks_max_age.as_secs(),
        timings.maturity_secs(),
        timings.max_ttl.as_secs(),
        timings.leeway.as_secs()
    );
    if keys.iter().next().is_none() {
        println!("(no keys)");
    }
    let signing: Vec<String> = keys
        .signing_candidates(timings, now)
        .first()
        .map(|c| c.key.record.kid().to_owned())
        .into_iter()
        .collect();
    for (stage, key) in keys.iter() {
        let record = &key.record;
        let location = match &record.backend {
            KeyBackend::Kms { key_id } => format!("kms {key_id}"),
            KeyBackend::KmsEnvelope { kms_key_id, .. } => format!("kms-envelope under {kms_key_id}"),
        };
        let activated = record
            .activated_at
            .map(|at| format!(", activated {at} ({})", ago(now, at)))
            .unwrap_or_default();
        let signs = if signing.iter().any(|kid| kid == record.kid()) {
            ", signing now"
        } else {
            ""
        };
        println!(
            "  {:<8} {} {} {location}; published {} ({}){activated}{signs}; version {}",
            stage.name(),
            record.kid(),
            record.algorithm(),
            record.published_at,
            ago(now, record.published_at),
            key.version_id
        );
    }
    println!("next:");
    for step in keys.next_steps(timings, now) {
        println!("  - {step}");
    }
    Ok(())
}

fn ago(now: u64, at: u64) -> String {
    if at <= now {
        format!("{} s ago", now - at)
    } else {
        format!("in {} s", at - now)
    }
}

/// Reads `--pem` and picks the algorithm; or `None` to generate.
fn pem_arg(pem: &Option<PathBuf>) -> Result<Option<Pkcs8Pem>, CliError> {
    pem.as_ref()
        .map(|path| {
            std::fs::read_to_string(path)
                .map(Pkcs8Pem::from_string)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
        })
        .transpose()
}

fn parse_alg(alg: &Option<String>) -> Result<Option<Algorithm>, CliError> {
    alg.as_deref()
        .map(|a| {
            a.parse::<Algorithm>()
                .map_err(|e| CliError::Usage(format!("--alg: {e}")))
        })
        .transpose()
}

async fn seal_key(
    kms: &aws_sdk_kms::Client,
    options: &KmsOptions,
    kms_key_id: &str,
    issuer: &str,
    alg: Option<Algorithm>,
    pem: Option<Pkcs8Pem>,
) -> Result<SealedKey, CliError> {
    let sealed = match pem {
        Some(pem) => kms_envelope::seal(kms, kms_key_id, issuer, &pem, alg, options).await,
        None => {
            let alg = alg.unwrap_or(Algorithm::ES256);
            if alg.is_rsa() {
                return Err(CliError::Usage(
                    "RSA keys cannot be generated here: make one with OpenSSL and pass --pem".into(),
                ));
            }
            kms_envelope::create(kms, kms_key_id, issuer, alg, options).await
        }
    };
    sealed.map_err(|e| CliError::Failed(e.to_string()))
}

fn envelope_record(sealed: SealedKey, now: u64) -> KeyRecord {
    KeyRecord {
        backend: KeyBackend::KmsEnvelope {
            kms_key_id: sealed.kms_key_id,
            ciphertext: sealed.ciphertext,
        },
        verifying_key: sealed.verifying_key,
        published_at: now,
        activated_at: None,
    }
}

async fn create_envelope(
    config: &Config,
    kms: &aws_sdk_kms::Client,
    options: &KmsOptions,
    args: CreateEnvelopeArgs,
    now: u64,
) -> Result<(), CliError> {
    let issuer = args.issuer.clone().unwrap_or_else(|| config.issuer.clone());
    let sealed = seal_key(
        kms,
        options,
        &args.kms_key_id,
        &issuer,
        parse_alg(&args.alg)?,
        pem_arg(&args.pem)?,
    )
    .await?;
    let kid = sealed.verifying_key.kid().to_owned();
    let text = envelope_record(sealed, now).to_json();
    match &args.out {
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
            println!("{kid}");
        }
        None => println!("{text}"),
    }
    eprintln!(
        "envelope key {kid} encrypted under {} for issuer {issuer}",
        args.kms_key_id
    );
    Ok(())
}

async fn stage(
    config: &Config,
    kms: &aws_sdk_kms::Client,
    options: &KmsOptions,
    secret: &KeySetSecret,
    timings: &RotationTimings,
    args: StageArgs,
    now: u64,
) -> Result<(), CliError> {
    let record = match (&args.record, args.kind, &args.key_id) {
        (Some(path), _, _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
            KeyRecord::from_json(text.trim())
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        }
        (None, Some(KeyKind::Kms), Some(key_id)) => {
            let mut options = options.clone();
            options.algorithm = parse_alg(&args.alg)?;
            // Resolve the key now: its public key is published from the record,
            // so every replica publishes it even before it can reach KMS.
            let signer = KmsSigner::connect(kms, key_id, options)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            KeyRecord {
                backend: KeyBackend::Kms {
                    key_id: signer.key_arn().to_owned(),
                },
                verifying_key: signer.verifying_key().clone(),
                published_at: now,
                activated_at: None,
            }
        }
        (None, Some(KeyKind::KmsEnvelope), Some(key_id)) => {
            let sealed = seal_key(kms, options, key_id, &config.issuer, parse_alg(&args.alg)?, None).await?;
            envelope_record(sealed, now)
        }
        _ => {
            return Err(CliError::Usage(
                "give --kind kms|kms-envelope with --key-id, or --record FILE".into(),
            ))
        }
    };
    let kid = record.kid().to_owned();
    let staged_at = timings.signs_from(&KeyRecord {
        published_at: now,
        ..record.clone()
    });
    match secret.stage(record, now).await? {
        StageOutcome::Staged { version_id } => {
            println!(
                "staged {kid} as next (version {version_id}); it may be promoted at {staged_at} (in {} s)",
                staged_at - now
            );
        }
        StageOutcome::ActivatedAtOnce { version_id } => {
            println!("no key was active: {kid} is active now (version {version_id})");
        }
    }
    Ok(())
}
