//! Strict JSON for headers, claims and keys: one value, no duplicate member names,
//! bounded nesting. serde_json alone keeps the last of two duplicate members,
//! which lets a token mean different things to different parsers.
//!
//! Every JSON document this workspace reads from a stranger (a token's
//! header and claims, a JWK Set, a discovery document, a client assertion)
//! goes through [`parse`] or [`parse_object`].
//!
//! ```
//! use oidc_core::json::{self, JsonError};
//! let header = json::parse_object(br#"{"alg":"ES256","typ":"at+jwt"}"#)?;
//! assert_eq!(header["alg"], "ES256");
//! // serde_json alone would keep the second `alg`.
//! assert_eq!(
//!     json::parse_object(br#"{"alg":"ES256","alg":"none"}"#),
//!     Err(JsonError::DuplicateMember("alg".into()))
//! );
//! # Ok::<(), JsonError>(())
//! ```

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

use crate::text;

/// Deepest nesting of arrays and objects accepted in a header, claim set or key.
pub const MAX_DEPTH: usize = 16;

/// Why a JSON document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON (or not UTF-8); the text says where.
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// The same member name twice in one object.
    #[error("duplicate member {0:?}")]
    DuplicateMember(String),
    /// Arrays or objects nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
    /// Valid JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
}

/// Parses `bytes` as one JSON object under the strict rules.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

/// Parses `bytes` as one JSON value under the strict rules.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let problem = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = StrictSeed {
        problem: &problem,
        depth: 0,
    };
    let result = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match result {
        Ok(value) => Ok(value),
        Err(e) => Err(problem.take().unwrap_or_else(|| JsonError::Syntax(e.to_string()))),
    }
}

/// A member name, borrowed unless it has escapes (serde's own `Cow<str>`
/// always copies).
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct StrictSeed<'p> {
    problem: &'p Cell<Option<JsonError>>,
    depth: usize,
}

impl StrictSeed<'_> {
    fn fail<E: de::Error>(&self, problem: JsonError) -> E {
        let message = problem.to_string();
        self.problem.set(Some(problem));
        E::custom(message)
    }

    fn nested(&self) -> Self {
        StrictSeed {
            problem: self.problem,
            depth: self.depth + 1,
        }
    }
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.fail(JsonError::TooDeep(MAX_DEPTH)));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.nested())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.fail(JsonError::TooDeep(MAX_DEPTH)));
        }
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            // One search per member: the entry both detects the duplicate and
            // is where the value goes.
            match map.entry(key) {
                Entry::Occupied(first) => {
                    return Err(self.fail(JsonError::DuplicateMember(text::excerpt(first.key()))))
                }
                Entry::Vacant(slot) => {
                    slot.insert(access.next_value_seed(self.nested())?);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects() {
        let map = parse_object(br#" {"a": [1, 2.5, "x", null, true], "b": {"c": -3}} "#).unwrap();
        assert_eq!(map["b"]["c"], -3);
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateMember("a".into()))
        );
        assert_eq!(
            parse_object(br#"{"x":{"b":1,"b":1}}"#),
            Err(JsonError::DuplicateMember("b".into()))
        );
        // Escapes do not hide a duplicate.
        assert_eq!(
            parse_object(br#"{"alg":1,"\u0061lg":2}"#),
            Err(JsonError::DuplicateMember("alg".into()))
        );
    }

    #[test]
    fn refuses_deep_nesting() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(parse_object(deep.as_bytes()), Err(JsonError::TooDeep(MAX_DEPTH)));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(deep.as_bytes()), Err(JsonError::TooDeep(MAX_DEPTH)));
    }

    #[test]
    fn refuses_non_objects_garbage_and_bad_utf8() {
        assert_eq!(parse_object(b"[1]"), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(b"\"s\""), Err(JsonError::NotAnObject));
        assert!(matches!(parse_object(b"{} x"), Err(JsonError::Syntax(_))));
        assert!(matches!(
            parse_object(b"{\"a\":\"\xff\"}"),
            Err(JsonError::Syntax(_))
        ));
        assert!(matches!(
            parse_object(b"{\"a\":\"\\ud800\"}"),
            Err(JsonError::Syntax(_))
        ));
        assert!(matches!(parse_object(b""), Err(JsonError::Syntax(_))));
    }
}
