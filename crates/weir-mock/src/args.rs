//! Tool-call arguments made up from the tool's JSON schema and hints in the user's text.
//!
//! For each property in `required` (every property when none is required): a `const` or
//! the first `enum` value when the schema has one; a string from the user's text when it
//! is obvious (`city=Paris`, `city: "New York"`, a quoted string, the word after "in" or
//! "for"), else `"mock"`; `1` for numbers; `true`; `[]`; `{}`.

use std::collections::VecDeque;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

static NULL: Value = Value::Null;

/// Words after which the user probably names a value ("weather in Paris").
const LEADS: &[&str] = &["in", "for", "at", "about", "named", "called"];
/// Words skipped between a lead and its value.
const FILLERS: &[&str] = &["the", "a", "an", "my"];

/// Values found in the user's text.
pub(crate) struct Hints {
    text: String,
    /// `text` with ASCII letters lowercased: same byte offsets.
    lower: String,
    /// Values not tied to a key, used in order by string arguments with no explicit value.
    loose: VecDeque<String>,
}

impl Hints {
    /// Hints from the user's text.
    pub(crate) fn new(text: &str) -> Self {
        let mut loose: VecDeque<String> = text
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_owned)
            .collect();
        let bare: Vec<&str> = text
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .collect();
        let mut i = 0;
        while i < bare.len() {
            if LEADS.iter().any(|l| bare[i].eq_ignore_ascii_case(l)) {
                let mut j = i + 1;
                while j < bare.len() && FILLERS.iter().any(|f| bare[j].eq_ignore_ascii_case(f)) {
                    j += 1;
                }
                if let Some(word) = bare.get(j).filter(|w| !w.is_empty()) {
                    loose.push_back((*word).to_owned());
                }
                i = j;
            } else {
                i += 1;
            }
        }
        Hints {
            text: text.to_owned(),
            lower: text.to_ascii_lowercase(),
            loose,
        }
    }

    /// The value the user gave as `key=value` or `key: value` (key matched
    /// case-insensitively, value quoted or up to whitespace or punctuation).
    fn explicit(&self, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        if key.is_empty() {
            return None;
        }
        let mut from = 0;
        while let Some(found) = self.lower[from..].find(key.as_str()) {
            let start = from + found;
            from = start + key.len();
            let at_boundary = self.lower[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let Some(rest) = self.text[from..].trim_start().strip_prefix(['=', ':']) else {
                continue;
            };
            if !at_boundary {
                continue;
            }
            let rest = rest.trim_start();
            let value = match rest.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or(""),
                None => rest
                    .split(|c: char| c.is_whitespace() || ",;)".contains(c))
                    .next()
                    .unwrap_or("")
                    .trim_end_matches(['.', '?', '!']),
            };
            if !value.is_empty() {
                return Some(value);
            }
        }
        None
    }
}

/// Arguments for a tool with the JSON schema `schema`.
pub(crate) fn arguments(schema: Option<&RawValue>, hints: &mut Hints) -> Map<String, Value> {
    let schema: Value = schema
        .and_then(|s| serde_json::from_str(s.get()).ok())
        .unwrap_or(Value::Null);
    let props = schema.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let keys: Vec<&str> = if required.is_empty() {
        props
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default()
    } else {
        required
    };
    let mut out = Map::new();
    for key in keys {
        let prop = props.and_then(|p| p.get(key)).unwrap_or(&NULL);
        let value = value_for(key, prop, hints);
        out.insert(key.to_owned(), value);
    }
    out
}

/// A value for the property `key` with schema `schema`.
fn value_for(key: &str, schema: &Value, hints: &mut Hints) -> Value {
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(first) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
        .and_then(|alts| alts.iter().find(|a| schema_type(a) != "null"))
    {
        return value_for(key, first, hints);
    }
    let explicit = hints.explicit(key).map(str::to_owned);
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        let named = explicit
            .as_deref()
            .and_then(|e| choices.iter().find(|c| c.as_str() == Some(e)));
        if let Some(v) = named.or(choices.first()) {
            return v.clone();
        }
    }
    match schema_type(schema) {
        "integer" => Value::from(explicit.and_then(|e| e.parse::<i64>().ok()).unwrap_or(1)),
        "number" => explicit
            .and_then(|e| e.parse::<f64>().ok())
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::from(1), Value::Number),
        "boolean" => Value::Bool(explicit.is_none_or(|e| e != "false")),
        "array" => Value::Array(Vec::new()),
        "object" => Value::Object(Map::new()),
        "null" => Value::Null,
        _ => Value::String(
            explicit
                .or_else(|| hints.loose.pop_front())
                .unwrap_or_else(|| "mock".to_owned()),
        ),
    }
}

/// The schema's type: the first non-null one of a list, else guessed from its keywords.
fn schema_type(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(schema: Value, user: &str) -> Value {
        let raw = serde_json::value::to_raw_value(&schema).unwrap();
        Value::Object(arguments(Some(&raw), &mut Hints::new(user)))
    }

    #[test]
    fn required_properties_get_values_by_type() {
        let schema = json!({
            "type": "object",
            "properties": {
                "s": {"type": "string"}, "n": {"type": "number"}, "i": {"type": "integer"},
                "b": {"type": "boolean"}, "a": {"type": "array"}, "o": {"type": "object"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "opt": {"type": ["string", "null"]},
                "skipped": {"type": "string"}
            },
            "required": ["s", "n", "i", "b", "a", "o", "unit", "opt"]
        });
        assert_eq!(
            args(schema, "nothing here"),
            json!({"s": "mock", "n": 1, "i": 1, "b": true, "a": [], "o": {},
                   "unit": "celsius", "opt": "mock"})
        );
    }

    #[test]
    fn all_properties_when_none_required() {
        let schema = json!({"properties": {"x": {"type": "integer"}, "y": {}}});
        assert_eq!(args(schema, ""), json!({"x": 1, "y": "mock"}));
        assert_eq!(args(json!({"type": "object"}), ""), json!({}));
    }

    #[test]
    fn strings_come_from_the_user_text_when_obvious() {
        let schema = json!({"properties": {"city": {"type": "string"}}, "required": ["city"]});
        assert_eq!(
            args(schema.clone(), "What is the weather in Paris?"),
            json!({"city": "Paris"})
        );
        assert_eq!(
            args(schema.clone(), "get_weather city=Lyon, please"),
            json!({"city": "Lyon"})
        );
        assert_eq!(
            args(schema.clone(), r#"weather for city: "New York""#),
            json!({"city": "New York"})
        );
        assert_eq!(
            args(schema, r#"look up "Tokyo" in the weather"#),
            json!({"city": "Tokyo"})
        );
        let n = json!({"properties": {"days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}}});
        assert_eq!(args(n, "days=3 unit=f"), json!({"days": 3, "unit": "f"}));
    }

    #[test]
    fn explicit_keys_need_a_word_boundary() {
        let h = Hints::new("get_city=Rome city = Oslo");
        assert_eq!(h.explicit("city"), Some("Oslo"));
        assert_eq!(h.explicit("CITY"), Some("Oslo"));
        assert_eq!(h.explicit("town"), None);
    }
}
