//! Raw JSON carried through the canonical model untouched.
//!
//! Lossless same-dialect routing rests on two things defined here: [`RawJson`], a JSON value
//! kept as the exact text it arrived as, and [`Extra`], the fields of a wire object that the
//! canonical model does not name. A dialect decoder puts every field it does not understand
//! into the enclosing object's `Extra`; that dialect's encoder writes them back. Encoders of
//! other dialects never emit them: a field meant for one provider is noise (or a 400) for
//! another.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON value kept verbatim (its original text, whitespace included).
pub type RawJson = Box<RawValue>;

/// The wire dialects a canonical value can originate from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Chat Completions.
    OpenAi,
}

impl Dialect {
    /// A short lowercase name, as used in logs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Anthropic => "anthropic",
            Dialect::OpenAi => "openai",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fields of a wire object that the canonical model does not name, in arrival order.
///
/// Which dialect they belong to is recorded once, on the enclosing request or response
/// (`origin`), not on every object.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    fields: Vec<(String, RawJson)>,
}

impl Extra {
    /// An empty set.
    pub const fn new() -> Self {
        Extra { fields: Vec::new() }
    }

    /// Adds (or replaces) a field.
    pub fn insert(&mut self, key: impl Into<String>, value: RawJson) {
        let key = key.into();
        if let Some(slot) = self.fields.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.fields.push((key, value));
        }
    }

    /// Records that a field arrived as an explicit `null`. Known optional fields that are
    /// `null` on the wire land here so that the same dialect can write the `null` back.
    pub fn insert_null(&mut self, key: impl Into<String>) {
        self.insert(key, null_raw());
    }

    /// The raw value of a field.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }

    /// Removes a field, returning its raw value.
    pub fn remove(&mut self, key: &str) -> Option<RawJson> {
        let pos = self.fields.iter().position(|(k, _)| k == key)?;
        Some(self.fields.remove(pos).1)
    }

    /// Whether a field is present.
    pub fn contains(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _)| k == key)
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The fields in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), &**v))
    }

    /// Writes every field into a map being serialized, skipping the keys in `skip` (fields
    /// the encoder writes itself).
    pub fn serialize_into<M: SerializeMap>(
        &self,
        map: &mut M,
        skip: &[&str],
    ) -> Result<(), M::Error> {
        for (k, v) in &self.fields {
            if !skip.contains(&k.as_str()) {
                map.serialize_entry(k, &**v)?;
            }
        }
        Ok(())
    }
}

/// A raw JSON `null`.
pub fn null_raw() -> RawJson {
    // "null" is valid JSON; failure here would be a bug in serde_json.
    #[allow(clippy::expect_used)]
    RawValue::from_string("null".to_owned()).expect("null is valid JSON")
}

/// Raw JSON from a value that serializes infallibly (strings, numbers, booleans, maps of them).
pub fn to_raw<T: Serialize + ?Sized>(value: &T) -> RawJson {
    // serde_json only fails on maps with non-string keys or failing Serialize impls; the
    // callers pass plain data, so a failure is a bug.
    #[allow(clippy::expect_used)]
    serde_json::value::to_raw_value(value).expect("plain data serializes")
}

/// Serializes an [`Extra`] as a JSON object on its own.
impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        self.serialize_into(&mut map, &[])?;
        map.end()
    }
}

/// A map key that borrows from the input when it can (no escapes) and owns it otherwise.
///
/// Decoders use it to match field names without allocating for every key.
#[derive(Debug)]
pub struct Key<'de>(pub Cow<'de, str>);

impl Key<'_> {
    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string.
    pub fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keeps_order_and_replaces_in_place() {
        let mut e = Extra::new();
        e.insert("b", to_raw(&1));
        e.insert("a", to_raw("x"));
        e.insert("b", to_raw(&2));
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"b":2,"a":"x"}"#);
        assert!(e.contains("a"));
        assert_eq!(e.remove("a").unwrap().get(), r#""x""#);
        assert!(!e.contains("a"));
    }

    #[test]
    fn key_borrows_without_escapes_and_owns_with_them() {
        let k: Key<'_> = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(k.0, Cow::Borrowed("plain")));
        let k: Key<'_> = serde_json::from_str(r#""esc\"aped""#).unwrap();
        assert_eq!(k.as_str(), "esc\"aped");
    }
}
