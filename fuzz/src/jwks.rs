//! `oidc_core::JwkSet::from_json` and `VerifyingKey::from_jwk_json`.
//!
//! Properties: an accepted set is a strict JSON object with at most
//! `MAX_KEYS` entries, every entry either usable or refused with a reason,
//! no `kid` twice; every usable key survives its own JWK (`to_jwk` then
//! `from_jwk` gives the same key, kid and algorithm) and the set survives
//! `to_json`. A single accepted JWK is the same key inside a set of one.

use oidc_core::json;
use oidc_core::jwks::MAX_KEYS;
use oidc_core::keys::VerifyingKey;
use oidc_core::JwkSet;
use serde_json::Value;

pub fn run(data: &[u8]) {
    if let Ok(set) = JwkSet::from_json(data) {
        let doc = json::parse_object(data).expect("an accepted JWKS is a strict JSON object");
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .expect("an accepted JWKS has keys");
        assert!(entries.len() <= MAX_KEYS);
        assert_eq!(
            set.len() + set.refused().len(),
            entries.len(),
            "an entry was lost"
        );
        let mut kids = std::collections::HashSet::new();
        for key in set.keys() {
            assert!(kids.insert(key.kid().to_owned()), "kid {:?} twice", key.kid());
            let again = VerifyingKey::from_jwk(&key.to_jwk()).expect("a usable key's own JWK is usable");
            assert_eq!(&again, key.as_ref(), "a key changed through its JWK");
            assert_eq!(set.get(key.kid()).map(|k| k.as_ref()), Some(key.as_ref()));
        }
        let reparsed = JwkSet::from_json(set.to_json().as_bytes()).expect("to_json is a valid JWKS");
        assert_eq!(reparsed.len(), set.len());
        assert!(
            reparsed.refused().is_empty(),
            "to_json wrote a key that is refused"
        );
        for key in set.keys() {
            assert_eq!(reparsed.get(key.kid()).map(|k| k.as_ref()), Some(key.as_ref()));
        }
    }
    if let Ok(key) = VerifyingKey::from_jwk_json(data) {
        let again = VerifyingKey::from_jwk(&key.to_jwk()).expect("a usable key's own JWK is usable");
        assert_eq!(again, key, "a key changed through its JWK");
        let mut doc = br#"{"keys":["#.to_vec();
        doc.extend_from_slice(data);
        doc.extend_from_slice(b"]}");
        let set = JwkSet::from_json(&doc).expect("a usable JWK makes a valid set of one");
        assert_eq!(
            set.get(key.kid()).map(|k| k.as_ref()),
            Some(&key),
            "a JWK means another key in a set"
        );
    }
}
