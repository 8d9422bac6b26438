//! Public keys: validated key material, the algorithm each key is pinned to,
//! signature verification with ring, JWK import and export, RFC 7638 thumbprints.

use std::fmt;

use ring::signature::{self as sig, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::roca;
use super::KeyError;
use crate::{base64url, json, text, Algorithm};

/// The most RSA modulus bits ring verifies with.
const RSA_MAX_BITS: usize = 8192;
/// RSA keys below this size are refused (NIST SP 800-131A).
pub const RSA_MIN_BITS: usize = 2048;
/// Longest `kid` accepted in a JWK.
pub const MAX_KID_LEN: usize = 256;

/// Validated public key material.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// A P-256 point, uncompressed SEC1 (`04‖x‖y`), known to be on the curve.
    P256([u8; 65]),
    /// A P-384 point, uncompressed SEC1 (`04‖x‖y`), known to be on the curve.
    P384([u8; 97]),
    /// An Ed25519 point encoding, canonical and not of small order.
    Ed25519([u8; 32]),
    /// An RSA modulus and public exponent, big-endian without leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::P256(_) => f.write_str("PublicKey::P256"),
            Self::P384(_) => f.write_str("PublicKey::P384"),
            Self::Ed25519(_) => f.write_str("PublicKey::Ed25519"),
            Self::Rsa { n, .. } => write!(f, "PublicKey::Rsa({} bits)", bit_len(n)),
        }
    }
}

impl PublicKey {
    /// A P-256 key from its affine coordinates; the point must be on the curve.
    pub fn p256(x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        check_len("x", x, 32)?;
        check_len("y", y, 32)?;
        let mut point = [0u8; 65];
        point[0] = 4;
        point[1..33].copy_from_slice(x);
        point[33..].copy_from_slice(y);
        Self::p256_uncompressed(&point)
    }

    /// A P-256 key from an uncompressed SEC1 point (`04‖x‖y`).
    pub fn p256_uncompressed(point: &[u8]) -> Result<Self, KeyError> {
        let point: [u8; 65] = point.try_into().map_err(|_| KeyError::WrongLength {
            member: "point",
            expected: 65,
            found: point.len(),
        })?;
        check_point(&ring::agreement::ECDH_P256, &point)?;
        Ok(Self::P256(point))
    }

    /// A P-384 key from its affine coordinates; the point must be on the curve.
    pub fn p384(x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        check_len("x", x, 48)?;
        check_len("y", y, 48)?;
        let mut point = [0u8; 97];
        point[0] = 4;
        point[1..49].copy_from_slice(x);
        point[49..].copy_from_slice(y);
        Self::p384_uncompressed(&point)
    }

    /// A P-384 key from an uncompressed SEC1 point (`04‖x‖y`).
    pub fn p384_uncompressed(point: &[u8]) -> Result<Self, KeyError> {
        let point: [u8; 97] = point.try_into().map_err(|_| KeyError::WrongLength {
            member: "point",
            expected: 97,
            found: point.len(),
        })?;
        check_point(&ring::agreement::ECDH_P384, &point)?;
        Ok(Self::P384(point))
    }

    /// An Ed25519 key from its 32-byte encoding; small-order and non-canonical
    /// encodings are refused (they allow signatures valid for many messages).
    pub fn ed25519(x: &[u8]) -> Result<Self, KeyError> {
        check_len("x", x, 32)?;
        let mut point = [0u8; 32];
        point.copy_from_slice(x);
        if is_small_order_ed25519(&point) {
            return Err(KeyError::SmallOrder);
        }
        if !is_canonical_ed25519_point(&point) {
            return Err(KeyError::InvalidPoint);
        }
        Ok(Self::Ed25519(point))
    }

