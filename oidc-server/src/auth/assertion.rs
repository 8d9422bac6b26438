//! `private_key_jwt` (RFC 7523 §3): a JWT signed with one of the client's
//! registered keys, for this server, used once, short-lived.
//!
//! Signature and header checks are oidc-core's JWS layer; what is specific to
//! assertions lives here: `iss` = `sub` = the client, `aud` = this issuer (or
//! its token endpoint), a `jti` never seen before, a bounded lifetime, and a
//! `typ` that is not an access token's.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use oidc_core::base64url;
use oidc_core::json;
use oidc_core::jws::UnverifiedJws;
use oidc_core::keys::{PublicKey, VerifyingKey};
use oidc_core::Algorithm;
use serde_json::{Map, Value};

use super::AuthFailure;
use crate::config::ConnectorConfig;
use crate::connectors::Connectors;

/// Largest assertion accepted.
const MAX_ASSERTION_LEN: usize = 8 * 1024;
/// Longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

/// What an assertion must satisfy.
#[derive(Debug, Clone)]
pub(crate) struct AssertionRules {
    /// This issuer: the namespace of assertion ids in the replay store.
    pub issuer: String,
    /// Accepted audiences: the issuer and the token endpoint URL.
    pub audiences: Vec<String>,
    /// Longest lifetime (`exp - iat`, or `exp - now` without `iat`).
    pub max_lifetime: Duration,
    /// Clock leeway.
    pub leeway: Duration,
}

/// An assertion that passed every check but the replay check.
pub(super) struct Checked {
    pub(super) connector: Arc<ConnectorConfig>,
    pub(super) jti: String,
    pub(super) remember_until: u64,
}

pub(super) fn check(
    assertion: &str,
    form_client_id: Option<&str>,
    connectors: &Connectors,
    rules: &AssertionRules,
    now: u64,
) -> Result<Checked, AuthFailure> {
    let jws = UnverifiedJws::decode(assertion, MAX_ASSERTION_LEN)
        .map_err(|_| AuthFailure::Assertion("malformed_assertion"))?;
    let typ_ok = match jws.header().typ.as_deref() {
        None => true,
        Some(typ) => {
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            typ.eq_ignore_ascii_case("JWT") || typ.eq_ignore_ascii_case("client-authentication+jwt")
        }
    };
    if !typ_ok {
        return Err(AuthFailure::Assertion("assertion_wrong_typ"));
    }
    // The client is named by client_id, or else by the assertion's own `sub`;
    // either way only its registered keys can make the signature check pass.
    let client_id = match form_client_id {
        Some(id) => id.to_owned(),
        None => claimed_subject(&jws).ok_or(AuthFailure::Assertion("assertion_without_subject"))?,
    };
    let connector = connectors.get(&client_id);
    let keys = connector.and_then(|c| c.jwks.as_ref());
    let key = keys.and_then(|keys| match jws.header().kid.as_deref() {
        Some(kid) => keys.get(kid),
        None if keys.len() == 1 => keys.keys().next(),
        None => None,
    });
    let (Some(connector), Some(key)) = (connector, key.cloned()) else {
        // Unknown client, no keys, unknown key: the same signature work as
        // a wrong signature of a known key, so the time taken says nothing
        // about which ids exist.
        spend_a_verification(jws);
        return Err(match (connector, keys) {
            (None, _) => AuthFailure::BadCredential,
            (Some(_), None) => AuthFailure::NoKeys,
            (Some(_), Some(_)) => AuthFailure::Assertion("assertion_unknown_key"),
        });
    };
    let payload = jws
        .verify(&key)
        .map_err(|_| AuthFailure::Assertion("assertion_bad_signature"))?;
    let claims = json::parse_object(&payload).map_err(|_| AuthFailure::Assertion("malformed_assertion"))?;

    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(connector.id.as_str()) || text("sub") != Some(connector.id.as_str()) {
        return Err(AuthFailure::Assertion("assertion_wrong_subject"));
    }
    if !audience_ok(&claims, &rules.audiences) {
        return Err(AuthFailure::Assertion("assertion_wrong_audience"));
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or(AuthFailure::Assertion("assertion_without_jti"))?;
    let date = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or(AuthFailure::Assertion("malformed_assertion")),
    };
    let exp = date("exp")?.ok_or(AuthFailure::Assertion("assertion_without_exp"))?;
    let iat = date("iat")?;
    let nbf = date("nbf")?;
    let leeway = rules.leeway.as_secs();
    if now >= exp.saturating_add(leeway) {
        return Err(AuthFailure::Assertion("assertion_expired"));
    }
    if iat.is_some_and(|iat| iat > now + leeway) || nbf.is_some_and(|nbf| nbf > now + leeway) {
        return Err(AuthFailure::Assertion("assertion_not_yet_valid"));
    }
    let start = iat.unwrap_or(now).min(now);
    if exp.saturating_sub(start) > rules.max_lifetime.as_secs() {
        return Err(AuthFailure::Assertion("assertion_lifetime_too_long"));
    }
    Ok(Checked {
        connector: connector.clone(),
        jti: jti.to_owned(),
        remember_until: exp.saturating_add(leeway),
    })
}

