//! Streamed tool-call arguments, checked as they come: OpenAI-compatible servers (small
//! local models especially) stream arguments that are not JSON, or not an object. An
//! Anthropic client parses a tool call's input when its block ends and fails the whole
//! stream on input it cannot parse, so only the longest prefix that is (the beginning of)
//! a JSON object is passed on; a cut-short object is what Anthropic itself streams when
//! `max_tokens` ends a call, and its SDKs read it.

/// Where the checker is in the arguments' text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Before the top-level object.
    Start,
    /// A value is expected (after `:`, or `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or the container's end.
    CommaOrEnd,
    /// In a string (a key when `key`).
    Str { key: bool },
    /// After a backslash in a string.
    Esc { key: bool },
    /// In a `\u` escape, with this many hex digits to go.
    Unicode { key: bool, left: u8 },
    /// In a number.
    Num,
    /// In `true`, `false` or `null`, this many bytes in.
    Lit { word: &'static [u8], at: u8 },
    /// After the top-level object: only whitespace may follow.
    Done,
}

/// An incremental check that a text is a JSON object, or the beginning of one.
#[derive(Clone, Debug)]
pub(crate) struct ArgsCheck {
    /// Open containers: `true` for an object.
    stack: Vec<bool>,
    st: St,
    /// A byte that cannot continue a JSON object came: nothing more is accepted.
    bad: bool,
}

impl Default for ArgsCheck {
    fn default() -> Self {
        ArgsCheck {
            stack: Vec::new(),
            st: St::Start,
            bad: false,
        }
    }
}

impl ArgsCheck {
    /// Reads `text`, which follows what was read before; returns how many of its bytes
    /// continue a JSON object (all of them, or up to the first that cannot; 0 once one
    /// could not). The count always ends on a character boundary.
    pub(crate) fn feed(&mut self, text: &str) -> usize {
        if self.bad {
            return 0;
        }
        for (i, b) in text.bytes().enumerate() {
            if !self.step(b) {
                self.bad = true;
                return i;
            }
        }
        text.len()
    }

    /// Whether no byte of the object has come yet (only whitespace, or nothing).
    pub(crate) fn before_object(&self) -> bool {
        !self.bad && self.st == St::Start
    }

    /// Whether the text read so far is a whole JSON object.
    pub(crate) fn whole(&self) -> bool {
        !self.bad && self.st == St::Done
    }

    /// After a value ended: what the enclosing container expects next.
    fn value_ended(&mut self) {
        self.st = if self.stack.is_empty() {
            St::Done
        } else {
            St::CommaOrEnd
        };
    }

