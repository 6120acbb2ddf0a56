//! Tool call ids valid for Anthropic.

use std::borrow::Cow;

/// Anthropic (and Bedrock) accept tool ids matching `^[a-zA-Z0-9_-]{1,64}$`. A valid id is
/// returned unchanged; any other is rewritten deterministically, so a `tool_use.id` and
/// the `tool_use_id` that answers it still match after rewriting. The rewrite keeps the
/// valid characters, replaces the rest with `_`, and appends a hash of the original so two
/// ids differing only in invalid characters stay distinct.
///
/// An OpenAI client's id carrying Gemini's signature (see
/// [`weir_model::content::signed_call_id`]) goes as the call's own.
pub fn sanitize_tool_id(id: &str) -> Cow<'_, str> {
    let id = weir_model::content::own_call_id(id);
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.len() <= 64 && id.chars().all(valid) {
        return Cow::Borrowed(id);
    }
    Cow::Owned(weir_model::wire::rewritten_id(id, 64, valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_are_untouched() {
        for id in ["toolu_01A09q90qw90lq917835lq9", "call_abc-DEF_123"] {
            assert!(matches!(sanitize_tool_id(id), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn invalid_ids_are_rewritten_deterministically_and_distinctly() {
        let a = sanitize_tool_id("functions.get_weather:0");
        let b = sanitize_tool_id("functions.get_weather:1");
        assert_ne!(a, b);
        assert_eq!(a, sanitize_tool_id("functions.get_weather:0"));
        assert!(a.starts_with("functions_get_weather_0_"));
        let long = "x".repeat(100);
        let l = sanitize_tool_id(&long);
        assert!(l.len() <= 64);
        assert!(sanitize_tool_id("").len() > 1);
        for s in [a, b, l] {
            assert!(s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        }
    }
}
