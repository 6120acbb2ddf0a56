//! A minimal JSON writer for the encoders' hot paths.
//!
//! serde_json escapes every key and string it writes, byte by byte. Encoders here mostly
//! write constant keys and [`crate::JsonStr`] tokens that are already JSON, so writing
//! bytes directly is several times cheaper. Commas are tracked by the writer; callers
//! only open, name and close.

use serde_json::value::RawValue;

use crate::json_str::JsonStr;
use crate::raw::Extra;

/// Writes JSON into a byte buffer.
#[derive(Debug, Default)]
pub struct JsonWriter {
    out: Vec<u8>,
    /// Whether the next value or key needs a separating comma.
    comma: bool,
}

impl JsonWriter {
    /// A writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        JsonWriter {
            out: Vec::with_capacity(capacity),
            comma: false,
        }
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.out
    }

    fn sep(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
    }

    /// `{`
    pub fn begin_object(&mut self) {
        self.sep();
        self.out.push(b'{');
        self.comma = false;
    }

    /// `}`
    pub fn end_object(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }

    /// `[`
    pub fn begin_array(&mut self) {
        self.sep();
        self.out.push(b'[');
        self.comma = false;
    }

    /// `]`
    pub fn end_array(&mut self) {
        self.out.push(b']');
        self.comma = true;
    }

    /// An object key the encoder names itself: a constant that needs no escaping.
    pub fn key(&mut self, k: &'static str) {
        debug_assert!(is_clean(k), "key {k:?} needs escaping; use key_escaped");
        self.sep();
        self.out.reserve(k.len() + 3);
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.comma = false;
    }

    /// An object key from data (kept fields), escaped as needed.
    pub fn key_escaped(&mut self, k: &str) {
        self.sep();
        escape_into(k, &mut self.out);
        self.out.push(b':');
        self.comma = false;
    }

    /// A string value.
    pub fn string(&mut self, s: &str) {
        self.sep();
        escape_into(s, &mut self.out);
        self.comma = true;
    }

    /// A value that is already JSON.
    pub fn raw(&mut self, json: &str) {
        self.sep();
        self.out.extend_from_slice(json.as_bytes());
        self.comma = true;
    }

    /// Already-written `"key":value` pairs inside the current object (constant text).
    pub fn raw_fields(&mut self, fields: &str) {
        self.sep();
        self.out.extend_from_slice(fields.as_bytes());
        self.comma = true;
    }

    /// A string token.
    pub fn json_str(&mut self, s: &JsonStr) {
        self.raw(s.token());
    }

    /// A raw JSON value.
    pub fn raw_value(&mut self, v: &RawValue) {
        self.raw(v.get());
    }

    /// An unsigned integer.
    pub fn u64(&mut self, n: u64) {
        self.sep();
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.comma = true;
    }

    /// A float, formatted as serde_json does.
    pub fn f64(&mut self, n: f64) {
        self.sep();
        // Writing a number into a Vec cannot fail; a non-finite float becomes null.
        let _ = serde_json::to_writer(&mut self.out, &n);
        self.comma = true;
    }

    /// A boolean.
    pub fn bool(&mut self, b: bool) {
        self.raw(if b { "true" } else { "false" });
    }

    /// `null`.
    pub fn null(&mut self) {
        self.raw("null");
    }

    /// The fields of an [`Extra`], except those named in `skip`.
    pub fn extra(&mut self, extra: &Extra, skip: &[&str]) {
        for (k, v) in extra.iter() {
            if !skip.contains(&k) {
                self.key_escaped(k);
                self.raw_value(v);
            }
        }
    }
}

/// Writes `s` as a JSON string. Strings that need no escaping (ids, names, most keys)
/// are copied; the rest go through serde_json's escaper.
pub fn escape_into(s: &str, out: &mut Vec<u8>) {
    if is_clean(s) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Whether `s` can be written between quotes as it is. Written without an early exit so
/// the compiler can check many bytes at once.
fn is_clean(s: &str) -> bool {
    s.as_bytes().chunks(16).all(|c| {
        c.iter()
            .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json_with_commas_in_the_right_places() {
        let mut w = JsonWriter::default();
        w.begin_object();
        w.key("a");
        w.string("x\"y\n");
        w.key("b");
        w.begin_array();
        w.u64(1);
        w.f64(0.5);
        w.bool(true);
        w.null();
        w.begin_object();
        w.end_object();
        w.end_array();
        w.key("c");
        w.json_str(&JsonStr::new("t"));
        w.end_object();
        assert_eq!(
            String::from_utf8(w.into_bytes()).unwrap(),
            r#"{"a":"x\"y\n","b":[1,0.5,true,null,{}],"c":"t"}"#
        );
    }
}
