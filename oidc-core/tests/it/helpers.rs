//! Shared fixtures: keys, policies, and tokens built by hand (any header, any
//! claims, any signature) so that each test changes exactly one thing.

use std::path::PathBuf;
use std::sync::Arc;

use oidc_core::base64url;
use oidc_core::clock::ManualWallClock;
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::verify::VerificationCache;
use oidc_core::{
    AccessTokenClaims, Algorithm, Issuer, JwkSet, KeySet, KeySource, Lifetime, Policy, Verified, Verifier,
    VerifyError,
};
use serde_json::{json, Value};

pub(crate) const ISSUER: &str = "https://tokens.example.com";
pub(crate) const AUDIENCE: &str = "https://api.example.com";
/// The fixed "now" of every test clock (2023-11-14T22:13:20Z).
pub(crate) const NOW: u64 = 1_700_000_000;

/// A path inside this crate.
pub(crate) fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A test key from `tests/keys/` (see the README there).
pub(crate) fn key_pem(name: &str) -> String {
    let file = path(&format!("tests/keys/{name}.pem"));
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64url::encode(bytes)
}

pub(crate) fn unb64(text: &str) -> Vec<u8> {
    base64url::decode(text).expect("test data is valid base64url")
}

pub(crate) fn hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// The three parts of a compact token.
pub(crate) fn parts(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    parts.try_into().expect("three parts")
}

/// `token` with its signature replaced by `signature`.
pub(crate) fn with_signature(token: &str, signature: &[u8]) -> String {
    let [header, payload, _] = parts(token);
    format!("{header}.{payload}.{}", b64(signature))
}

pub(crate) fn signature_of(token: &str) -> Vec<u8> {
    unb64(parts(token)[2])
}

pub(crate) fn remove(object: &mut Value, member: &str) {
    object.as_object_mut().expect("a JSON object").remove(member);
}

/// A signer for `alg`: generated for ES256, ES384 and EdDSA,
/// `tests/keys/rsa2048.pem` for RS256 and PS256 (ring cannot generate RSA
/// keys). Also returns its PEM.
pub(crate) fn signer(alg: Algorithm) -> (LocalSigner, String) {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => {
            let (signer, pem) = LocalSigner::generate(alg).expect("generate");
            (signer, pem.as_str().to_owned())
        }
        Algorithm::RS256 | Algorithm::PS256 => {
            let pem = key_pem("rsa2048");
            let signer = LocalSigner::from_pem_with_algorithm(&pem, Some(alg)).expect("rsa2048.pem");
            (signer, pem)
        }
    }
}

/// One signing key, the JWKS that publishes it, a clock standing at [`NOW`],
/// and a verification cache: every token [`verify`](Self::verify) checks is
/// also checked with the cache on, and must get the very same answer.
pub(crate) struct Fixture {
    pub(crate) signer: Arc<LocalSigner>,
    pub(crate) pem: String,
    pub(crate) jwks: JwkSet,
    pub(crate) clock: Arc<ManualWallClock>,
    pub(crate) cache: VerificationCache,
}

impl Fixture {
    pub(crate) fn new(alg: Algorithm) -> Self {
        let (signer, pem) = signer(alg);
        let jwks = JwkSet::from_keys([signer.verifying_key().clone()]).expect("one key");
        Self {
            signer: Arc::new(signer),
            pem,
            jwks,
            clock: Arc::new(ManualWallClock::new(NOW)),
            cache: VerificationCache::new(1_000),
        }
    }

    pub(crate) fn es256() -> Self {
        Self::new(Algorithm::ES256)
    }

    pub(crate) fn kid(&self) -> &str {
        self.signer.kid()
    }

    pub(crate) fn alg(&self) -> Algorithm {
        self.signer.algorithm()
    }

    /// The default policy for [`ISSUER`] and [`AUDIENCE`].
    pub(crate) fn policy() -> Policy {
        Policy::builder(ISSUER, [AUDIENCE]).build().expect("policy")
    }

    pub(crate) fn verifier(&self) -> Verifier<JwkSet> {
        self.verifier_with(Self::policy())
    }

    pub(crate) fn verifier_with(&self, policy: Policy) -> Verifier<JwkSet> {
        Verifier::new(policy, self.jwks.clone()).with_clock(self.clock.clone())
    }

    /// An issuer signing with this key, on this fixture's clock.
    pub(crate) fn issuer(&self, lifetime: Lifetime) -> Issuer {
        let signer: Arc<dyn Signer> = self.signer.clone();
        Issuer::new(ISSUER, Arc::new(KeySet::single(signer)), lifetime)
            .expect("issuer")
            .with_clock(self.clock.clone())
    }

    /// The header an access token from this key carries.
    pub(crate) fn header(&self) -> Value {
        json!({ "alg": self.alg().name(), "typ": "at+jwt", "kid": self.kid() })
    }

    /// A complete, valid claim set at [`NOW`].
    pub(crate) fn claims(&self) -> Value {
        json!({
            "iss": ISSUER,
            "sub": "connector-1",
            "aud": AUDIENCE,
            "client_id": "connector-1",
            "iat": NOW,
            "nbf": NOW,
            "exp": NOW + 300,
            "jti": "2Fq1oAbbYvxeZ1m8FqBtTA",
            "scope": "poll",
            "org_id": "org-42",
        })
    }

