//! Helpers for hand-written, single-pass dialect decoders: reading optional fields while
//! remembering explicit `null`s, and rebuilding objects from raw fields.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::raw::{to_raw, Extra, Key, RawJson};

/// Reads the next value as raw JSON, turning `null` into `None`.
pub fn opt_raw<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<RawJson>, A::Error> {
    let raw: RawJson = map.next_value()?;
    Ok(if raw.get() == "null" { None } else { Some(raw) })
}

/// Reads an optional typed value; an explicit `null` is recorded in `extra` so the same
/// dialect writes it back.
pub fn opt_value<'de, A, T>(
    map: &mut A,
    key: &Key<'_>,
    extra: &mut Extra,
) -> Result<Option<T>, A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    let v: Option<T> = map.next_value()?;
    if v.is_none() {
        extra.insert_null(key.as_str());
    }
    Ok(v)
}

/// Writes key/raw-value pairs as a JSON object.
pub fn object_text<'a>(fields: impl Iterator<Item = (&'a str, &'a RawValue)>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&to_raw(k).to_string());
        out.push(':');
        out.push_str(v.get());
    }
    out.push('}');
    out
}

/// An object as borrowed key/raw-value pairs.
pub struct RawFields<'de>(pub Vec<(Key<'de>, &'de RawValue)>);

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    v.push((k, map.next_value()?));
                }
                Ok(RawFields(v))
            }
        }
        d.deserialize_map(V)
    }
}
