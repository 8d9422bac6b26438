//! Checking proofs: [`DpopVerifier`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::proof::access_token_hash;
use super::{
    DpopError, DpopNonces, FirstUse, MemoryProofReplayStore, NonceError, NormalizedUrl, ProofId,
    ProofReplayStore, DPOP_TYP,
};
use crate::clock::{SystemClock, WallClock};
use crate::json;
use crate::jws::UnverifiedJws;
use crate::keys::PublicKey;
use crate::text;
use crate::Algorithm;

/// Largest proof accepted by default: 8 KiB, checked before decoding (an
/// ES256 proof is about 600 bytes; an RSA 4096 one about 2 KB).
pub const DEFAULT_MAX_PROOF_LEN: usize = 8 * 1024;
/// How old a proof's `iat` may be by default: 60 s.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
/// How far in the future a proof's `iat` may be by default: 5 s of clock skew.
pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(5);
/// Longest `jti` accepted (ours are 22 characters; a UUID is 36).
pub const MAX_JTI_LEN: usize = 64;

/// What a proof must match: the request it comes with.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    method: &'a str,
    url: &'a str,
    access_token: Option<&'a str>,
}

impl<'a> ProofTarget<'a> {
    /// A request with `method` to `url` (as the server is reached: scheme,
    /// host, path; a query is ignored).
    pub fn new(method: &'a str, url: &'a str) -> Self {
        Self {
            method,
            url,
            access_token: None,
        }
    }

    /// The access token presented with the proof: `ath` is then required
    /// and must be its hash (RFC 9449 §4.3, check 10). A token endpoint
    /// request presents none.
    pub fn with_access_token(mut self, access_token: &'a str) -> Self {
        self.access_token = Some(access_token);
        self
    }
}

/// Checks DPoP proofs (RFC 9449 §4.3) for a token endpoint or a resource
/// server. Cheap to clone (the replay store is shared).
///
/// In order, each refusal its own [`DpopError`]: the size cap, then the
/// strict JWS layer ([`UnverifiedJws::decode_with_embedded_jwk`]: three
/// parts, canonical base64url, a header that is a strict JSON object with no
/// duplicate member, no `crit`/`jku`/`x5u`/`x5c`/`b64`, an asymmetric `alg`
/// and a `jwk` object); `typ` `dpop+jwt`; `alg` among the allowed ones; the
/// `jwk` a public key of that algorithm (a private member or `kty` `oct` is
/// refused); the signature; then the claims: `jti` (1 to
/// [`MAX_JTI_LEN`] bytes), `htm` equal to the method, `htu` equal to the
/// URL once both are normalized ([`NormalizedUrl`]), `iat` within the
/// window, `ath` when a token is presented, `nonce` when nonces are on.
/// [`verify`](Self::verify) then records the proof once in the replay store.
#[derive(Debug, Clone)]
pub struct DpopVerifier {
    algorithms: Arc<[Algorithm]>,
    max_age: u64,
    max_future_skew: u64,
    max_len: usize,
    nonces: Option<DpopNonces>,
    replay: Arc<dyn ProofReplayStore>,
    clock: Arc<dyn WallClock>,
}

/// Builds a [`DpopVerifier`]; start with [`DpopVerifier::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct DpopVerifierBuilder {
    algorithms: Vec<Algorithm>,
    max_age: Duration,
    max_future_skew: Duration,
    max_len: usize,
    nonces: Option<DpopNonces>,
    replay: Option<Arc<dyn ProofReplayStore>>,
    clock: Arc<dyn WallClock>,
}

/// Why a [`DpopVerifier`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopConfigError {
    /// No algorithm allowed.
    #[error("at least one DPoP proof algorithm must be allowed")]
    NoAlgorithm,
    /// A zero window.
    #[error("the DPoP proof iat window must be at least one second")]
    ZeroWindow,
    /// A window over ten minutes, or a skew over one: a proof is meant for
    /// one request now.
    #[error("the DPoP proof iat window is at most 600 s back and 60 s ahead")]
    WindowTooLong,
    /// A size cap under 256 bytes or over 64 KiB.
    #[error("the DPoP proof size cap must be between 256 bytes and 64 KiB")]
    MaxLen,
}