    fn step(&mut self, b: u8) -> bool {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.st {
            St::Str { key } => match b {
                b'"' if key => self.st = St::Colon,
                b'"' => self.value_ended(),
                b'\\' => self.st = St::Esc { key },
                0..=0x1f => return false,
                _ => {}
            },
            St::Esc { key } => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.st = St::Str { key },
                b'u' => self.st = St::Unicode { key, left: 4 },
                _ => return false,
            },
            St::Unicode { key, left } => {
                if !b.is_ascii_hexdigit() {
                    return false;
                }
                self.st = if left == 1 {
                    St::Str { key }
                } else {
                    St::Unicode {
                        key,
                        left: left - 1,
                    }
                };
            }
            St::Lit { word, at } => {
                let at = usize::from(at);
                if word.get(at) != Some(&b) {
                    return false;
                }
                if at + 1 == word.len() {
                    self.value_ended();
                } else {
                    self.st = St::Lit {
                        word,
                        at: (at + 1) as u8,
                    };
                }
            }
            St::Num => {
                if b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-') {
                    return true;
                }
                // The number ended: this byte is read as what follows it.
                self.value_ended();
                return self.step(b);
            }
            _ if ws => {}
            St::Start => {
                if b != b'{' {
                    return false;
                }
                self.stack.push(true);
                self.st = St::KeyOrEnd;
            }
            St::Value | St::ValueOrEnd => return self.value(b),
            St::KeyOrEnd | St::Key => match b {
                b'"' => self.st = St::Str { key: true },
                b'}' if self.st == St::KeyOrEnd => return self.close(true),
                _ => return false,
            },
            St::Colon => {
                if b != b':' {
                    return false;
                }
                self.st = St::Value;
            }
            St::CommaOrEnd => match (b, self.stack.last()) {
                (b',', Some(true)) => self.st = St::Key,
                (b',', Some(false)) => self.st = St::Value,
                (b'}', _) => return self.close(true),
                (b']', _) => return self.close(false),
                _ => return false,
            },
            St::Done => return false,
        }
        true
    }

    /// A value starts with `b`.
    fn value(&mut self, b: u8) -> bool {
        match b {
            b'{' => {
                self.stack.push(true);
                self.st = St::KeyOrEnd;
            }
            b'[' => {
                self.stack.push(false);
                self.st = St::ValueOrEnd;
            }
            b']' if self.st == St::ValueOrEnd => return self.close(false),
            b'"' => self.st = St::Str { key: false },
            b'-' | b'0'..=b'9' => self.st = St::Num,
            b't' => {
                self.st = St::Lit {
                    word: b"true",
                    at: 1,
                }
            }
            b'f' => {
                self.st = St::Lit {
                    word: b"false",
                    at: 1,
                }
            }
            b'n' => {
                self.st = St::Lit {
                    word: b"null",
                    at: 1,
                }
            }
            _ => return false,
        }
        true
    }

    /// `}` (object) or `]` closes the innermost container, which must be of that kind.
    fn close(&mut self, object: bool) -> bool {
        if self.stack.pop() != Some(object) {
            return false;
        }
        self.value_ended();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How much of `text`, fed in pieces of `n` bytes, is accepted, and whether it is whole.
    fn check(text: &str, n: usize) -> (usize, bool) {
        let mut c = ArgsCheck::default();
        let mut accepted = 0;
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + n).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            let piece = &text[at..end];
            let ok = c.feed(piece);
            accepted += ok;
            if ok < piece.len() {
                break;
            }
            at = end;
        }
        (accepted, c.whole())
    }

    #[test]
    fn objects_are_whole_however_they_are_cut() {
        for text in [
            r#"{}"#,
            r#" { "a" : 1 } "#,
            r#"{"city":"Paris","n":-1.5e3,"ok":true,"no":false,"x":null}"#,
            r#"{"a":[1,[2,{"b":[]}],"\"}\\ \u00e9 é"],"c":{}}"#,
        ] {
            for n in [1, 2, 3, 7, 100] {
                assert_eq!(check(text, n), (text.len(), true), "{text} by {n}");
            }
        }
    }

    #[test]
    fn the_longest_valid_prefix_is_kept() {
        for (text, valid) in [
            (r#"{"city": Paris}"#, r#"{"city": "#),
            (r#"{"a":1}}"#, r#"{"a":1}"#),
            (r#"{"a":1} {"b":2}"#, r#"{"a":1} "#),
            (r#"{"a" 1}"#, r#"{"a" "#),
            (r#"{"a":tru}"#, r#"{"a":tru"#),
            (r#"{"a":"\x"}"#, r#"{"a":"\"#),
            (r#"{"a":[1,2}"#, r#"{"a":[1,2"#),
            (r#"{,}"#, r#"{"#),
            (r#"{"a":[1,]}"#, r#"{"a":[1,"#),
            (r#"{"a":[]"#, r#"{"a":[]"#),
            ("{\"a\":\"line\nbreak\"}", "{\"a\":\"line"),
            ("[1,2]", ""),
            ("null", ""),
            ("\"str\"", ""),
            ("42", ""),
        ] {
            for n in [1, 4, 100] {
                let (accepted, whole) = check(text, n);
                assert_eq!(&text[..accepted], valid, "{text} by {n}");
                assert!(!whole, "{text}");
            }
        }
        let cut = r#"{"a": {"b": "cut sho"#;
        let (accepted, whole) = check(cut, 5);
        assert_eq!(accepted, cut.len());
        assert!(!whole, "cut short is valid but not whole");
    }
}