/// Verifies `jws` against a fixed key of its header's algorithm, which can
/// only fail, for the cost of it.
fn spend_a_verification(jws: UnverifiedJws<'_>) {
    let alg = jws.header().alg;
    if let Some(key) = dummy_keys().iter().find(|k| k.algorithm() == alg) {
        let _ = jws.verify(key);
    }
}

/// One public key per algorithm, nobody's: RFC 6979's P-256 and P-384
/// example keys, RFC 8032's first Ed25519 test key, and a 2048-bit RSA key
/// (RS256, PS256).
fn dummy_keys() -> &'static [VerifyingKey] {
    static KEYS: OnceLock<Vec<VerifyingKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        const P256_X: &str = "YP7UuiVanTHJYet0xjVtaMBJuJI7Yfps5mliLmDyn7Y";
        const P256_Y: &str = "eQP-EAi4vJmkGunpVii8ZPLxsgwtfp9Rd6PClNRGIpk";
        const P384_X: &str = "7DpOQVtOGaRWhhgCn0J_pdqai8SukuAuBqrlKGswDGTe-PDqkFWGYGSiVFFUgLwT";
        const P384_Y: &str = "gBXZty19VyROqO-awMYhiWcIpZNn-d-59UyoSz8cnbEoiyMcOuDU_nNE_SUzJkcg";
        const ED25519_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        const RSA_N: &str = "qIT3BmJiDUes5dLW-Ayj6Yv003bDIW95W7Jb6nEMukd22ruF2dIR2shPl8wlw4HDcY4S5T3RHSjxa4xGFaHEV6Jv4IN80lDvjgd2UOgotDKMWM5F2JR_8LrsDCEqCc8BJ-1kERNubHVvLYb0cYJ3PeCh49_q3lTPje8lNcSrS523RhZzMPtA6ttUwbQI90AHNRVUSYGJt6tN84EWRT9Tq8hdYxXSRksDjA8-1LhNf5Jb17IG6utWsdzzwXLj8W_xs2yp1KIVpI1NIRooD7eEpN1CLoImjxYlWanxXfyO4mq_xwxWJghMwlcgaQEd2jFj2l2RxmI3Oo0a9A9aQy31iQ";
        let decode = |text: &str| base64url::decode(text).unwrap_or_default();
        let keys = [
            (Algorithm::ES256, PublicKey::p256(&decode(P256_X), &decode(P256_Y))),
            (Algorithm::EdDSA, PublicKey::ed25519(&decode(ED25519_X))),
            (Algorithm::RS256, PublicKey::rsa(&decode(RSA_N), &[1, 0, 1])),
            (Algorithm::PS256, PublicKey::rsa(&decode(RSA_N), &[1, 0, 1])),
            (Algorithm::ES384, PublicKey::p384(&decode(P384_X), &decode(P384_Y))),
        ];
        keys.into_iter()
            .filter_map(|(alg, key)| VerifyingKey::with_thumbprint(alg, key.ok()?).ok())
            .collect()
    })
}

