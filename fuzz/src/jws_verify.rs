//! `oidc_core::Verifier::verify`, differentially against the `jsonwebtoken`
//! crate, with a fixed key set (an ES256 and an Ed25519 key) and policy.
//!
//! Input: the token text; or, when the first byte is `0x01` (ES256) or
//! `0x02` (EdDSA), a header and claims separated by `\n` that the target
//! signs with that key, after moving the claims' times (ten-digit numbers
//! near [`T0`]) to the same distance from now, so that the fuzzer's tokens
//! can be current.
//!
//! Properties of a token oidc-core accepts:
//! - it re-encodes to the same bytes (each part canonical base64url);
//! - `jsonwebtoken` with the same key, algorithm, issuer, audience and
//!   leeway accepts it too: we may be stricter, never laxer;
//! - any single-byte change of it is refused.

use std::sync::OnceLock;

use jsonwebtoken::{DecodingKey, Validation};
use oidc_core::base64url;
use oidc_core::keys::{LocalSigner, Signer as _, VerifyingKey};
use oidc_core::{Algorithm, JwkSet, Policy, Verifier};
use serde_json::Value;

/// The issuer and audience of the policy.
pub const ISS: &str = "https://tokens.test";
/// The accepted audience.
pub const AUD: &str = "https://control-plane.test";
/// The reference time of the seeds' claims (2023-11-14T22:13:20Z).
pub const T0: u64 = 1_700_000_000;

struct Fixture {
    es256: LocalSigner,
    eddsa: LocalSigner,
    verifier: Verifier<JwkSet>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let es256 = LocalSigner::from_pem(crate::keys::P256).expect("the P-256 test key");
        let eddsa = LocalSigner::from_pem(crate::keys::ED25519).expect("the Ed25519 test key");
        let jwks = JwkSet::from_keys([es256.verifying_key().clone(), eddsa.verifying_key().clone()])
            .expect("a key set");
        let policy = Policy::builder(ISS, [AUD]).build().expect("a policy");
        Fixture {
            es256,
            eddsa,
            verifier: Verifier::new(policy, jwks),
        }
    })
}

/// The kids of the fixed keys (for seeds).
pub fn kids() -> (String, String) {
    let f = fixture();
    (f.es256.kid().to_owned(), f.eddsa.kid().to_owned())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Moves every ten-digit decimal number within 2^24 s of [`T0`] by
/// `now - T0`, in place (the length stays ten digits).
pub fn shift_times(claims: &[u8], now: u64) -> Vec<u8> {
    let mut out = claims.to_vec();
    let mut i = 0;
    while i < out.len() {
        if !out[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < out.len() && out[i].is_ascii_digit() {
            i += 1;
        }
        let boundary_before = start == 0 || !matches!(out[start - 1], b'.' | b'e' | b'E' | b'-' | b'+');
        let boundary_after = i == out.len() || !matches!(out[i], b'.' | b'e' | b'E');
        if i - start == 10 && boundary_before && boundary_after {
            let text = std::str::from_utf8(&out[start..i]).unwrap_or("0");
            let value: u64 = text.parse().unwrap_or(0);
            if value.abs_diff(T0) < 1 << 24 {
                let moved = (value + now).saturating_sub(T0);
                let moved = format!("{moved:010}");
                if moved.len() == 10 {
                    out[start..i].copy_from_slice(moved.as_bytes());
                }
            }
        }
    }
    out
}

fn sign(signer: &LocalSigner, header: &[u8], claims: &[u8]) -> String {
    let mut token = base64url::encode(header);
    token.push('.');
    token.push_str(&base64url::encode(claims));
    let signature = signer.sign_now(token.as_bytes()).expect("local signing");
    token.push('.');
    token.push_str(&base64url::encode(signature));
    token
}

pub fn run(data: &[u8]) {
    let f = fixture();
    let token = match data.split_first() {
        Some((mode @ (1 | 2), rest)) => {
            let parts = crate::split(rest, b'\n', 2);
            let header = parts[0];
            let claims = shift_times(parts.get(1).copied().unwrap_or_default(), now());
            let signer = if *mode == 1 { &f.es256 } else { &f.eddsa };
            sign(signer, header, &claims)
        }
        _ => match std::str::from_utf8(data) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
    };
    check(&token);
}

fn verify(token: &str) -> Result<oidc_core::Verified<Value>, oidc_core::VerifyError> {
    crate::block_on(fixture().verifier.verify::<Value>(token))
}

/// Verifies `token` and checks the properties of an accepted one.
pub fn check(token: &str) {
    let before = now();
    let Ok(verified) = verify(token) else {
        return;
    };
    let f = fixture();
    let key: &VerifyingKey = if verified.kid() == f.es256.kid() {
        f.es256.verifying_key()
    } else {
        f.eddsa.verifying_key()
    };

    // One token, one encoding.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let reencoded: Vec<String> = parts
        .iter()
        .map(|p| base64url::encode(base64url::decode(p).expect("accepted parts decode")))
        .collect();
    assert_eq!(
        reencoded.join("."),
        token,
        "an accepted token does not re-encode to itself"
    );

    // jsonwebtoken accepts what we accept.
    let jwk = key.to_jwk();
    let member = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (decoding, alg) = match verified.algorithm() {
        Algorithm::ES256 => (
            DecodingKey::from_ec_components(&member("x"), &member("y")).expect("EC decoding key"),
            jsonwebtoken::Algorithm::ES256,
        ),
        Algorithm::EdDSA => (
            DecodingKey::from_ed_components(&member("x")).expect("Ed25519 decoding key"),
            jsonwebtoken::Algorithm::EdDSA,
        ),
        other => panic!("accepted {other:?} from a key set of ES256 and EdDSA keys"),
    };
    let mut validation = Validation::new(alg);
    validation.leeway = f.verifier.policy().leeway_secs();
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    if let Err(e) = jsonwebtoken::decode::<Value>(token, &decoding, &validation) {
        use jsonwebtoken::errors::ErrorKind;
        // The clock moved between the two checks: no verdict.
        let racing = matches!(
            e.kind(),
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature
        ) && now() != before;
        assert!(
            racing,
            "oidc-core accepted a token jsonwebtoken refuses ({e:?}): {token}"
        );
    }

    // Every single-byte change is refused: a few positions per input, and
    // the first and last byte of each part.
    let bytes = token.as_bytes();
    let hash = crate::fnv(bytes);
    let mut positions: Vec<usize> = (0..4)
        .map(|i| ((hash >> (i * 16)) as usize) % bytes.len())
        .collect();
    let mut offset = 0;
    for part in &parts {
        positions.push(offset);
        positions.push((offset + part.len()).saturating_sub(1));
        offset += part.len() + 1;
    }
    const REPLACEMENTS: &[u8] = b"A_-.0=+/ z";
    for (n, &at) in positions.iter().enumerate() {
        let Some(&original) = bytes.get(at) else { continue };
        let replacement = REPLACEMENTS[(hash as usize + n) % REPLACEMENTS.len()];
        let replacement = if replacement == original {
            original ^ 1
        } else {
            replacement
        };
        let mut changed = bytes.to_vec();
        changed[at] = replacement;
        let Ok(changed) = String::from_utf8(changed) else {
            continue;
        };
        assert!(
            verify(&changed).is_err(),
            "a single-byte change at {at} ({:?} -> {:?}) of an accepted token is accepted",
            original as char,
            replacement as char
        );
    }
}
