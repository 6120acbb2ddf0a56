//! Tool parameter schemas cut down to the OpenAPI 3.0 subset Gemini's `parameters` field
//! accepts.
//!
//! Gemini answers 400 ("Invalid JSON payload received. Unknown name ...") for JSON Schema
//! keywords outside its `Schema` object (`$schema`, `additionalProperties`, `$ref`,
//! `$defs`, `const`, `oneOf`, `exclusiveMinimum`, ...) and for `format`s other than the
//! few it knows. So the schema is rebuilt from an allow-list: known keywords are kept,
//! local `$ref`s are inlined, `const` becomes a one-value `enum`, `oneOf` becomes `anyOf`,
//! a `null` type (in a type array or an `anyOf` branch) becomes `nullable: true`, and
//! everything else is dropped. Property names are data, never filtered.

use serde_json::{Map, Value};

/// How many `$ref`s may be inlined inside one another; a recursive schema is cut there
/// (the innermost reference becomes an unconstrained object).
const MAX_REF_DEPTH: u32 = 8;

/// Most schema nodes the cleaned schema may have once `$ref`s are inlined: a schema whose
/// properties each refer back to the root would otherwise grow as properties to the
/// power of the depth (a few hundred bytes becoming gigabytes).
const MAX_NODES: usize = 20_000;

/// Most bytes (estimated) the cleaned schemas of one request may hold: inlining copies a
/// referenced schema's keywords (a long `description`, say) at every reference, and a
/// request has many tools.
const MAX_BYTES: usize = 4 << 20;

/// What the cleaned schemas of one request may still hold, shared by its tools and its
/// response schema.
pub(crate) struct Budget(std::cell::Cell<usize>);

impl Budget {
    pub(crate) fn new() -> Self {
        Budget(std::cell::Cell::new(MAX_BYTES))
    }
}

/// A value's size as JSON, about.
fn weight(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(weight).sum::<usize>(),
        Value::Object(m) => {
            2 + m
                .iter()
                .map(|(k, v)| k.len() + 4 + weight(v))
                .sum::<usize>()
        }
        _ => 8,
    }
}

/// Keywords copied as they are.
const KEEP: &[&str] = &[
    "description",
    "title",
    "nullable",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "required",
    "propertyOrdering",
    "example",
    "default",
];

/// Whether a cleaned `parameters` schema declares no parameters at all (an object with no
/// properties): Gemini refuses `{"type": "object", "properties": {}}`, so such a function
/// goes without `parameters` (Claude Code declares one).
pub(crate) fn takes_nothing(cleaned: &Value) -> bool {
    cleaned.get("type").and_then(Value::as_str) == Some("object")
        && cleaned.get("properties").is_none()
        && cleaned
            .get("required")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
}

/// Cleans a JSON Schema for Gemini's `parameters`.
pub(crate) fn clean(schema: &str, budget: &Budget) -> Result<Value, String> {
    let root: Value =
        serde_json::from_str(schema).map_err(|e| format!("the schema is not JSON ({e})"))?;
    if !root.is_object() {
        return Err("the schema is not a JSON object".into());
    }
    let cx = Defs {
        root: &root,
        nodes: std::cell::Cell::new(0),
        budget,
        over: std::cell::Cell::new(false),
    };
    let out = node(&root, &cx, 0);
    if cx.nodes.get() > MAX_NODES {
        return Err(format!(
            "the schema grows past {MAX_NODES} nodes once its $refs are inlined (Gemini takes no $ref)"
        ));
    }
    if cx.over.get() {
        return Err(format!(
            "the request's schemas grow past {} MiB once their $refs are inlined (Gemini takes no $ref)",
            MAX_BYTES >> 20
        ));
    }
    Ok(out)
}

struct Defs<'a> {
    root: &'a Value,
    /// Nodes built so far (past [`MAX_NODES`], building stops).
    nodes: std::cell::Cell<usize>,
    budget: &'a Budget,
    /// The budget ran out (building stops).
    over: std::cell::Cell<bool>,
}

impl Defs<'_> {
    /// Takes `n` bytes from the budget; `false` (and building stops) when it runs out.
    fn charge(&self, n: usize) -> bool {
        let left = self.budget.0.get();
        if n > left || self.over.get() {
            self.over.set(true);
            self.budget.0.set(0);
            return false;
        }
        self.budget.0.set(left - n);
        true
    }

    /// `v`, copied, if the budget has room for it.
    fn copy(&self, v: &Value) -> Value {
        if self.charge(weight(v)) {
            v.clone()
        } else {
            Value::Null
        }
    }
}

impl Defs<'_> {
    /// A local reference (`#/$defs/X`, `#/definitions/X`, any `#/...` JSON pointer).
    fn resolve(&self, r: &str) -> Option<&Value> {
        let pointer = r.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(self.root);
        }
        self.root.pointer(pointer)
    }
}