    /// Signs exactly these header and payload bytes (no checks, no re-encoding).
    pub(crate) fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let signing_input = format!("{}.{}", b64(header), b64(payload));
        let signature = self.signer.sign_now(signing_input.as_bytes()).expect("sign");
        format!("{signing_input}.{}", b64(signature))
    }

    pub(crate) fn token(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// A signed token whose default header and claims were edited first.
    pub(crate) fn token_with(
        &self,
        header: impl FnOnce(&mut Value),
        claims: impl FnOnce(&mut Value),
    ) -> String {
        let (mut h, mut c) = (self.header(), self.claims());
        header(&mut h);
        claims(&mut c);
        self.token(&h, &c)
    }

    pub(crate) fn valid_token(&self) -> String {
        self.token(&self.header(), &self.claims())
    }

    /// A token with these claims and the default header.
    pub(crate) fn token_claims(&self, claims: impl FnOnce(&mut Value)) -> String {
        self.token_with(|_| {}, claims)
    }

    /// A token with this header and the default claims.
    pub(crate) fn token_header(&self, header: impl FnOnce(&mut Value)) -> String {
        self.token_with(header, |_| {})
    }

    /// `token` under the default policy; see [`verify_with`](Self::verify_with).
    pub(crate) async fn verify(&self, token: &str) -> Result<Verified<AccessTokenClaims>, VerifyError> {
        self.verify_with(Self::policy(), token).await
    }

    /// `token` under `policy` by a plain verifier, and by one with this
    /// fixture's cache (shared by every policy of the fixture), twice: each
    /// answer must be the plain one, an accepted token must be served from
    /// the cache the second time, and a refused one never cached. Returns
    /// the plain answer.
    pub(crate) async fn verify_with(
        &self,
        policy: Policy,
        token: &str,
    ) -> Result<Verified<AccessTokenClaims>, VerifyError> {
        let plain = self
            .verifier_with(policy.clone())
            .verify::<AccessTokenClaims>(token)
            .await;
        let cached = self.verifier_with(policy).with_cache(self.cache.clone());
        same_with_cache(&cached, &self.cache, token, &plain).await;
        plain
    }

    /// The refusal of `token`; panics if it was accepted.
    pub(crate) async fn refusal(&self, token: &str) -> VerifyError {
        match self.verify(token).await {
            Ok(_) => panic!("token was accepted: {token}"),
            Err(e) => e,
        }
    }
}

/// Checks that `verifier` (with `cache` on) answers `token` twice exactly as
/// `expected`, serving an accepted token from the cache and never caching a
/// refused one.
pub(crate) async fn same_with_cache<K: KeySource>(
    verifier: &Verifier<K>,
    cache: &VerificationCache,
    token: &str,
    expected: &Result<Verified<AccessTokenClaims>, VerifyError>,
) {
    let before = cache.stats();
    for round in ["first", "second"] {
        let answer = verifier.verify::<AccessTokenClaims>(token).await;
        assert_eq!(
            &answer, expected,
            "{round} answer with the cache on differs: {token}"
        );
    }
    let after = cache.stats();
    match expected {
        Ok(_) => assert!(
            after.hits > before.hits,
            "an accepted token was not served from the cache"
        ),
        Err(_) => assert_eq!(after.inserts, before.inserts, "a refused token was cached"),
    }
}

/// The order n of the P-256 group, big-endian.
pub(crate) const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
    0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The order L of the Ed25519 subgroup, little-endian (as S is on the wire).
pub(crate) const ED25519_ORDER_LE: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// `a - b` for 32-byte big-endian integers with `a >= b`.
pub(crate) fn sub_be(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0, "a < b");
    out
}

/// `a + b` for 32-byte little-endian integers (no overflow expected).
pub(crate) fn add_le(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    assert_eq!(carry, 0, "overflow");
    out
}

/// Whether the big-endian `scalar` is in [1, n - 1] for P-256.
pub(crate) fn p256_scalar_in_range(scalar: &[u8]) -> bool {
    scalar.iter().any(|b| *b != 0) && scalar < &P256_ORDER[..]
}

/// A 64-byte `r‖s` ECDSA signature as ASN.1 DER (what KMS and OpenSSL produce).
pub(crate) fn p1363_to_der(signature: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
        let mut value = bytes[start..].to_vec();
        if value[0] & 0x80 != 0 {
            value.insert(0, 0);
        }
        let mut out = vec![0x02, value.len() as u8];
        out.extend(value);
        out
    }
    let mut body = integer(&signature[..32]);
    body.extend(integer(&signature[32..]));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// A strict DER `SEQUENCE { INTEGER r, INTEGER s }` as 64-byte `r‖s`, or `None`.
pub(crate) fn der_to_p1363(der: &[u8]) -> Option<[u8; 64]> {
    der_to_rs(der, 32)?.try_into().ok()
}

/// A strict DER `SEQUENCE { INTEGER r, INTEGER s }` as `r‖s` of two
/// `scalar_len`-byte scalars (32 for P-256, 48 for P-384), or `None`.
pub(crate) fn der_to_rs(der: &[u8], scalar_len: usize) -> Option<Vec<u8>> {
    fn integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if tag != 0x02 || len == 0 || len >= 0x80 || rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        // Minimal, non-negative encoding only.
        if value[0] & 0x80 != 0 || (len > 1 && value[0] == 0 && value[1] & 0x80 == 0) {
            return None;
        }
        let value = if value[0] == 0 { &value[1..] } else { value };
        Some((value, rest))
    }
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || usize::from(len) != body.len() || len >= 0x80 {
        return None;
    }
    let (r, rest) = integer(body)?;
    let (s, rest) = integer(rest)?;
    if !rest.is_empty() || r.len() > scalar_len || s.len() > scalar_len {
        return None;
    }
    let mut out = vec![0u8; 2 * scalar_len];
    out[scalar_len - r.len()..scalar_len].copy_from_slice(r);
    out[2 * scalar_len - s.len()..].copy_from_slice(s);
    Some(out)
}
