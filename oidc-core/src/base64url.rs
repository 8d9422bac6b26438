//! Unpadded base64url (RFC 7515 §2) with strict decoding: URL-safe alphabet only,
//! no padding, no whitespace, canonical trailing bits: the encoding of every
//! part of a JWS and every binary JWK member.
//!
//! ```
//! use oidc_core::base64url::{self, Base64Error};
//! assert_eq!(base64url::encode(b"fo"), "Zm8");
//! assert_eq!(base64url::decode("Zm8")?, b"fo");
//! // Padding, the standard alphabet and stray trailing bits are refused.
//! assert_eq!(base64url::decode("Zm8="), Err(Base64Error::Padding));
//! assert_eq!(base64url::decode("Zm9"), Err(Base64Error::NonCanonical));
//! # Ok::<(), Base64Error>(())
//! ```

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{DecodeError, Engine};

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        // A non-canonical last symbol would let two strings decode to the same
        // bytes: refused so that one signature has exactly one encoding.
        .with_decode_allow_trailing_bits(false),
);

/// Why a base64url string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base64Error {
    /// A byte outside the URL-safe alphabet (`+`, `/`, whitespace, ...).
    #[error("byte 0x{byte:02x} at offset {offset} is not in the base64url alphabet")]
    InvalidCharacter {
        /// Offset of the byte within the encoded part.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
    /// `=` padding, which JOSE forbids.
    #[error("base64url padding is not allowed")]
    Padding,
    /// The last symbol carries bits that do not belong to the data.
    #[error("non-canonical base64url: the last symbol has trailing bits set")]
    NonCanonical,
    /// A length no base64 encoding can have.
    #[error("impossible base64url length")]
    Length,
}

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    ENGINE.encode(bytes)
}

/// Appends the unpadded base64url encoding of `bytes` to `out`.
pub(crate) fn encode_into(bytes: impl AsRef<[u8]>, out: &mut String) {
    ENGINE.encode_string(bytes, out)
}

/// Decodes unpadded base64url, refusing anything but the canonical encoding.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, Base64Error> {
    let text = text.as_ref();
    // `=` is reported as an invalid byte by the engine when it is not at the end;
    // name it for what it is.
    if text.contains(&b'=') {
        return Err(Base64Error::Padding);
    }
    ENGINE.decode(text).map_err(|e| match e {
        DecodeError::InvalidByte(offset, byte) => Base64Error::InvalidCharacter { offset, byte },
        DecodeError::InvalidLength(_) => Base64Error::Length,
        DecodeError::InvalidLastSymbol(_, _) => Base64Error::NonCanonical,
        DecodeError::InvalidPadding => Base64Error::Padding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(encode(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn refuses_lax_forms() {
        assert_eq!(decode("Zm9v").unwrap(), b"foo");
        assert_eq!(decode("Zm8="), Err(Base64Error::Padding));
        assert_eq!(
            decode("Zm+v"),
            Err(Base64Error::InvalidCharacter {
                offset: 2,
                byte: b'+'
            })
        );
        assert_eq!(
            decode("Zm/v"),
            Err(Base64Error::InvalidCharacter {
                offset: 2,
                byte: b'/'
            })
        );
        assert!(matches!(
            decode("Zm 9v"),
            Err(Base64Error::InvalidCharacter { .. })
        ));
        // "Zm8" is "fo"; "Zm9" sets trailing bits that "fo" does not have.
        assert_eq!(decode("Zm8").unwrap(), b"fo");
        assert_eq!(decode("Zm9"), Err(Base64Error::NonCanonical));
        assert_eq!(decode("Z"), Err(Base64Error::Length));
    }
}
