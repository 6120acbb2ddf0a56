//! JSON Schemas from other dialects' clients for Claude's constrained decoding (structured
//! outputs, `output_config.format`, and `strict` tools), which takes a subset of JSON
//! Schema: numeric, string-length and most array and object-size constraints are refused
//! with a 400, and every object must say `additionalProperties: false`. An OpenAI client's
//! schema (strict mode takes those constraints) is fitted as Anthropic's SDKs fit their
//! users' schemas: each constraint Claude cannot enforce moves into the schema's
//! `description`, where the model still reads it, and objects that say nothing of
//! additional properties get `false`. Property order is kept (it is the order Claude
//! writes them in).

use serde_json::value::RawValue;
use serde_json::Value;

/// Keywords Claude's constrained decoding refuses, moved into the description.
const MOVED: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
];

/// Nesting past which a schema is left as it is (the upstream judges it).
const MAX_DEPTH: u32 = 64;

/// The schema fitted for Claude, or `None` when it needs no change (or is not JSON).
pub(crate) fn for_claude(raw: &RawValue) -> Option<Box<RawValue>> {
    let mut v: Value = serde_json::from_str(raw.get()).ok()?;
    let mut changed = false;
    fit(&mut v, &mut changed, 0);
    if !changed {
        return None;
    }
    RawValue::from_string(v.to_string()).ok()
}

fn fit(v: &mut Value, changed: &mut bool, depth: u32) {
    if depth > MAX_DEPTH {
        return;
    }
    let m = match v {
        Value::Object(m) => m,
        Value::Array(a) => {
            for x in a {
                fit(x, changed, depth + 1);
            }
            return;
        }
        _ => return,
    };
    let mut notes = Vec::new();
    for k in MOVED {
        if let Some(x) = m.shift_remove(*k) {
            notes.push(format!("{k}: {x}"));
        }
    }
    // Only 0 and 1 are taken.
    if let Some(n) = m.get("minItems").and_then(Value::as_u64).filter(|n| *n > 1) {
        m.shift_remove("minItems");
        notes.push(format!("minItems: {n}"));
    }
    if !notes.is_empty() {
        *changed = true;
        let said = notes.join(", ");
        let described = match m.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => format!("{d} ({said})"),
            _ => format!("({said})"),
        };
        m.insert("description".into(), Value::String(described));
    }
    let object =
        m.get("type").and_then(Value::as_str) == Some("object") || m.contains_key("properties");
    if object && !m.contains_key("additionalProperties") {
        m.insert("additionalProperties".into(), Value::Bool(false));
        *changed = true;
    }
    for key in ["properties", "$defs", "definitions"] {
        if let Some(Value::Object(p)) = m.get_mut(key) {
            for (_, s) in p.iter_mut() {
                fit(s, changed, depth + 1);
            }
        }
    }
    for key in [
        "items",
        "prefixItems",
        "anyOf",
        "allOf",
        "oneOf",
        "not",
        "additionalProperties",
    ] {
        if let Some(x) = m.get_mut(key) {
            fit(x, changed, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fitted(s: serde_json::Value) -> Option<String> {
        let raw = RawValue::from_string(s.to_string()).unwrap();
        for_claude(&raw).map(|r| r.get().to_owned())
    }

    #[test]
    fn constraints_move_into_descriptions_and_objects_close() {
        let out = fitted(serde_json::json!({
            "type": "object",
            "properties": {
                "reasoning": {"type": "string", "maxLength": 200},
                "stars": {"type": "integer", "minimum": 1, "maximum": 5, "description": "Rating."},
                "tags": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}}},
                         "minItems": 2},
                "one": {"type": "array", "items": {"type": "string"}, "minItems": 1}
            },
            "required": ["reasoning", "stars", "tags", "one"]
        }))
        .unwrap();
        // Property order kept; each constraint said in the description.
        assert_eq!(
            out,
            r#"{"type":"object","properties":{"reasoning":{"type":"string","description":"(maxLength: 200)"},"stars":{"type":"integer","description":"Rating. (minimum: 1, maximum: 5)"},"tags":{"type":"array","items":{"type":"object","properties":{"t":{"type":"string"}},"additionalProperties":false},"description":"(minItems: 2)"},"one":{"type":"array","items":{"type":"string"},"minItems":1}},"required":["reasoning","stars","tags","one"],"additionalProperties":false}"#
        );
        // A schema Claude takes as it is: no change.
        assert_eq!(
            fitted(
                serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}},
                                       "additionalProperties": false})
            ),
            None
        );
    }
}
