//! `[dpop]`: the proofs the token endpoint accepts, and its optional
//! server nonces (a key every replica shares, from a file or the
//! environment).

use std::str::FromStr;
use std::time::Duration;

use oidc_core::dpop::{
    DpopNonces, DpopVerifier, DEFAULT_MAX_AGE, DEFAULT_MAX_FUTURE_SKEW, DEFAULT_NONCE_STEP, MIN_NONCE_KEY_LEN,
};
use oidc_core::Algorithm;
use zeroize::Zeroizing;

use super::Problems;
use crate::config::raw::DpopSection;
use crate::config::{DpopConfig, Origin};

pub(super) fn dpop(section: &DpopSection, origin: &Origin, p: &mut Problems) -> Option<DpopConfig> {
    let algorithms = match &section.algorithms {
        None => Some(Algorithm::ALL.to_vec()),
        Some(names) => {
            let mut algorithms = Vec::new();
            for name in names {
                match Algorithm::from_str(name) {
                    Ok(alg) => algorithms.push(alg),
                    Err(error) => p.add(
                        "dpop.algorithms",
                        format!(
                            "{error}; proofs may use {}",
                            Algorithm::ALL.map(|a| a.name()).join(", ")
                        ),
                    ),
                }
            }
            Some(algorithms)
        }
    };
    let iat_window = section
        .iat_window_secs
        .map_or(DEFAULT_MAX_AGE, Duration::from_secs);
    let algorithms = algorithms?;
    // The verifier's own rules (at least one algorithm, a window of 1 to 600 s).
    if let Err(error) = DpopVerifier::builder()
        .algorithms(algorithms.iter().copied())
        .iat_window(iat_window, DEFAULT_MAX_FUTURE_SKEW)
        .build()
    {
        let field = match error {
            oidc_core::dpop::DpopConfigError::NoAlgorithm => "dpop.algorithms",
            _ => "dpop.iat_window_secs",
        };
        p.add(field, error.to_string());
        return None;
    }
    let key = match (&section.nonce_key_file, &section.nonce_key_env) {
        (Some(_), Some(_)) => {
            p.add(
                "dpop.nonce_key_file",
                "set nonce_key_file or nonce_key_env, not both",
            );
            return None;
        }
        (Some(file), None) => match origin.read(file) {
            Ok(text) => Some((
                Zeroizing::new(text),
                format!("file {file}"),
                "dpop.nonce_key_file",
            )),
            Err(error) => {
                p.add("dpop.nonce_key_file", error);
                return None;
            }
        },
        (None, Some(var)) => match std::env::var(var) {
            Ok(text) => Some((Zeroizing::new(text), format!("${var}"), "dpop.nonce_key_env")),
            Err(_) => {
                p.add(
                    "dpop.nonce_key_env",
                    format!("the environment variable {var:?} is not set (or not UTF-8)"),
                );
                return None;
            }
        },
        (None, None) => {
            if section.nonce_step_secs.is_some() {
                p.add(
                    "dpop.nonce_step_secs",
                    "has no effect without a nonce key: set nonce_key_file or nonce_key_env",
                );
                return None;
            }
            None
        }
    };
    let (nonces, nonce_key_source) = match key {
        None => (None, None),
        Some((text, source, field)) => {
            // The key is the text, without the line end an editor adds.
            let key = text.trim_end_matches(['\n', '\r']);
            let step = section
                .nonce_step_secs
                .map_or(DEFAULT_NONCE_STEP, Duration::from_secs);
            match DpopNonces::new(key.as_bytes(), step) {
                Ok(nonces) => (Some(nonces), Some(source)),
                Err(oidc_core::dpop::NonceSetupError::ShortKey(len)) => {
                    p.add(
                        field,
                        format!(
                            "the nonce key from {source} is {len} bytes; at least {MIN_NONCE_KEY_LEN} are required \
                             (e.g. `openssl rand -base64 48`), the same on every replica"
                        ),
                    );
                    return None;
                }
                Err(error) => {
                    p.add("dpop.nonce_step_secs", error.to_string());
                    return None;
                }
            }
        }
    };
    Some(DpopConfig {
        algorithms,
        iat_window,
        nonces,
        nonce_key_source,
    })
}
