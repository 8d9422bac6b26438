//! `oidc_core::json::parse`, the strict JSON reader of headers,
//! claims, keys and discovery documents.
//!
//! Properties: it accepts only what serde_json accepts, and then the same
//! value; never an object with a duplicate member name (checked by a
//! separate visitor over serde_json's own tokenizer), never nesting deeper
//! than `MAX_DEPTH`; and it accepts everything serde_json accepts that has
//! neither (so strictness costs no valid document).

use std::collections::HashSet;
use std::fmt;

use oidc_core::json::{self, JsonError, MAX_DEPTH};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// What the oracle learns about a document: whether some object repeats a
/// member name, and the deepest nesting of arrays and objects.
#[derive(Debug, Default, Clone, Copy)]
struct Shape {
    duplicate: bool,
    depth: usize,
}

struct ShapeSeed;

impl<'de> DeserializeSeed<'de> for ShapeSeed {
    type Value = Shape;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::default())
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut shape = Shape {
            duplicate: false,
            depth: 1,
        };
        while let Some(item) = seq.next_element_seed(ShapeSeed)? {
            shape.duplicate |= item.duplicate;
            shape.depth = shape.depth.max(item.depth + 1);
        }
        Ok(shape)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut shape = Shape {
            duplicate: false,
            depth: 1,
        };
        let mut names = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            shape.duplicate |= !names.insert(name);
            let item = map.next_value_seed(ShapeSeed)?;
            shape.duplicate |= item.duplicate;
            shape.depth = shape.depth.max(item.depth + 1);
        }
        Ok(shape)
    }
}

fn shape(data: &[u8]) -> Option<Shape> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let shape = ShapeSeed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(shape)
}

pub fn run(data: &[u8]) {
    let ours = json::parse(data);
    let theirs = serde_json::from_slice::<Value>(data);
    match (&ours, &theirs) {
        (Ok(value), Ok(expected)) => {
            assert_eq!(value, expected, "strict parse differs from serde_json");
            let shape = shape(data).expect("the oracle reads what serde_json reads");
            assert!(!shape.duplicate, "accepted an object with a duplicate member");
            assert!(
                shape.depth <= MAX_DEPTH,
                "accepted nesting of depth {}",
                shape.depth
            );
        }
        (Ok(_), Err(e)) => panic!("strict parser accepted what serde_json refuses: {e}"),
        (Err(error), Ok(_)) => {
            // Refused what serde_json reads: only for a reason of its own.
            let shape = shape(data);
            match error {
                JsonError::DuplicateMember(_) => {
                    assert!(
                        shape.is_none_or(|s| s.duplicate),
                        "duplicate reported where there is none"
                    )
                }
                JsonError::TooDeep(_) => {
                    assert!(
                        shape.is_none_or(|s| s.depth > MAX_DEPTH),
                        "too deep reported for a shallow document"
                    )
                }
                other => panic!("refused a document serde_json reads without a strictness reason: {other:?}"),
            }
        }
        (Err(_), Err(_)) => {}
    }
    // parse_object is parse plus "an object".
    match (json::parse_object(data), ours) {
        (Ok(map), Ok(value)) => assert_eq!(Value::Object(map), value),
        (Err(JsonError::NotAnObject), Ok(value)) => assert!(!value.is_object()),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("parse_object {a:?} disagrees with parse {b:?}"),
    }
}