/// The JSON Schema type every one of `values` has (`integer` over `number`), if one does.
fn implied_type(values: &[Value]) -> Option<&'static str> {
    if values.iter().all(|v| v.is_i64() || v.is_u64()) {
        Some("integer")
    } else if values.iter().all(Value::is_number) {
        Some("number")
    } else if values.iter().all(Value::is_boolean) {
        Some("boolean")
    } else {
        None
    }
}

fn node(v: &Value, cx: &Defs<'_>, refs: u32) -> Value {
    cx.nodes.set(cx.nodes.get() + 1);
    if cx.nodes.get() > MAX_NODES || !cx.charge(16) {
        return Value::Object(Map::new());
    }
    let m = match v {
        Value::Object(m) => m,
        // `true` and other degenerate schemas: anything goes.
        _ => return Value::Object(Map::new()),
    };
    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
        let mut out = match cx.resolve(r) {
            Some(target) if refs < MAX_REF_DEPTH => match node(target, cx, refs + 1) {
                Value::Object(o) => o,
                _ => Map::new(),
            },
            _ => {
                let mut o = Map::new();
                o.insert("type".into(), Value::String("object".into()));
                o
            }
        };
        // Siblings of `$ref` (a description, typically) refine the target.
        for k in ["description", "title", "nullable", "default"] {
            if let Some(val) = m.get(k) {
                out.insert(k.into(), cx.copy(val));
            }
        }
        return Value::Object(out);
    }
    let mut out = Map::new();
    let mut nullable = false;
    let mut one_of: Option<String> = None;
    // The type a non-string `enum` or `const` implies, for a schema that names none.
    let mut implied: Option<&'static str> = None;
    for (k, val) in m {
        match k.as_str() {
            "type" => match val {
                Value::String(_) => {
                    out.insert("type".into(), val.clone());
                }
                Value::Array(types) => {
                    let mut concrete = types.iter().filter(|t| t.as_str() != Some("null"));
                    nullable |= types.iter().any(|t| t.as_str() == Some("null"));
                    if let Some(t) = concrete.next() {
                        out.insert("type".into(), t.clone());
                    }
                }
                _ => {}
            },
            "format" => {
                if let Some(f) = val.as_str() {
                    if matches!(
                        f,
                        "enum" | "date-time" | "int32" | "int64" | "float" | "double"
                    ) {
                        out.insert("format".into(), val.clone());
                    }
                }
            }
            // Gemini enums are string enums; others would be a 400: their values are
            // said in the description instead, so the model still sees them.
            "enum"
                if val
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string)) =>
            {
                out.insert("enum".into(), cx.copy(val));
            }
            "const" if val.is_string() => {
                out.insert("enum".into(), Value::Array(vec![cx.copy(val)]));
            }
            "enum" | "const" => {
                let values = match val {
                    Value::Array(a) if k == "enum" => a.as_slice(),
                    one if k == "const" => std::slice::from_ref(one),
                    _ => &[],
                };
                if !values.is_empty() {
                    let listed: Vec<String> = values.iter().map(Value::to_string).collect();
                    let _ = cx.charge(listed.iter().map(String::len).sum());
                    one_of = Some(format!("One of: {}.", listed.join(", ")));
                    implied = implied_type(values);
                }
            }
            "properties" => {
                if let Value::Object(props) = val {
                    let cleaned: Map<String, Value> = props
                        .iter()
                        .map(|(name, s)| (name.clone(), node(s, cx, refs)))
                        .collect();
                    // Gemini answers 400 to an empty map ("should be non-empty for OBJECT
                    // type"); without it, the object is any object.
                    if !cleaned.is_empty() {
                        out.insert("properties".into(), Value::Object(cleaned));
                    }
                }
            }
            "items" => {
                let item = match val {
                    // Tuple form: Gemini has one item schema.
                    Value::Array(a) => a.first().map(|s| node(s, cx, refs)),
                    other => Some(node(other, cx, refs)),
                };
                if let Some(i) = item {
                    out.insert("items".into(), i);
                }
            }
            "anyOf" | "oneOf" => {
                if let Value::Array(branches) = val {
                    let mut kept = Vec::new();
                    for b in branches {
                        if b.get("type").and_then(Value::as_str) == Some("null") {
                            nullable = true;
                        } else {
                            kept.push(node(b, cx, refs));
                        }
                    }
                    match kept.len() {
                        0 => {}
                        1 => {
                            if let Some(Value::Object(only)) = kept.pop() {
                                for (bk, bv) in only {
                                    out.entry(bk).or_insert(bv);
                                }
                            }
                        }
                        _ => {
                            out.insert("anyOf".into(), Value::Array(kept));
                        }
                    }
                }
            }
            "allOf" => {
                // Gemini has no allOf: the branches' keywords are merged (first wins).
                if let Value::Array(branches) = val {
                    for b in branches {
                        if let Value::Object(o) = node(b, cx, refs) {
                            for (bk, bv) in o {
                                out.entry(bk).or_insert(bv);
                            }
                        }
                    }
                }
            }
            _ if KEEP.contains(&k.as_str()) => {
                out.insert(k.clone(), cx.copy(val));
            }
            _ => {}
        }
    }
    if nullable {
        out.insert("nullable".into(), Value::Bool(true));
    }
    if let Some(values) = one_of {
        let described = match out.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => format!("{d} {values}"),
            _ => values,
        };
        out.insert("description".into(), Value::String(described));
    }
    // Gemini allows `enum` only on strings and `properties` only on objects ("only allowed
    // for STRING type"): an untyped schema gets the type they imply.
    if !out.contains_key("type") && !out.contains_key("anyOf") {
        if out.contains_key("enum") {
            out.insert("type".into(), Value::String("string".into()));
        } else if out.contains_key("properties") {
            out.insert("type".into(), Value::String("object".into()));
        } else if let Some(t) = implied {
            // Values said in the description keep their type.
            out.insert("type".into(), Value::String(t.into()));
        }
    }
    // Gemini writes an answer's properties in alphabetical order unless told otherwise
    // (`propertyOrdering`): the schema's own order (a reasoning field before the answer's,
    // say) is told, unless the schema says one itself.
    if !out.contains_key("propertyOrdering") {
        if let Some(Value::Object(props)) = out
            .get("properties")
            .filter(|p| p.as_object().is_some_and(|p| p.len() > 1))
        {
            let order: Vec<Value> = props.keys().map(|k| Value::String(k.clone())).collect();
            out.insert("propertyOrdering".into(), Value::Array(order));
        }
    }
    // `required` may name only properties the schema defines.
    if let Some(Value::Array(required)) = out.get("required") {
        let defined = |n: &Value| {
            n.as_str().is_some_and(|n| {
                out.get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| p.contains_key(n))
            })
        };
        let kept: Vec<Value> = required.iter().filter(|n| defined(n)).cloned().collect();
        if kept.is_empty() {
            out.remove("required");
        } else if kept.len() != required.len() {
            out.insert("required".into(), Value::Array(kept));
        }
    }
    // Gemini answers 400 to an array without an item schema ("items: missing field"),
    // and to one whose items say nothing of their type: such items get the type their
    // keywords imply, else string (JSON Schema's "anything" has no Gemini form).
    if out.get("type").and_then(Value::as_str) == Some("array") {
        match out.get_mut("items") {
            Some(Value::Object(items)) => {
                if !items.contains_key("type") && !items.contains_key("anyOf") {
                    let implied =
                        if items.contains_key("properties") || items.contains_key("required") {
                            "object"
                        } else if items.contains_key("items") {
                            "array"
                        } else {
                            "string"
                        };
                    items.insert("type".into(), Value::String(implied.into()));
                }
            }
            Some(_) => {}
            None => {
                out.insert("items".into(), serde_json::json!({"type": "string"}));
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_what_gemini_rejects_and_keeps_property_names() {
        let s = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "additionalProperties": {"type": "string", "format": "uri"},
                "when": {"type": "string", "format": "date-time"},
                "unit": {"const": "celsius"},
                "n": {"type": ["integer", "null"], "exclusiveMinimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}
            },
            "required": ["when"]
        });
        assert_eq!(
            clean(&s.to_string(), &Budget::new()).unwrap(),
            json!({
                "type": "object",
                "properties": {
                    "additionalProperties": {"type": "string"},
                    "when": {"type": "string", "format": "date-time"},
                    "unit": {"type": "string", "enum": ["celsius"]},
                    "n": {"type": "integer", "nullable": true},
                    "tags": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["when"],
                // The schema's own order, which Gemini would otherwise make alphabetical.
                "propertyOrdering": ["additionalProperties", "when", "unit", "n", "tags"]
            })
        );
        // A schema's own ordering is kept.
        let own = json!({"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "string"}},
                         "propertyOrdering": ["a", "b"]});
        assert_eq!(
            clean(&own.to_string(), &Budget::new()).unwrap()["propertyOrdering"],
            json!(["a", "b"])
        );
    }

    #[test]
    fn enums_and_properties_get_the_type_gemini_requires_for_them() {
        let out = clean(
            r#"{"type":"object","properties":{
                "op": {"const": "insert_text"},
                "mode": {"enum": ["a", "b"]},
                "level": {"type": "integer", "enum": [1, 2, 3], "description": "How loud."},
                "rank": {"enum": [1, 2, 3]},
                "ratio": {"enum": [0.5, 1]},
                "flag": {"const": true},
                "mixed": {"enum": [1, "a"]},
                "opts": {"properties": {"x": {"type": "string"}}, "required": ["x", "y"]},
                "any": {"type": "object", "required": ["q"]}
            },"required":["op","missing"]}"#,
            &Budget::new(),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"type": "object", "properties": {
                "op": {"type": "string", "enum": ["insert_text"]},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "level": {"type": "integer", "description": "How loud. One of: 1, 2, 3."},
                "rank": {"type": "integer", "description": "One of: 1, 2, 3."},
                "ratio": {"type": "number", "description": "One of: 0.5, 1."},
                "flag": {"type": "boolean", "description": "One of: true."},
                "mixed": {"description": "One of: 1, \"a\"."},
                "opts": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
                "any": {"type": "object"}
            }, "required": ["op"],
            "propertyOrdering": ["op", "mode", "level", "rank", "ratio", "flag", "mixed", "opts", "any"]})
        );
    }

    #[test]
    fn arrays_always_get_a_typed_item_schema() {
        let s = json!({"type": "object", "properties": {
            "bare": {"type": "array"},
            "any": {"type": "array", "items": {}},
            "described": {"type": "array", "items": {"description": "a tag"}},
            "ints": {"type": "array", "items": {"type": "integer"}},
            "objects": {"type": "array", "items": {"properties": {"q": {"type": "string"}}}},
            "choices": {"type": "array", "items": {"enum": ["a", "b"]}}
        }});
        assert_eq!(
            clean(&s.to_string(), &Budget::new()).unwrap()["properties"],
            json!({
                "bare": {"type": "array", "items": {"type": "string"}},
                "any": {"type": "array", "items": {"type": "string"}},
                "described": {"type": "array", "items": {"description": "a tag", "type": "string"}},
                "ints": {"type": "array", "items": {"type": "integer"}},
                "objects": {"type": "array", "items": {"type": "object", "properties": {"q": {"type": "string"}}}},
                "choices": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}
            })
        );
    }

    #[test]
    fn inlines_refs_and_folds_nullable_any_of() {
        let s = json!({
            "type": "object",
            "$defs": {
                "Pet": {"type": "object", "properties": {"name": {"type": "string"}}},
                "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}
            },
            "properties": {
                "pet": {"anyOf": [{"$ref": "#/$defs/Pet"}, {"type": "null"}], "description": "d"},
                "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "list": {"$ref": "#/$defs/Node"}
            }
        });
        let out = clean(&s.to_string(), &Budget::new()).unwrap();
        assert_eq!(
            out["properties"]["pet"],
            json!({"type": "object", "properties": {"name": {"type": "string"}}, "description": "d", "nullable": true})
        );
        assert_eq!(
            out["properties"]["either"],
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
        // A recursive schema is cut after a few levels instead of looping.
        let mut depth = 0;
        let mut cur = &out["properties"]["list"];
        while let Some(next) = cur.get("properties").and_then(|p| p.get("next")) {
            cur = next;
            depth += 1;
        }
        assert_eq!(depth, MAX_REF_DEPTH as usize);
        assert!(out.get("$defs").is_none());
    }

    #[test]
    fn a_schema_whose_refs_fan_out_is_refused_not_expanded() {
        // Six properties each back to the root: 6^9 nodes if inlined to the depth limit.
        let props: serde_json::Map<String, Value> = (0..6)
            .map(|i| (format!("p{i}"), json!({"$ref": "#"})))
            .collect();
        let s = json!({"type": "object", "properties": props});
        let e = clean(&s.to_string(), &Budget::new()).unwrap_err();
        assert!(e.contains("once its $refs are inlined"), "{e}");
        // Few references, but a long description copied at each: the bytes are bounded,
        // across every schema of a request (one budget).
        let s = json!({
            "$defs": {"X": {"type": "string", "description": "A".repeat(100_000)}},
            "type": "object",
            "properties": (0..100).map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/X"}))).collect::<serde_json::Map<String, Value>>()
        });
        let e = clean(&s.to_string(), &Budget::new()).unwrap_err();
        assert!(e.contains("MiB once their $refs are inlined"), "{e}");
        let one = json!({"type": "object", "properties": {"d": {"type": "string", "description": "A".repeat(1_000_000)}}});
        let budget = Budget::new();
        for _ in 0..4 {
            assert!(clean(&one.to_string(), &budget).is_ok());
        }
        assert!(clean(&one.to_string(), &budget).is_err());
        // A small fan-out still inlines.
        let s =
            json!({"type": "object", "properties": {"a": {"$ref": "#"}, "b": {"type": "string"}}});
        assert!(clean(&s.to_string(), &Budget::new()).is_ok());
    }

    #[test]
    fn non_objects_are_errors() {
        assert!(clean("[1]", &Budget::new()).is_err());
        assert!(clean("{", &Budget::new()).is_err());
    }
}
