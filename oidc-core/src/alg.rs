//! The signature algorithms this crate signs and verifies with.

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm (RFC 7518 §3, RFC 8037).
///
/// Only asymmetric algorithms exist here: HMAC would let anyone holding the
/// published key forge tokens, so it is refused everywhere rather than configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// ECDSA over P-256 with SHA-256; signatures are 64-byte `r‖s`. The default.
    #[default]
    ES256,
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256; keys of 2048 to 8192 bits.
    RS256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt; keys of 2048 to 8192 bits.
    PS256,
    /// ECDSA over P-384 with SHA-384; signatures are 96-byte `r‖s`. What
    /// AWS STS web identity tokens use besides RS256.
    ES384,
}

impl Algorithm {
    /// Every algorithm, in order of preference.
    pub const ALL: [Algorithm; 5] = [Self::ES256, Self::EdDSA, Self::RS256, Self::PS256, Self::ES384];

    /// The JOSE name (`"ES256"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
            Self::PS256 => "PS256",
            Self::ES384 => "ES384",
        }
    }

    /// Whether this is one of the RSA algorithms.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::RS256 | Self::PS256)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an algorithm name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlgorithmError {
    /// `none`, in any letter case: an unsigned token.
    #[error("algorithm \"none\" is never accepted")]
    None,
    /// An HMAC algorithm (`HS256`, ...), which would turn a public key into a shared secret.
    #[error("symmetric algorithm {0:?} is never accepted")]
    Symmetric(String),
    /// A name this crate does not implement (`ES512`, `RS512`, ...).
    #[error("unsupported algorithm {0:?} (supported: ES256, EdDSA, RS256, PS256, ES384)")]
    Unsupported(String),
}

impl FromStr for Algorithm {
    type Err = AlgorithmError;

    /// Parses a JOSE name exactly (names are case-sensitive), naming the
    /// dangerous families specifically.
    fn from_str(name: &str) -> Result<Self, AlgorithmError> {
        match name {
            "ES256" => Ok(Self::ES256),
            "EdDSA" => Ok(Self::EdDSA),
            "RS256" => Ok(Self::RS256),
            "PS256" => Ok(Self::PS256),
            "ES384" => Ok(Self::ES384),
            _ if name.eq_ignore_ascii_case("none") => Err(AlgorithmError::None),
            // `get` rather than slicing: the name is attacker-chosen and its
            // second byte may sit inside a multi-byte character.
            _ if name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) => {
                Err(AlgorithmError::Symmetric(crate::text::excerpt(name)))
            }
            _ => Err(AlgorithmError::Unsupported(crate::text::excerpt(name))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_exactly() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.name().parse::<Algorithm>(), Ok(alg));
        }
        assert_eq!(
            "es256".parse::<Algorithm>(),
            Err(AlgorithmError::Unsupported("es256".into()))
        );
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(none.parse::<Algorithm>(), Err(AlgorithmError::None));
        }
        assert_eq!(
            "HS256".parse::<Algorithm>(),
            Err(AlgorithmError::Symmetric("HS256".into()))
        );
        assert_eq!("ES384".parse::<Algorithm>(), Ok(Algorithm::ES384));
        assert_eq!(
            "es384".parse::<Algorithm>(),
            Err(AlgorithmError::Unsupported("es384".into()))
        );
        assert_eq!(
            "ES512".parse::<Algorithm>(),
            Err(AlgorithmError::Unsupported("ES512".into()))
        );
        // A multi-byte character straddling the "HS" prefix is just unsupported.
        assert_eq!(
            "H\u{e9}256".parse::<Algorithm>(),
            Err(AlgorithmError::Unsupported("H\u{e9}256".into()))
        );
    }
}
