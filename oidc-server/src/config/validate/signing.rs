//! `[signing]`: a local key, one KMS key, or a key set in Secrets Manager.

use std::time::Duration;

use oidc_core::Algorithm;

use super::Problems;
use crate::config::raw::{AwsTimings, SigningSection};
use crate::config::{aws_defaults, KeySetConfig, KmsConfig, KmsKey, LocalKey, Origin, SigningConfig};

pub(super) fn signing(
    section: &SigningSection,
    origin: &Origin,
    request_timeout_secs: u64,
    p: &mut Problems,
) -> Option<SigningConfig> {
    let timings = section.aws_timings();
    match section {
        SigningSection::Local {
            key_file,
            generate,
            algorithm,
        } => local_key(
            origin,
            key_file.as_deref(),
            generate.as_deref(),
            algorithm.as_deref(),
            p,
        )
        .map(SigningConfig::Local),
        SigningSection::Kms {
            key_id,
            key_set_secret,
            algorithm,
            max_concurrency,
            ..
        } => kms(
            key_id.as_deref(),
            key_set_secret.as_deref(),
            algorithm.as_deref(),
            *max_concurrency,
            timings,
            request_timeout_secs,
            p,
        )
        .map(SigningConfig::Kms),
        SigningSection::KmsEnvelope { key_set_secret, .. } => match key_set_secret {
            Some(secret) => key_set(secret, timings, request_timeout_secs, p).map(SigningConfig::KmsEnvelope),
            None => {
                p.add(
                    "signing.key_set_secret",
                    "kind = \"kms-envelope\" needs the Secrets Manager secret holding the key set \
                     (create one with `oidc-server keys init --kind kms-envelope --key-id KMS_KEY --secret NAME`)",
                );
                None
            }
        },
    }
}

fn algorithm(text: Option<&str>, p: &mut Problems) -> Option<Option<Algorithm>> {
    match text.map(str::parse::<Algorithm>) {
        None => Some(None),
        Some(Ok(alg)) => Some(Some(alg)),
        Some(Err(e)) => {
            p.add("signing.algorithm", e.to_string());
            None
        }
    }
}

fn local_key(
    origin: &Origin,
    key_file: Option<&str>,
    generate: Option<&str>,
    algorithm_text: Option<&str>,
    p: &mut Problems,
) -> Option<LocalKey> {
    let algorithm = algorithm(algorithm_text, p)?;
    match (key_file, generate) {
        (Some(_), Some(_)) => {
            p.add("signing", "set either key_file or generate, not both");
            None
        }
        (None, None) => {
            p.add(
                "signing",
                "a local signing key needs key_file (PKCS#8 PEM) or generate = \"ES256\" (ephemeral, development)",
            );
            None
        }
        (None, Some(alg)) => match alg.parse::<Algorithm>() {
            Ok(alg @ (Algorithm::ES256 | Algorithm::EdDSA)) => Some(LocalKey::Generate(alg)),
            Ok(other) => {
                p.add(
                    "signing.generate",
                    format!("cannot generate {other} keys; use ES256 or EdDSA"),
                );
                None
            }
            Err(e) => {
                p.add("signing.generate", e.to_string());
                None
            }
        },
        (Some(file), None) => {
            let pem = match origin.read(file) {
                Ok(text) => oidc_core::keys::Pkcs8Pem::from_string(text),
                Err(e) => {
                    p.add("signing.key_file", e);
                    return None;
                }
            };
            let key = LocalKey::Pem {
                pem,
                algorithm,
                file: file.to_owned(),
            };
            match key.signer() {
                Ok(_) => Some(key),
                Err(e) => {
                    p.add("signing.key_file", format!("{file}: {e}"));
                    None
                }
            }
        }
    }
}

/// `[signing] kind = "kms"`: one fixed key, or a key set.
fn kms(
    key_id: Option<&str>,
    key_set_secret: Option<&str>,
    algorithm_text: Option<&str>,
    max_concurrency: Option<usize>,
    timings: AwsTimings,
    request_timeout_secs: u64,
    p: &mut Problems,
) -> Option<KmsConfig> {
    let algorithm = algorithm(algorithm_text, p);
    let max_concurrency = max_concurrency.unwrap_or(aws_defaults::MAX_CONCURRENCY);
    let max_concurrency = p.require(
        (1..=1024).contains(&max_concurrency),
        max_concurrency,
        "signing.max_concurrency",
        "must be between 1 and 1024",
    );
    let call_timeout = call_timeout(timings.call_timeout_ms, request_timeout_secs, p);
    let key = match (key_id, key_set_secret) {
        (Some(_), Some(_)) => {
            p.add(
                "signing",
                "set either key_id (one fixed KMS key) or key_set_secret (a rotating key set), not both",
            );
            None
        }
        (None, None) => {
            p.add(
                "signing.key_id",
                "kind = \"kms\" needs key_id (key id, ARN or alias/NAME) or key_set_secret (a rotating key set)",
            );
            None
        }
        (Some(id), None) => p
            .require(!id.trim().is_empty(), (), "signing.key_id", "is empty")
            .and(algorithm)
            .map(|algorithm| KmsKey::Fixed {
                key_id: id.to_owned(),
                algorithm,
            }),
        (None, Some(secret)) => {
            if algorithm.is_some_and(|a| a.is_some()) {
                p.add(
                    "signing.algorithm",
                    "applies to key_id only: each key of a key set records its own algorithm",
                );
            }
            key_set(secret, timings, request_timeout_secs, p).map(KmsKey::Rotating)
        }
    };
    Some(KmsConfig {
        key: key?,
        max_concurrency: max_concurrency?,
        call_timeout: call_timeout?,
    })
}

fn call_timeout(ms: Option<u64>, request_timeout_secs: u64, p: &mut Problems) -> Option<Duration> {
    let ms = ms.unwrap_or(aws_defaults::CALL_TIMEOUT_MS);
    // Signing gets 80% of the request timeout; a call that may take longer
    // would turn a failing KMS into a timeout instead of a clear answer.
    let budget_ms = request_timeout_secs.saturating_mul(800);
    p.require(
        ms >= 100 && ms < budget_ms.max(101),
        Duration::from_millis(ms),
        "signing.call_timeout_ms",
        format!("must be at least 100 and below 80% of http.request_timeout_secs ({budget_ms} ms)"),
    )
}

fn key_set(
    secret: &str,
    timings: AwsTimings,
    request_timeout_secs: u64,
    p: &mut Problems,
) -> Option<KeySetConfig> {
    let secret = p.require(
        !secret.trim().is_empty(),
        secret.to_owned(),
        "signing.key_set_secret",
        "is empty",
    );
    let poll = timings
        .poll_interval_secs
        .unwrap_or(aws_defaults::POLL_INTERVAL_SECS);
    let poll = p.require(
        (1..=3600).contains(&poll),
        Duration::from_secs(poll),
        "signing.poll_interval_secs",
        "must be between 1 and 3600",
    );
    let leeway = timings.leeway_secs.unwrap_or(aws_defaults::LEEWAY_SECS);
    let leeway = p.require(
        leeway <= 600,
        Duration::from_secs(leeway),
        "signing.leeway_secs",
        "must be at most 600",
    );
    let call_timeout = call_timeout(timings.call_timeout_ms, request_timeout_secs, p);
    Some(KeySetConfig {
        secret: secret?,
        poll_interval: poll?,
        call_timeout: call_timeout?,
        leeway: leeway?,
    })
}
