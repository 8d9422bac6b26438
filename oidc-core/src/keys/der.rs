//! The little DER this crate reads from remote signers: ECDSA signatures
//! (`ECDSA-Sig-Value`, which KMS returns) turned into the fixed-size `r‖s` of
//! JWS, and `SubjectPublicKeyInfo` (what KMS `GetPublicKey` returns) turned
//! into a validated [`PublicKey`].
//!
//! The reader is strict on purpose: definite, minimal lengths; minimal,
//! non-negative integers; no trailing bytes. A signer that answers with
//! anything else is broken or not the signer we think, and its answer must
//! not become a token.
//!
//! ```
//! use oidc_core::keys::der;
//!
//! // SEQUENCE { INTEGER 1, INTEGER 2 }
//! let rs = der::ecdsa_p256_signature(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02]).unwrap();
//! assert_eq!(rs[31], 1);
//! assert_eq!(rs[63], 2);
//! ```

use super::public::P256_ORDER;
use super::{KeyError, PublicKey};

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 / secp256r1 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// rsaEncryption (1.2.840.113549.1.1.1).
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-Ed25519 (1.3.101.112).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Why DER input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DerError {
    /// The input ends inside an element.
    #[error("DER input is truncated")]
    Truncated,
    /// An element of another type than expected.
    #[error("expected DER tag 0x{expected:02x}, found 0x{found:02x}")]
    UnexpectedTag {
        /// The tag required here.
        expected: u8,
        /// The tag present.
        found: u8,
    },
    /// An indefinite length, or a length not in its shortest form.
    #[error("DER length is indefinite or not minimally encoded")]
    NonMinimalLength,
    /// Bytes after the outermost element.
    #[error("{0} byte(s) after the DER element")]
    TrailingData(usize),
    /// An INTEGER that is empty, negative or has a redundant leading octet.
    #[error("DER INTEGER is empty, negative or not minimally encoded")]
    BadInteger,
    /// An ECDSA scalar wider than the curve order.
    #[error("ECDSA scalar is {0} bytes long, more than 32")]
    ScalarTooLong(usize),
    /// An ECDSA scalar that is zero or not below the group order.
    #[error("ECDSA scalar r or s is zero or not below the group order")]
    ScalarOutOfRange,
    /// A BIT STRING with unused bits (keys are whole octets).
    #[error("BIT STRING has unused bits")]
    UnusedBits,
    /// A public key algorithm or curve this crate does not sign or verify with.
    #[error("unsupported public key algorithm or curve (OID {0})")]
    UnsupportedAlgorithm(String),
    /// AlgorithmIdentifier parameters that do not fit the algorithm.
    #[error("AlgorithmIdentifier parameters do not fit the algorithm")]
    BadParameters,
    /// The key material inside is not a valid key.
    #[error("public key refused: {0}")]
    Key(KeyError),
}

/// Converts a DER `ECDSA-Sig-Value` over P-256 (`SEQUENCE { r INTEGER, s INTEGER }`)
/// into the 64-byte `r‖s` that JWS ES256 uses: leading zero octets stripped,
/// each scalar left-padded to 32 bytes, and each checked to be in `[1, n-1]`.
pub fn ecdsa_p256_signature(der: &[u8]) -> Result<[u8; 64], DerError> {
    let (sequence, rest) = read(der, TAG_SEQUENCE)?;
    if !rest.is_empty() {
        return Err(DerError::TrailingData(rest.len()));
    }
    let (r, rest) = read_unsigned(sequence)?;
    let (s, rest) = read_unsigned(rest)?;
    if !rest.is_empty() {
        return Err(DerError::TrailingData(rest.len()));
    }
    let mut out = [0u8; 64];
    place_scalar(r, &mut out[..32])?;
    place_scalar(s, &mut out[32..])?;
    Ok(out)
}

/// Parses a DER `SubjectPublicKeyInfo` holding a P-256, RSA or Ed25519 key
/// into a validated [`PublicKey`] (curve point checked, RSA size and exponent
/// checked, Ed25519 small-order points refused).
pub fn spki_public_key(der: &[u8]) -> Result<PublicKey, DerError> {
    let (info, rest) = read(der, TAG_SEQUENCE)?;
    if !rest.is_empty() {
        return Err(DerError::TrailingData(rest.len()));
    }
    let (algorithm, rest) = read(info, TAG_SEQUENCE)?;
    let (bits, rest) = read(rest, TAG_BIT_STRING)?;
    if !rest.is_empty() {
        return Err(DerError::TrailingData(rest.len()));
    }
    let key = match bits.split_first() {
        Some((0, key)) => key,
        Some(_) => return Err(DerError::UnusedBits),
        None => return Err(DerError::Truncated),
    };
    let (oid, parameters) = read(algorithm, TAG_OID)?;
    if oid == OID_EC_PUBLIC_KEY {
        let (curve, rest) = read(parameters, TAG_OID)?;
        if !rest.is_empty() {
            return Err(DerError::BadParameters);
        }
        if curve != OID_P256 {
            return Err(DerError::UnsupportedAlgorithm(oid_text(curve)));
        }
        PublicKey::p256_uncompressed(key).map_err(DerError::Key)
    } else if oid == OID_ED25519 {
        // RFC 8410: the parameters are absent.
        if !parameters.is_empty() {
            return Err(DerError::BadParameters);
        }
        PublicKey::ed25519(key).map_err(DerError::Key)
    } else if oid == OID_RSA {
        // RFC 8017: the parameters are NULL.
        if parameters != [TAG_NULL, 0] {
            return Err(DerError::BadParameters);
        }
        let (rsa, rest) = read(key, TAG_SEQUENCE)?;
        if !rest.is_empty() {
            return Err(DerError::TrailingData(rest.len()));
        }
        let (n, rest) = read_unsigned(rsa)?;
        let (e, rest) = read_unsigned(rest)?;
        if !rest.is_empty() {
            return Err(DerError::TrailingData(rest.len()));
        }
        PublicKey::rsa(n, e).map_err(DerError::Key)
    } else {
        Err(DerError::UnsupportedAlgorithm(oid_text(oid)))
    }
}

