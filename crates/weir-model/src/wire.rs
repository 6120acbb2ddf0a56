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
    // (A value's error names its field, unless it already does: `tools[2]: ...`.)
    let v: Option<T> = map.next_value().map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with(key.as_str()) {
            e
        } else {
            serde::de::Error::custom(format_args!("`{}`: {msg}", key.as_str()))
        }
    })?;
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

thread_local! {
    /// How many nested parses (a raw slice of the document parsed again) are under way on
    /// this thread.
    static NESTED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Most nested parses at once: content blocks inside a tool result's content, at most a
/// few levels in real traffic. Each starts serde_json's depth limit afresh, so without
/// this bound a client could nest them until the thread's stack overflows.
const MAX_NESTED: u32 = 16;

/// Held while a raw slice of the document is parsed again (see `MAX_NESTED`: at most 16 levels).
#[derive(Debug)]
pub struct NestGuard(());

impl NestGuard {
    /// Enters one more nested parse, or refuses when there are too many.
    pub fn enter<E: serde::de::Error>() -> Result<NestGuard, E> {
        NESTED.with(|n| {
            if n.get() >= MAX_NESTED {
                return Err(E::custom(format!(
                    "content is nested more than {MAX_NESTED} levels deep"
                )));
            }
            n.set(n.get() + 1);
            Ok(NestGuard(()))
        })
    }
}

impl Drop for NestGuard {
    fn drop(&mut self) {
        NESTED.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// An error from parsing a nested value (a raw slice of the document) as an error of the
/// outer deserializer: the inner position, relative to the slice, would mislead, so it is
/// dropped and the outer deserializer adds the document position.
pub fn nested_error<E: serde::de::Error>(e: &serde_json::Error) -> E {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    E::custom(text.strip_suffix(&suffix).unwrap_or(&text))
}

/// If `s` starts with a JSON string token, the token and the rest. The token is then
/// validated as JSON when turned into a [`crate::JsonStr`], so this only has to find its
/// end: the first quote not escaped by a backslash.
pub fn split_string_token(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    loop {
        let rel = memchr::memchr2(b'"', b'\\', &bytes[i..])?;
        let at = i + rel;
        if bytes[at] == b'"' {
            return Some((&s[..=at], &s[at + 1..]));
        }
        i = at + 2;
        if i > bytes.len() {
            return None;
        }
    }
}

/// A map being serialized that remembers which keys it wrote, so fields kept in an
/// [`Extra`] never duplicate a field the encoder wrote itself (say a `max_tokens` the
/// client sent as `null` and the gateway then filled in).
pub struct TrackedMap<M> {
    map: M,
    written: Vec<&'static str>,
}

impl<M: serde::ser::SerializeMap> TrackedMap<M> {
    /// Wraps a map.
    pub fn new(map: M) -> Self {
        TrackedMap {
            map,
            written: Vec::with_capacity(16),
        }
    }

    /// Writes a field the encoder knows.
    pub fn entry<V: serde::Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), M::Error> {
        self.written.push(key);
        self.map.serialize_entry(key, value)
    }

    /// Writes the kept fields, except those already written and those in `skip`.
    pub fn extra(&mut self, extra: &Extra, skip: &[&str]) -> Result<(), M::Error> {
        for (k, v) in extra.iter() {
            if !self.written.contains(&k) && !skip.contains(&k) {
                self.map.serialize_entry(k, v)?;
            }
        }
        Ok(())
    }

    /// Finishes the map.
    pub fn end(self) -> Result<M::Ok, M::Error> {
        self.map.end()
    }
}

/// The body as UTF-8. Validating once up front lets the JSON parser skip validating every
/// string (JSON must be UTF-8 anyway).
pub fn utf8<'a>(what: &str, body: &'a [u8]) -> Result<&'a str, crate::WireError> {
    std::str::from_utf8(body).map_err(|e| {
        crate::WireError::Malformed(format!(
            "invalid {what}: not UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })
}

/// JSON text without insignificant whitespace: `{"a": 1}` becomes `{"a":1}`. Borrowed
/// when there is nothing to remove (the common case for machine-written JSON). Only valid
/// JSON is passed here, so string boundaries are tracked by quotes and escapes alone.
pub fn compact_json(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = {
        let mut in_str = false;
        let mut esc = false;
        text.bytes().any(|b| {
            if in_str {
                match (esc, b) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                false
            } else if b == b'"' {
                in_str = true;
                false
            } else {
                matches!(b, b' ' | b'\n' | b'\r' | b'\t')
            }
        })
    };
    if !needs {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut esc = false;
    for c in text.chars() {
        if in_str {
            out.push(c);
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A tool call id rewritten to fit a dialect's rules, deterministically, so a call and the
/// result that answers it still match: the id's characters (each one `valid` rejects as
/// `_`), cut to leave room for `_` and a 16-hex-digit FNV-1a hash of the whole original,
/// so ids that differ only where they were cut or replaced stay distinct. At most `max`
/// characters.
pub fn rewritten_id(id: &str, max: usize, valid: impl Fn(char) -> bool) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut out: String = id
        .chars()
        .map(|c| if valid(c) { c } else { '_' })
        .take(max.saturating_sub(17))
        .collect();
    out.push('_');
    out.push_str(&format!("{hash:016x}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_tokens_end_at_the_first_unescaped_quote() {
        assert_eq!(split_string_token(r#""ab"}}"#), Some((r#""ab""#, "}}")));
        assert_eq!(
            split_string_token(r#""a\"b\\"x"#),
            Some((r#""a\"b\\""#, "x"))
        );
        assert_eq!(split_string_token(r#""unterminated"#), None);
        assert_eq!(split_string_token(r#""ends in \"#), None);
        assert_eq!(split_string_token("nope"), None);
    }

    #[test]
    fn compact_json_removes_only_insignificant_whitespace() {
        assert_eq!(compact_json(r#"{"a":1}"#), r#"{"a":1}"#);
        assert!(matches!(
            compact_json(r#"{"a":1}"#),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            compact_json("{\n  \"a b\": \"x \\\" y\",\n  \"c\": [1, 2]\n}"),
            r#"{"a b":"x \" y","c":[1,2]}"#
        );
    }
}