impl Default for DpopVerifierBuilder {
    fn default() -> Self {
        Self {
            algorithms: Algorithm::ALL.to_vec(),
            max_age: DEFAULT_MAX_AGE,
            max_future_skew: DEFAULT_MAX_FUTURE_SKEW,
            max_len: DEFAULT_MAX_PROOF_LEN,
            nonces: None,
            replay: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl DpopVerifierBuilder {
    /// The algorithms a proof may use (default: all of [`Algorithm::ALL`];
    /// none, HMAC and anything unsupported never are).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms.clear();
        for alg in algorithms {
            if !self.algorithms.contains(&alg) {
                self.algorithms.push(alg);
            }
        }
        self
    }

    /// How old (`max_age`, default 60 s) and how far in the future
    /// (`max_future_skew`, default 5 s) a proof's `iat` may be.
    pub fn iat_window(mut self, max_age: Duration, max_future_skew: Duration) -> Self {
        self.max_age = max_age;
        self.max_future_skew = max_future_skew;
        self
    }

    /// The size cap (default 8 KiB), checked before anything is decoded.
    pub fn max_proof_len(mut self, len: usize) -> Self {
        self.max_len = len;
        self
    }

    /// Requires a server nonce in every proof (RFC 9449 §8).
    pub fn nonces(mut self, nonces: DpopNonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// Where proofs are recorded (default: a fresh
    /// [`MemoryProofReplayStore`], this process only).
    pub fn replay_store(mut self, store: Arc<dyn ProofReplayStore>) -> Self {
        self.replay = Some(store);
        self
    }

    /// Reads time from `clock` instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings and builds the verifier.
    pub fn build(self) -> Result<DpopVerifier, DpopConfigError> {
        if self.algorithms.is_empty() {
            return Err(DpopConfigError::NoAlgorithm);
        }
        if self.max_age.as_secs() == 0 {
            return Err(DpopConfigError::ZeroWindow);
        }
        if self.max_age > Duration::from_secs(600) || self.max_future_skew > Duration::from_secs(60) {
            return Err(DpopConfigError::WindowTooLong);
        }
        if !(256..=64 * 1024).contains(&self.max_len) {
            return Err(DpopConfigError::MaxLen);
        }
        Ok(DpopVerifier {
            algorithms: self.algorithms.into(),
            max_age: self.max_age.as_secs(),
            max_future_skew: self.max_future_skew.as_secs(),
            max_len: self.max_len,
            nonces: self.nonces,
            replay: self
                .replay
                .unwrap_or_else(|| Arc::new(MemoryProofReplayStore::default())),
            clock: self.clock,
        })
    }
}

/// A proof that passed every check but has not been recorded yet: only
/// [`DpopVerifier::record`] turns it into a [`VerifiedProof`]. A resource
/// server compares its key with the token's `cnf.jkt` in between, so that
/// a proof refused for that is not spent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct CheckedProof(VerifiedProof);

impl CheckedProof {
    /// The RFC 7638 thumbprint of the proof's key.
    pub fn jkt(&self) -> &str {
        self.0.jkt()
    }

    /// The proof's `jti`.
    pub fn jti(&self) -> &str {
        self.0.jti()
    }
}

/// A proof that passed every check and was recorded: its key and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    jkt: Arc<str>,
    jti: String,
    iat: u64,
    alg: Algorithm,
    key: PublicKey,
}

impl VerifiedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key: what a token
    /// bound to it carries as `cnf.jkt`.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The `jti`.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The `iat`.
    pub fn issued_at(&self) -> u64 {
        self.iat
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The proof's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }
}

impl DpopVerifier {
    /// Starts a verifier with the defaults: every asymmetric algorithm,
    /// `iat` from 60 s ago to 5 s ahead, 8 KiB, no nonces, an in-memory
    /// replay store.
    pub fn builder() -> DpopVerifierBuilder {
        DpopVerifierBuilder::default()
    }

    /// The allowed algorithms (for `dpop_signing_alg_values_supported` and
    /// the `algs` of a `WWW-Authenticate: DPoP` challenge).
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The nonces, when they are required.
    pub fn nonces(&self) -> Option<&DpopNonces> {
        self.nonces.as_ref()
    }

    /// A fresh nonce to send as `DPoP-Nonce`, when nonces are on.
    pub fn fresh_nonce(&self) -> Option<String> {
        self.nonces.as_ref().map(|n| n.issue(self.clock.now()))
    }

    /// Checks `proof` against `target` ([`check`](Self::check)) and records
    /// it ([`record`](Self::record)).
    pub async fn verify(&self, proof: &str, target: &ProofTarget<'_>) -> Result<VerifiedProof, DpopError> {
        let checked = self.check(proof, target)?;
        self.record(checked).await
    }

    /// Every check but the replay store's (see the [type docs](Self)).
    pub fn check(&self, proof: &str, target: &ProofTarget<'_>) -> Result<CheckedProof, DpopError> {
        let jws = UnverifiedJws::decode_with_embedded_jwk(proof, self.max_len)?;
        let header = jws.header();
        let typ_ok = header.typ.as_deref().is_some_and(|typ| {
            let typ = match typ.get(..12) {
                Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
                _ => typ,
            };
            typ.eq_ignore_ascii_case(DPOP_TYP)
        });
        if !typ_ok {
            return Err(DpopError::WrongType(header.typ.as_deref().map(text::excerpt)));
        }
        let alg = header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(DpopError::AlgorithmNotAllowed(alg));
        }
        let jwk = jws
            .embedded_jwk()
            .ok_or(DpopError::Malformed(crate::jws::JwsError::MissingJwk))?;
        let key = PublicKey::from_embedded_jwk(jwk, alg).map_err(DpopError::Key)?;
        let payload = jws.verify_with_public_key(&key)?;
        // The signature has verified, so the key (its point checked by
        // ring while verifying) is the proof's.
        let claims = json::parse_object(&payload).map_err(DpopError::Claims)?;
        let jti = string_claim(&claims, "jti")?;
        if jti.len() > MAX_JTI_LEN {
            return Err(DpopError::JtiTooLong(jti.len()));
        }
        let htm = string_claim(&claims, "htm")?;
        if htm != target.method {
            return Err(DpopError::WrongMethod {
                expected: text::excerpt(target.method),
                found: text::excerpt(htm),
            });
        }
        let htu = string_claim(&claims, "htu")?;
        let wrong_url = || DpopError::WrongUrl {
            found: text::excerpt(htu),
        };
        let expected = NormalizedUrl::parse(target.url).map_err(|_| wrong_url())?;
        if NormalizedUrl::parse(htu).map_err(|_| wrong_url())? != expected {
            return Err(wrong_url());
        }
        let iat = match claims.get("iat") {
            None => return Err(DpopError::MissingClaim("iat")),
            Some(value) => value.as_u64().ok_or(DpopError::ClaimType {
                claim: "iat",
                expected: "a NumericDate (non-negative integer seconds)",
            })?,
        };
        let now = self.clock.now();
        if iat > now.saturating_add(self.max_future_skew) {
            return Err(DpopError::IssuedInFuture {
                iat,
                now,
                skew: self.max_future_skew,
            });
        }
        if now.saturating_sub(iat) > self.max_age {
            return Err(DpopError::TooOld {
                iat,
                now,
                max_age: self.max_age,
            });
        }
        if let Some(token) = target.access_token {
            let ath = match claims.get("ath") {
                None => return Err(DpopError::MissingAth),
                Some(Value::String(ath)) => ath,
                Some(_) => {
                    return Err(DpopError::ClaimType {
                        claim: "ath",
                        expected: "a string",
                    })
                }
            };
            // Both are public values (the hash of a token the caller
            // presented): no need for a constant-time comparison.
            if *ath != access_token_hash(token) {
                return Err(DpopError::WrongAth);
            }
        }
        if let Some(nonces) = &self.nonces {
            match claims.get("nonce") {
                None => return Err(DpopError::Nonce(NonceError::Missing)),
                Some(Value::String(nonce)) => nonces.check(nonce, now).map_err(DpopError::Nonce)?,
                Some(_) => return Err(DpopError::Nonce(NonceError::Invalid)),
            }
        }
        Ok(CheckedProof(VerifiedProof {
            jkt: Arc::from(key.thumbprint()),
            jti: jti.to_owned(),
            iat,
            alg,
            key,
        }))
    }

    /// Records a checked proof in the replay store: refused if its key and
    /// `jti` were seen within the window.
    pub async fn record(&self, checked: CheckedProof) -> Result<VerifiedProof, DpopError> {
        let proof = checked.0;
        let id = ProofId::new(&proof.jkt, &proof.jti);
        // Past iat + max_age the proof is refused as too old anyway.
        let remember_until = proof.iat.saturating_add(self.max_age);
        match self
            .replay
            .first_use(&id, remember_until, self.clock.now())
            .await
            .map_err(DpopError::ReplayStore)?
        {
            FirstUse::Fresh => Ok(proof),
            FirstUse::Replayed => Err(DpopError::Replayed),
        }
    }
}

/// A required, non-empty string claim.
fn string_claim<'a>(claims: &'a Map<String, Value>, claim: &'static str) -> Result<&'a str, DpopError> {
    match claims.get(claim) {
        None => Err(DpopError::MissingClaim(claim)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(DpopError::ClaimType {
            claim,
            expected: "a non-empty string",
        }),
    }
}
