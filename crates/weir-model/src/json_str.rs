//! [`JsonStr`]: a string kept as its JSON token.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A string held as the JSON string token it arrived as (quotes and escapes included).
///
/// Prompts, tool descriptions and streamed text are most of a request's and a stream's
/// bytes. Every dialect spells strings the same way, so a gateway almost never needs their
/// decoded value: keeping the token makes decoding a scan and encoding a copy. The decoded
/// text is available through [`JsonStr::as_str`], borrowed when the token has no escapes.
#[derive(Clone)]
pub struct JsonStr(Box<RawValue>);

impl JsonStr {
    /// A token for `s` (escaping it).
    pub fn new(s: &str) -> Self {
        JsonStr(crate::raw::to_raw(s))
    }

    /// A token from raw JSON, if it is a string.
    pub fn from_raw(raw: Box<RawValue>) -> Option<Self> {
        raw.get().starts_with('"').then_some(JsonStr(raw))
    }

    /// A token from its JSON text (quotes included), validated.
    pub fn from_token(token: &str) -> Option<Self> {
        let raw = RawValue::from_string(token.to_owned()).ok()?;
        JsonStr::from_raw(raw)
    }

    /// A token from borrowed raw JSON, if it is a string.
    pub fn from_raw_ref(raw: &RawValue) -> Option<Self> {
        raw.get().starts_with('"').then(|| JsonStr(raw.to_owned()))
    }

    /// A token for a string known to need no escaping (it came out of a JSON document
    /// unescaped, so it holds no quote, backslash or control character).
    pub fn from_unescaped(s: &str) -> Self {
        let mut tok = String::with_capacity(s.len() + 2);
        tok.push('"');
        tok.push_str(s);
        tok.push('"');
        match RawValue::from_string(tok) {
            Ok(raw) => JsonStr(raw),
            Err(_) => JsonStr::new(s),
        }
    }

    /// The empty string.
    pub fn empty() -> Self {
        JsonStr::new("")
    }

    /// The decoded string.
    pub fn as_str(&self) -> Cow<'_, str> {
        let tok = self.0.get();
        let inner = &tok[1..tok.len() - 1];
        if inner.contains('\\') {
            // A token holds a valid JSON string (checked on construction); one with a lone
            // UTF-16 surrogate escape (JavaScript that cut a string mid-emoji) has no
            // Rust string: each such escape decodes as U+FFFD, the rest as it is. (The
            // last fallback keeps the escaped form rather than panic.)
            Cow::Owned(serde_json::from_str::<String>(tok).unwrap_or_else(|_| {
                serde_json::from_str::<String>(&without_lone_surrogates(tok))
                    .unwrap_or_else(|_| inner.to_owned())
            }))
        } else {
            Cow::Borrowed(inner)
        }
    }

    /// How many characters (Unicode scalar values) the decoded string has, counted on the
    /// token without decoding it.
    pub fn chars(&self) -> usize {
        let tok = self.0.get().as_bytes();
        let inner = &tok[1..tok.len() - 1];
        let mut n = 0;
        let mut i = 0;
        while i < inner.len() {
            match inner[i] {
                b'\\' if inner.get(i + 1) == Some(&b'u') => {
                    // `\uXXXX`; a high surrogate and the low one after it are one character
                    // (a lone one decodes as U+FFFD: one character too).
                    let unit = |at: usize| {
                        inner
                            .get(at..at + 2)
                            .filter(|u| *u == b"\\u")
                            .and_then(|_| inner.get(at + 2..at + 6))
                            .and_then(|h| std::str::from_utf8(h).ok())
                            .and_then(|h| u16::from_str_radix(h, 16).ok())
                    };
                    let high = unit(i).is_some_and(|u| (0xD800..0xDC00).contains(&u));
                    let low = || unit(i + 6).is_some_and(|u| (0xDC00..0xE000).contains(&u));
                    i += if high && low() { 12 } else { 6 };
                    n += 1;
                }
                b'\\' => {
                    i += 2;
                    n += 1;
                }
                b => {
                    n += usize::from(b & 0xC0 != 0x80);
                    i += 1;
                }
            }
        }
        n
    }

    /// The token, quotes included: valid JSON to write into any document.
    pub fn token(&self) -> &str {
        self.0.get()
    }

    /// The strings joined with `sep`, or `None` when there are none. A single string is
    /// cloned as it is (no decoding).
    pub fn join<'a>(parts: impl IntoIterator<Item = &'a JsonStr>, sep: &str) -> Option<JsonStr> {
        let mut it = parts.into_iter();
        let first = it.next()?;
        let Some(second) = it.next() else {
            return Some(first.clone());
        };
        let mut s = first.as_str().into_owned();
        for p in std::iter::once(second).chain(it) {
            s.push_str(sep);
            s.push_str(&p.as_str());
        }
        Some(JsonStr::new(&s))
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.get().len() == 2
    }

    /// Whether the string is empty or whitespace only (`"\n\n"`, which Anthropic refuses
    /// as a text block).
    pub fn is_blank(&self) -> bool {
        let tok = self.0.get();
        let inner = &tok[1..tok.len() - 1];
        // Most text starts with something visible: decided without decoding.
        match inner.chars().next() {
            None => true,
            Some(c) if c != '\\' && !c.is_whitespace() => false,
            Some(_) => self.as_str().trim().is_empty(),
        }
    }
}