fn audience_ok(claims: &Map<String, Value>, accepted: &[String]) -> bool {
    let matches = |a: &Value| a.as_str().is_some_and(|a| accepted.iter().any(|x| x == a));
    match claims.get("aud") {
        Some(Value::Array(many)) => !many.is_empty() && many.iter().any(matches),
        Some(one) => matches(one),
        None => false,
    }
}

/// The `sub` of an assertion that may not even be well formed, for the audit
/// log of a refusal.
pub(super) fn claimed_subject_of(assertion: &str) -> Option<String> {
    let jws = UnverifiedJws::decode(assertion, MAX_ASSERTION_LEN).ok()?;
    claimed_subject(&jws)
}

/// The `sub` of a not-yet-verified assertion, used only to pick whose keys to
/// verify it with.
fn claimed_subject(jws: &UnverifiedJws<'_>) -> Option<String> {
    let claims = json::parse_object(jws.unverified_payload()).ok()?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time `check` takes to refuse `assertion`, median of many runs
    /// interleaved with the other kind.
    fn timed(assertions: [&str; 2], connectors: &Connectors, rules: &AssertionRules) -> [f64; 2] {
        let mut samples = [Vec::new(), Vec::new()];
        for round in 0..120 {
            for (i, assertion) in assertions.iter().enumerate() {
                let started = std::time::Instant::now();
                assert!(check(assertion, None, connectors, rules, 1_700_000_000).is_err());
                if round >= 20 {
                    samples[i].push(started.elapsed().as_secs_f64());
                }
            }
        }
        samples.map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
    }

    /// An unknown client is refused after the same signature work as a
    /// known client whose signature is wrong: no timing tells ids apart.
    #[test]
    fn unknown_and_known_clients_cost_one_signature_check_each() {
        use oidc_core::keys::{LocalSigner, Signer};
        let (signer, _) = LocalSigner::generate(Algorithm::ES256).unwrap();
        let jwks = oidc_core::JwkSet::from_keys([signer.verifying_key().clone()]).unwrap();
        let connector = ConnectorConfig {
            id: "known".into(),
            secret_sha256: None,
            jwks: Some(jwks),
            audiences: vec!["https://api.test".into()],
            scopes: Default::default(),
            default_scopes: Vec::new(),
            attributes: Default::default(),
            aws_principals: Vec::new(),
            aws_principal_ids: Vec::new(),
            federated: Vec::new(),
            copy_claims: Vec::new(),
            dpop: Default::default(),
        };
        let connectors = Connectors::new([connector]);
        let rules = AssertionRules {
            issuer: "https://tokens.test".into(),
            audiences: vec!["https://tokens.test".into()],
            max_lifetime: std::time::Duration::from_secs(3600),
            leeway: std::time::Duration::from_secs(30),
        };
        let sign = |sub: &str| {
            let header = oidc_core::jws::Header::encode(signer.algorithm(), "JWT", signer.kid());
            let claims = serde_json::json!({"iss": sub, "sub": sub, "aud": "https://tokens.test", "jti": "j",
                "iat": 1_700_000_000u64, "exp": 1_700_000_060u64});
            let payload = claims.to_string();
            let future = oidc_core::jws::sign(&header, payload.as_bytes(), &signer);
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(future)
                .unwrap()
        };
        let unknown = sign("nobody");
        let good = sign("known");
        let (head, signature) = good.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let known_bad = format!("{head}.{flipped}{}", &signature[1..]);
        let [unknown, known] = timed([&unknown, &known_bad], &connectors, &rules);
        let ratio = unknown / known;
        // Without the dummy check an unknown client costs a small fraction
        // of a known one (base64 and JSON, no signature).
        assert!(
            (0.6..1.6).contains(&ratio),
            "unknown {unknown:e} s vs known {known:e} s"
        );
    }

    #[test]
    fn a_dummy_key_for_every_algorithm() {
        let keys = dummy_keys();
        for alg in Algorithm::ALL {
            assert!(keys.iter().any(|k| k.algorithm() == alg), "{alg}");
        }
    }
}