    /// An RSA key; refused under 2048 bits, over 8192, with an even or tiny
    /// exponent, with leading zero octets, or with the ROCA fingerprint.
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        if n.first() == Some(&0) {
            return Err(KeyError::LeadingZero { member: "n" });
        }
        if e.first() == Some(&0) {
            return Err(KeyError::LeadingZero { member: "e" });
        }
        let bits = bit_len(n);
        if bits < RSA_MIN_BITS {
            return Err(KeyError::RsaTooSmall { bits });
        }
        if bits > RSA_MAX_BITS {
            return Err(KeyError::RsaTooLarge { bits });
        }
        if n.last().is_some_and(|b| b & 1 == 0) {
            return Err(KeyError::RsaModulusEven);
        }
        // ring accepts 3 <= e < 2^33; e = 1 would make signatures trivial.
        let e_value = if e.len() <= 8 {
            e.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b))
        } else {
            u64::MAX
        };
        if !(3..1 << 33).contains(&e_value) || e_value & 1 == 0 {
            return Err(KeyError::RsaExponent);
        }
        if roca::has_fingerprint(n) {
            return Err(KeyError::RsaRoca);
        }
        Ok(Self::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        })
    }

    /// Whether signatures of `alg` can be made with this kind of key.
    pub fn fits(&self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Self::P256(_), Algorithm::ES256)
                | (Self::P384(_), Algorithm::ES384)
                | (Self::Ed25519(_), Algorithm::EdDSA)
                | (Self::Rsa { .. }, Algorithm::RS256 | Algorithm::PS256)
        )
    }

    /// The algorithm a JWK without `alg` is pinned to when it is parsed
    /// (RSA: RS256, as in OIDC). A [`Verifier`](crate::Verifier) does not
    /// take it on trust: see [`VerifyingKey::algorithm_stated`].
    pub fn default_algorithm(&self) -> Algorithm {
        match self {
            Self::P256(_) => Algorithm::ES256,
            Self::P384(_) => Algorithm::ES384,
            Self::Ed25519(_) => Algorithm::EdDSA,
            Self::Rsa { .. } => Algorithm::RS256,
        }
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` this project uses.
    pub fn thumbprint(&self) -> String {
        // Required members only, in lexicographic order, no whitespace.
        let canonical = match self {
            Self::P256(point) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                base64url::encode(&point[1..33]),
                base64url::encode(&point[33..])
            ),
            Self::P384(point) => format!(
                r#"{{"crv":"P-384","kty":"EC","x":"{}","y":"{}"}}"#,
                base64url::encode(&point[1..49]),
                base64url::encode(&point[49..])
            ),
            Self::Ed25519(x) => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                base64url::encode(x)
            ),
            Self::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                base64url::encode(e),
                base64url::encode(n)
            ),
        };
        base64url::encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()))
    }

    /// Verifies `signature` over `message` with algorithm `alg`.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        match (self, alg) {
            (Self::P256(point), Algorithm::ES256) => {
                expect_len(signature, 64)?;
                if !scalar_in_range(&signature[..32], &P256_ORDER)
                    || !scalar_in_range(&signature[32..], &P256_ORDER)
                {
                    return Err(SignatureError::ScalarOutOfRange);
                }
                UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .map_err(|_| SignatureError::Mismatch)
            }
            (Self::P384(point), Algorithm::ES384) => {
                expect_len(signature, 96)?;
                if !scalar_in_range(&signature[..48], &P384_ORDER)
                    || !scalar_in_range(&signature[48..], &P384_ORDER)
                {
                    return Err(SignatureError::ScalarOutOfRange);
                }
                UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
                    .map_err(|_| SignatureError::Mismatch)
            }
            (Self::Ed25519(x), Algorithm::EdDSA) => {
                expect_len(signature, 64)?;
                let mut s = [0u8; 32];
                s.copy_from_slice(&signature[32..]);
                s.reverse(); // little-endian on the wire
                if s[..] >= ED25519_ORDER[..] {
                    return Err(SignatureError::NonCanonical);
                }
                let mut r = [0u8; 32];
                r.copy_from_slice(&signature[..32]);
                if is_small_order_ed25519(&r) {
                    return Err(SignatureError::SmallOrder);
                }
                UnparsedPublicKey::new(&sig::ED25519, x)
                    .verify(message, signature)
                    .map_err(|_| SignatureError::Mismatch)
            }
            (Self::Rsa { n, e }, Algorithm::RS256 | Algorithm::PS256) => {
                expect_len(signature, n.len())?;
                let params: &sig::RsaParameters = if alg == Algorithm::RS256 {
                    &sig::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &sig::RSA_PSS_2048_8192_SHA256
                };
                sig::RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .map_err(|_| SignatureError::Mismatch)
            }
            _ => Err(SignatureError::Mismatch),
        }
    }

    /// Reads the key members of a JWK object (everything but `kid`, `use`, `key_ops`, `alg`).
    fn from_jwk_members(jwk: &Map<String, Value>) -> Result<Self, KeyError> {
        Self::from_jwk_members_with(jwk, PointCheck::Now)
    }

    /// The public key a JWS carries in its header (a DPoP proof's `jwk`,
    /// RFC 9449 §4.2), by the rules of [`VerifyingKey::from_jwk`] (public
    /// members only: a private member or `kty` `oct` is refused; `use`,
    /// `key_ops` and `alg`, when present, must allow signing with `alg`),
    /// except that `kid` is optional.
    ///
    /// An EC point is not checked here but by the signature check that must
    /// follow before the key is used for anything: ring validates the point
    /// (on the curve, coordinates below p, not infinity: NIST SP 800-56A
    /// §5.6.2.3.4) on every ECDSA verification, so a separate check would be
    /// a second, costlier proof of the same fact on every request. Until its
    /// signature has verified, the key is only a candidate.
    pub(crate) fn from_embedded_jwk(jwk: &Map<String, Value>, alg: Algorithm) -> Result<Self, KeyError> {
        let key = Self::from_jwk_members_with(jwk, PointCheck::AtSignature)?;
        check_usage(jwk)?;
        if let Some(name) = str_member(jwk, "alg")? {
            let stated = name.parse::<Algorithm>().map_err(KeyError::Algorithm)?;
            if stated != alg {
                return Err(KeyError::AlgorithmMismatch {
                    alg: alg.name().to_owned(),
                    key: "differently labelled",
                });
            }
        }
        if let Some(kid) = str_member(jwk, "kid")? {
            if kid.len() > MAX_KID_LEN {
                return Err(KeyError::KidTooLong(kid.len()));
            }
        }
        if !key.fits(alg) {
            return Err(KeyError::AlgorithmMismatch {
                alg: alg.name().to_owned(),
                key: key.kind(),
            });
        }
        Ok(key)
    }

    fn from_jwk_members_with(jwk: &Map<String, Value>, points: PointCheck) -> Result<Self, KeyError> {
        let kty = str_member(jwk, "kty")?.ok_or(KeyError::MissingMember("kty"))?;
        if kty == "oct" {
            return Err(KeyError::Symmetric);
        }
        for private in PRIVATE_MEMBERS {
            if jwk.contains_key(private) {
                return Err(KeyError::PrivateMember(private));
            }
        }
        match kty {
            "EC" => {
                let crv = str_member(jwk, "crv")?.ok_or(KeyError::MissingMember("crv"))?;
                let (x, y) = (b64_member(jwk, "x")?, b64_member(jwk, "y")?);
                match (crv, points) {
                    ("P-256", PointCheck::Now) => Self::p256(&x, &y),
                    ("P-384", PointCheck::Now) => Self::p384(&x, &y),
                    ("P-256", PointCheck::AtSignature) => Ok(Self::P256(uncompressed::<65>(&x, &y)?)),
                    ("P-384", PointCheck::AtSignature) => Ok(Self::P384(uncompressed::<97>(&x, &y)?)),
                    _ => Err(KeyError::UnsupportedCurve(text::excerpt(crv))),
                }
            }
            "OKP" => {
                let crv = str_member(jwk, "crv")?.ok_or(KeyError::MissingMember("crv"))?;
                if crv != "Ed25519" {
                    return Err(KeyError::UnsupportedCurve(text::excerpt(crv)));
                }
                Self::ed25519(&b64_member(jwk, "x")?)
            }
            "RSA" => Self::rsa(&b64_member(jwk, "n")?, &b64_member(jwk, "e")?),
            other => Err(KeyError::UnsupportedKeyType(text::excerpt(other))),
        }
    }

    /// The key's members as a JWK and nothing else (`kty`, `crv`, `x`, `y`;
    /// `kty`, `n`, `e`): what a DPoP proof carries in its header.
    pub fn to_jwk(&self) -> Map<String, Value> {
        let mut out = Map::new();
        self.write_jwk_members(&mut out);
        out
    }

    fn write_jwk_members(&self, out: &mut Map<String, Value>) {
        let mut put = |k: &str, v: String| {
            out.insert(k.to_owned(), Value::String(v));
        };
        match self {
            Self::P256(point) => {
                put("kty", "EC".into());
                put("crv", "P-256".into());
                put("x", base64url::encode(&point[1..33]));
                put("y", base64url::encode(&point[33..]));
            }
            Self::P384(point) => {
                put("kty", "EC".into());
                put("crv", "P-384".into());
                put("x", base64url::encode(&point[1..49]));
                put("y", base64url::encode(&point[49..]));
            }
            Self::Ed25519(x) => {
                put("kty", "OKP".into());
                put("crv", "Ed25519".into());
                put("x", base64url::encode(x));
            }
            Self::Rsa { n, e } => {
                put("kty", "RSA".into());
                put("n", base64url::encode(n));
                put("e", base64url::encode(e));
            }
        }
    }
}

/// A public key pinned to one algorithm, with its key id: what a verifier
/// selects by `kid` and checks signatures with.
///
/// A key parsed from a JWK without `alg` is pinned to its key type's
/// [default](PublicKey::default_algorithm) and remembers that its algorithm
/// was not stated ([`algorithm_stated`](Self::algorithm_stated)): a
/// [`Verifier`](crate::Verifier) then takes the algorithm from its policy,
/// never from the key's default or the token's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    kid: String,
    alg: Algorithm,
    key: PublicKey,
    /// Whether `alg` was stated (the JWK's `alg`, or the caller's choice);
    /// `false` for a JWK without `alg`.
    stated: bool,
}

impl VerifyingKey {
    /// Pins `key` to `alg` under `kid`.
    pub fn new(kid: impl Into<String>, alg: Algorithm, key: PublicKey) -> Result<Self, KeyError> {
        let kid = kid.into();
        if kid.len() > MAX_KID_LEN {
            return Err(KeyError::KidTooLong(kid.len()));
        }
        if !key.fits(alg) {
            return Err(KeyError::AlgorithmMismatch {
                alg: alg.name().to_owned(),
                key: key.kind(),
            });
        }
        Ok(Self {
            kid,
            alg,
            key,
            stated: true,
        })
    }

    /// Pins `key` to `alg` under its RFC 7638 thumbprint.
    pub fn with_thumbprint(alg: Algorithm, key: PublicKey) -> Result<Self, KeyError> {
        Self::new(key.thumbprint(), alg, key)
    }

    /// Parses one public JWK strictly (see [`crate::jwks`] for the rules).
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, KeyError> {
        let key = PublicKey::from_jwk_members(jwk)?;
        check_usage(jwk)?;
        let stated = match str_member(jwk, "alg")? {
            None => None,
            Some(name) => Some(name.parse::<Algorithm>().map_err(KeyError::Algorithm)?),
        };
        let kid = str_member(jwk, "kid")?.ok_or(KeyError::MissingKid)?;
        let alg = stated.unwrap_or_else(|| key.default_algorithm());
        let mut parsed = Self::new(kid, alg, key)?;
        parsed.stated = stated.is_some();
        Ok(parsed)
    }

    /// Parses one public JWK from JSON text.
    pub fn from_jwk_json(text: &[u8]) -> Result<Self, KeyError> {
        Self::from_jwk(&json::parse_object(text).map_err(KeyError::Json)?)
    }

    /// The public JWK: key members, `kid`, `alg` (unless the key was read
    /// from a JWK without one) and `use: "sig"`.
    pub fn to_jwk(&self) -> Map<String, Value> {
        let mut out = Map::new();
        self.key.write_jwk_members(&mut out);
        out.insert("kid".into(), Value::String(self.kid.clone()));
        if self.stated {
            out.insert("alg".into(), Value::String(self.alg.name().into()));
        }
        out.insert("use".into(), Value::String("sig".into()));
        out
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key verifies: the stated one, or for a key
    /// read from a JWK without `alg`, its key type's default.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Whether the algorithm was stated: by the JWK's `alg`, or by whoever
    /// made the key ([`new`](Self::new)). `false` for a key read from a JWK
    /// without `alg` (AWS STS publishes its RSA key so): a
    /// [`Verifier`](crate::Verifier) uses such a key only under a policy
    /// that [pins](crate::PolicyBuilder::algorithms) exactly one algorithm
    /// its key type fits, and then with that algorithm.
    pub fn algorithm_stated(&self) -> bool {
        self.stated
    }

    /// The key material.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// Checks `signature` over `message`; `alg` is what the token claims and
    /// must be the algorithm this key is pinned to.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        self.verify_as(self.alg, alg, message, signature)
    }

    /// Checks `signature` over `message` with algorithm `pinned` (which a
    /// policy chose for this key); `alg`, what the token claims, must be it.
    pub(crate) fn verify_as(
        &self,
        pinned: Algorithm,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if alg != pinned {
            return Err(SignatureError::AlgorithmMismatch {
                token: alg,
                key: pinned,
            });
        }
        self.key.verify(alg, message, signature)
    }
}

impl PublicKey {
    fn kind(&self) -> &'static str {
        match self {
            Self::P256(_) => "EC P-256",
            Self::P384(_) => "EC P-384",
            Self::Ed25519(_) => "OKP Ed25519",
            Self::Rsa { .. } => "RSA",
        }
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The token names another algorithm than the key is pinned to.
    #[error("token algorithm {token} does not match the key's algorithm {key}")]
    AlgorithmMismatch {
        /// From the token header.
        token: Algorithm,
        /// From the key.
        key: Algorithm,
    },
    /// Wrong size for the algorithm (e.g. a DER ECDSA signature instead of `r‖s`).
    #[error("signature is {found} bytes, expected {expected}")]
    Length {
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// ECDSA `r` or `s` is zero or not below the group order.
    #[error("ECDSA signature scalar r or s is zero or not below the group order")]
    ScalarOutOfRange,
    /// Ed25519 `S` is not below the group order.
    #[error("Ed25519 signature is not canonical (S is not below the group order)")]
    NonCanonical,
    /// Ed25519 `R` is a point of small order.
    #[error("Ed25519 signature uses a small-order point")]
    SmallOrder,
    /// The signature does not verify.
    #[error("signature does not match")]
    Mismatch,
}

/// When an EC point is checked to be on its curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PointCheck {
    /// When the key is made.
    Now,
    /// By the signature check that must come before any use (ring's).
    AtSignature,
}

/// `04‖x‖y` of `N` bytes from coordinates of `(N - 1) / 2` bytes each.
fn uncompressed<const N: usize>(x: &[u8], y: &[u8]) -> Result<[u8; N], KeyError> {
    let half = (N - 1) / 2;
    check_len("x", x, half)?;
    check_len("y", y, half)?;
    let mut point = [0u8; N];
    point[0] = 4;
    point[1..=half].copy_from_slice(x);
    point[half + 1..].copy_from_slice(y);
    Ok(point)
}

/// `use` and `key_ops`, when present, must allow verifying signatures.
fn check_usage(jwk: &Map<String, Value>) -> Result<(), KeyError> {
    if let Some(usage) = jwk.get("use") {
        if usage.as_str() != Some("sig") {
            return Err(KeyError::WrongUse(text::excerpt(&usage.to_string())));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops
            .as_array()
            .filter(|ops| ops.iter().all(Value::is_string))
            .ok_or(KeyError::MemberType {
                member: "key_ops",
                expected: "an array of strings",
            })?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err(KeyError::KeyOpsWithoutVerify);
        }
    }
    Ok(())
}

const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The order n of the P-256 group, big-endian.
pub(super) const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
    0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The order n of the P-384 group, big-endian.
pub(super) const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf, 0x58, 0x1a,
    0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// The order L of the Ed25519 prime-order subgroup, big-endian.
const ED25519_ORDER: [u8; 32] = [
    0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14,
    0xde, 0xf9, 0xde, 0xa2, 0xf7, 0x9c, 0xd6, 0x58, 0x12, 0x63, 0x1a, 0x5c, 0xf5, 0xd3, 0xed,
];

/// Encodings (sign bit cleared) of the Ed25519 points of order 1, 2, 4 and 8,
/// including the non-canonical `p` and `p + 1`.
const ED25519_SMALL_ORDER: [[u8; 32]; 7] = [
    // 0 (order 4)
    [0; 32],
    // 1 (order 1)
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ],
    // order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5,
        0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
    ],
    // order 8
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a,
        0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
    ],
    // p - 1 (order 2)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
    // p (= 0, non-canonical)
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
    // p + 1 (= 1, non-canonical)
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
];

fn is_small_order_ed25519(encoding: &[u8; 32]) -> bool {
    let mut cleared = *encoding;
    cleared[31] &= 0x7f;
    ED25519_SMALL_ORDER.contains(&cleared)
}

/// Whether the y coordinate (sign bit cleared) is below p = 2^255 - 19.
fn is_canonical_ed25519_point(encoding: &[u8; 32]) -> bool {
    let mut y = *encoding;
    y[31] &= 0x7f;
    y.reverse();
    let mut p = [0xffu8; 32];
    p[0] = 0x7f;
    p[31] = 0xed;
    y < p
}

/// Whether big-endian `scalar` (as long as `order`) is in [1, order - 1].
fn scalar_in_range(scalar: &[u8], order: &[u8]) -> bool {
    scalar.iter().any(|b| *b != 0) && scalar < order
}

/// Checks that `point` is a valid public point of `curve` (on the curve, not
/// infinity): ring validates a peer point fully before ECDH, and offers no
/// other public way to do so for ECDSA keys.
fn check_point(curve: &'static ring::agreement::Algorithm, point: &[u8]) -> Result<(), KeyError> {
    let rng = ring::rand::SystemRandom::new();
    let ephemeral = ring::agreement::EphemeralPrivateKey::generate(curve, &rng)
        .map_err(|_| KeyError::Unavailable("random number generator failed"))?;
    let peer = ring::agreement::UnparsedPublicKey::new(curve, point);
    ring::agreement::agree_ephemeral(ephemeral, &peer, |_| ()).map_err(|_| KeyError::InvalidPoint)
}

fn expect_len(signature: &[u8], expected: usize) -> Result<(), SignatureError> {
    if signature.len() == expected {
        Ok(())
    } else {
        Err(SignatureError::Length {
            expected,
            found: signature.len(),
        })
    }
}

fn check_len(member: &'static str, bytes: &[u8], expected: usize) -> Result<(), KeyError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(KeyError::WrongLength {
            member,
            expected,
            found: bytes.len(),
        })
    }
}

pub(super) fn bit_len(n: &[u8]) -> usize {
    match n.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
    }
}

fn str_member<'a>(jwk: &'a Map<String, Value>, member: &'static str) -> Result<Option<&'a str>, KeyError> {
    match jwk.get(member) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyError::MemberType {
            member,
            expected: "a string",
        }),
    }
}

fn b64_member(jwk: &Map<String, Value>, member: &'static str) -> Result<Vec<u8>, KeyError> {
    let text = str_member(jwk, member)?.ok_or(KeyError::MissingMember(member))?;
    base64url::decode(text).map_err(|error| KeyError::Base64 { member, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 1]), 1);
        assert_eq!(bit_len(&[0x80, 0]), 16);
    }

    #[test]
    fn scalar_range() {
        assert!(!scalar_in_range(&[0; 32], &P256_ORDER));
        assert!(!scalar_in_range(&P256_ORDER, &P256_ORDER));
        let mut below = P256_ORDER;
        below[31] -= 1;
        assert!(scalar_in_range(&below, &P256_ORDER));
        assert!(!scalar_in_range(&[0; 48], &P384_ORDER));
        assert!(!scalar_in_range(&P384_ORDER, &P384_ORDER));
        let mut below = P384_ORDER;
        below[47] -= 1;
        assert!(scalar_in_range(&below, &P384_ORDER));
    }

    #[test]
    fn small_order_points_are_refused_with_either_sign() {
        for point in ED25519_SMALL_ORDER {
            assert_eq!(PublicKey::ed25519(&point), Err(KeyError::SmallOrder));
            let mut signed = point;
            signed[31] |= 0x80;
            assert_eq!(PublicKey::ed25519(&signed), Err(KeyError::SmallOrder));
        }
    }
}