impl Default for JsonStr {
    fn default() -> Self {
        JsonStr::empty()
    }
}

impl From<&str> for JsonStr {
    fn from(s: &str) -> Self {
        JsonStr::new(s)
    }
}

impl From<String> for JsonStr {
    fn from(s: String) -> Self {
        JsonStr::new(&s)
    }
}

impl PartialEq for JsonStr {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get() || self.as_str() == other.as_str()
    }
}

impl Eq for JsonStr {}

impl PartialEq<str> for JsonStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for JsonStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for JsonStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl fmt::Display for JsonStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl Serialize for JsonStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for JsonStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        if raw.get().starts_with('"') {
            Ok(JsonStr(raw))
        } else {
            Err(de::Error::invalid_type(
                de::Unexpected::Other(raw.get()),
                &"a string",
            ))
        }
    }
}

/// `tok` (a JSON string token) with each `\\uXXXX` escape of a lone UTF-16 surrogate
/// (one not in a high-low pair) written as `\\ufffd`.
fn without_lone_surrogates(tok: &str) -> String {
    let b = tok.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        if b.get(at) != Some(&b'\\') || b.get(at + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(b.get(at + 2..at + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    };
    let mut out = String::with_capacity(tok.len());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit(i) {
            Some(0xD800..=0xDBFF)
                if unit(i + 6).is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) =>
            {
                i += 12;
            }
            Some(0xD800..=0xDFFF) => {
                out.push_str(&tok[copied..i]);
                out.push_str("\\ufffd");
                i += 6;
                copied = i;
            }
            Some(_) => i += 6,
            None => i += 2,
        }
    }
    out.push_str(&tok[copied..]);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn blank_is_empty_or_whitespace_however_escaped() {
        for (s, blank) in [
            ("", true),
            ("\n\n", true),
            (" \t\r\n\u{a0}", true),
            ("\n x", false),
            ("x", false),
            ("\\", false),
            ("\"", false),
        ] {
            assert_eq!(super::JsonStr::new(s).is_blank(), blank, "{s:?}");
        }
        let escaped = super::JsonStr::from_token(r#""\u0020\n""#).unwrap();
        assert!(escaped.is_blank());
    }

    use super::*;

    #[test]
    fn a_lone_surrogate_decodes_as_a_replacement_and_the_rest_as_it_is() {
        for (tok, want) in [
            (r#""x\ud800y""#, "x\u{fffd}y"),
            (
                r#""He said \"hi\"\n\u00e9 \ud800""#,
                "He said \"hi\"\né \u{fffd}",
            ),
            (r#""\udc00\ud83d\ude00\\ud800""#, "\u{fffd}😀\\ud800"),
            (r#""\ud83d\ud83d\ude00""#, "\u{fffd}😀"),
        ] {
            assert_eq!(JsonStr::from_token(tok).unwrap().as_str(), want, "{tok}");
        }
    }

    #[test]
    fn chars_counts_what_the_token_decodes_to() {
        for s in [
            "",
            "abc",
            "é😀x",
            "a\"b\n\\",
            "\u{1}\u{1f}",
            "日本語 \u{7f}",
        ] {
            assert_eq!(JsonStr::new(s).chars(), s.chars().count(), "{s:?}");
        }
        for (tok, want) in [
            (r#""\ud83d\ude00!""#, "😀!"),
            (r#""\u00e9\n\t\/""#, "é\n\t/"),
            (r#""a\ud800b""#, "a\u{fffd}b"),
            // A high surrogate before another escape that is no low one: two characters.
            (r#""X\ud800\u0041Y""#, "X\u{fffd}AY"),
        ] {
            let j = JsonStr::from_token(tok).unwrap();
            assert_eq!(j.chars(), want.chars().count(), "{tok}");
        }
    }

    #[test]
    fn keeps_the_token_and_decodes_on_demand() {
        let s: JsonStr = serde_json::from_str(r#""a \"b\"\n\u00e9""#).unwrap();
        assert_eq!(s.token(), r#""a \"b\"\n\u00e9""#);
        assert_eq!(s.as_str(), "a \"b\"\né");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""a \"b\"\n\u00e9""#);
        let plain: JsonStr = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(plain.as_str(), Cow::Borrowed("plain")));
        assert_eq!(JsonStr::new("x\ny"), JsonStr::from("x\ny"));
        assert!(JsonStr::empty().is_empty());
        assert_eq!(JsonStr::new("é"), *r#"é"#);
    }

    #[test]
    fn rejects_non_strings() {
        assert!(serde_json::from_str::<JsonStr>("12").is_err());
        assert!(serde_json::from_str::<JsonStr>("{}").is_err());
    }
}