/// Reads one element of type `tag`: its contents and what follows.
fn read(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), DerError> {
    let (&found, rest) = input.split_first().ok_or(DerError::Truncated)?;
    if found != tag {
        return Err(DerError::UnexpectedTag { expected: tag, found });
    }
    let (&first, rest) = rest.split_first().ok_or(DerError::Truncated)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: 0x80 (indefinite) is BER only; at most 4 length octets
        // (nothing here comes near 4 GiB); no leading zero octet; and the long
        // form only for lengths the short form cannot express.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(DerError::NonMinimalLength);
        }
        if rest.len() < count {
            return Err(DerError::Truncated);
        }
        let (octets, rest) = rest.split_at(count);
        if octets[0] == 0 {
            return Err(DerError::NonMinimalLength);
        }
        let len = octets.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        if len < 0x80 {
            return Err(DerError::NonMinimalLength);
        }
        (len, rest)
    };
    if rest.len() < len {
        return Err(DerError::Truncated);
    }
    Ok(rest.split_at(len))
}

/// Reads a non-negative, minimally encoded INTEGER; returns its magnitude
/// without the sign octet.
fn read_unsigned(input: &[u8]) -> Result<(&[u8], &[u8]), DerError> {
    let (value, rest) = read(input, TAG_INTEGER)?;
    match value {
        [] => Err(DerError::BadInteger),
        // Negative.
        [first, ..] if first & 0x80 != 0 => Err(DerError::BadInteger),
        // A leading zero octet is only allowed in front of a high bit.
        [0, second, ..] if second & 0x80 == 0 => Err(DerError::BadInteger),
        [0, magnitude @ ..] if !magnitude.is_empty() => Ok((magnitude, rest)),
        _ => Ok((value, rest)),
    }
}

fn place_scalar(scalar: &[u8], out: &mut [u8]) -> Result<(), DerError> {
    if scalar.len() > out.len() {
        return Err(DerError::ScalarTooLong(scalar.len()));
    }
    let offset = out.len() - scalar.len();
    out[offset..].copy_from_slice(scalar);
    if out.iter().all(|b| *b == 0) || *out >= P256_ORDER[..] {
        return Err(DerError::ScalarOutOfRange);
    }
    Ok(())
}

/// Dotted text of an OID, for messages.
fn oid_text(oid: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut value: u64 = 0;
    for (index, byte) in oid.iter().enumerate() {
        value = value << 7 | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if parts.is_empty() && index < 8 {
                let first = (value / 40).min(2);
                parts.push(first.to_string());
                parts.push((value - first * 40).to_string());
            } else {
                parts.push(value.to_string());
            }
            value = 0;
        }
        if parts.len() > 32 {
            break;
        }
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_must_be_minimal() {
        // 0x81 0x05: long form for a short length.
        assert_eq!(
            read(&[0x02, 0x81, 0x05, 1, 2, 3, 4, 5], 0x02),
            Err(DerError::NonMinimalLength)
        );
        assert_eq!(read(&[0x30, 0x80, 0, 0], 0x30), Err(DerError::NonMinimalLength));
        assert_eq!(read(&[0x02, 0x03, 1], 0x02), Err(DerError::Truncated));
    }

    #[test]
    fn integers_must_be_minimal_and_positive() {
        assert_eq!(
            read_unsigned(&[0x02, 0x02, 0x00, 0x01]),
            Err(DerError::BadInteger)
        );
        assert_eq!(read_unsigned(&[0x02, 0x01, 0x80]), Err(DerError::BadInteger));
        assert_eq!(read_unsigned(&[0x02, 0x00]), Err(DerError::BadInteger));
        assert_eq!(
            read_unsigned(&[0x02, 0x02, 0x00, 0x80]),
            Ok((&[0x80u8][..], &[][..]))
        );
        assert_eq!(read_unsigned(&[0x02, 0x01, 0x00]), Ok((&[0x00u8][..], &[][..])));
    }

    #[test]
    fn zero_scalars_are_refused() {
        assert_eq!(
            ecdsa_p256_signature(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]),
            Err(DerError::ScalarOutOfRange)
        );
    }

    #[test]
    fn oid_text_is_dotted() {
        assert_eq!(oid_text(OID_P256), "1.2.840.10045.3.1.7");
        assert_eq!(oid_text(OID_ED25519), "1.3.101.112");
    }
}
