//! Gemini state that has no canonical field of its own, and how it travels through clients
//! anyway: thought signatures ride on thinking blocks, tool-call ids are synthesized.

use std::hash::BuildHasher;

/// The prefix of a canonical thinking signature that is the `thoughtSignature` of a Gemini
/// thought part (`thought: true`) holding the block's text.
pub const THOUGHT_SIGNATURE_PREFIX: &str = weir_model::content::CARRIED_SIGNATURE_PREFIXES[0];

/// The prefix of a canonical thinking signature that is the `thoughtSignature` of the Gemini
/// part written right after the (empty) thinking block: a `functionCall` or a text part,
/// which have no canonical place for a signature.
pub const NEXT_PART_SIGNATURE_PREFIX: &str = weir_model::content::CARRIED_SIGNATURE_PREFIXES[1];

/// The placeholder signature Google documents for function calls Gemini did not produce
/// (history from another model or an OpenAI client that lost the signature): Gemini 3
/// answers 400 "Function call is missing a thought_signature" without one.
pub const SKIP_SIGNATURE_VALIDATOR: &str = "skip_thought_signature_validator";

/// What a canonical thinking signature is to Gemini.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signature<'a> {
    /// The signature of the thought part itself.
    Thought(&'a str),
    /// The signature of the next part.
    NextPart(&'a str),
    /// No signature, or another provider's (Anthropic's signatures are not base64 Gemini
    /// can read: sending one is a 400).
    Foreign,
}

pub(crate) fn classify(sig: Option<&str>) -> Signature<'_> {
    match sig {
        Some(s) => {
            if let Some(rest) = s.strip_prefix(THOUGHT_SIGNATURE_PREFIX) {
                Signature::Thought(rest)
            } else if let Some(rest) = s.strip_prefix(NEXT_PART_SIGNATURE_PREFIX) {
                Signature::NextPart(rest)
            } else {
                Signature::Foreign
            }
        }
        None => Signature::Foreign,
    }
}

pub(crate) fn thought_signature(sig: &str) -> String {
    format!("{THOUGHT_SIGNATURE_PREFIX}{sig}")
}

pub(crate) fn next_part_signature(sig: &str) -> String {
    format!("{NEXT_PART_SIGNATURE_PREFIX}{sig}")
}

/// Whether an id is valid for Anthropic (and Bedrock): `^[a-zA-Z0-9_-]{1,64}$`. OpenAI
/// accepts any string.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The canonical id of the `n`th function call (from 0) of a response.
///
/// Gemini's own `functionCall.id` is kept when it is a valid Anthropic id. Otherwise the id
/// is `toolu_gemini_<responseId>_<n>`: the response id (its `[A-Za-z0-9_-]` characters,
/// at most 40) makes ids unique across the turns of a conversation, which clients and
/// Anthropic require, and `n` within the response. A response without an id gets a random
/// 16-hex-digit stand-in, so the scheme never repeats an id either way.
pub(crate) fn tool_use_id(upstream: Option<&str>, response_id: &str, n: u32) -> String {
    if let Some(id) = upstream.filter(|id| valid_id(id)) {
        return id.to_owned();
    }
    let rid: String = response_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(40)
        .collect();
    if rid.is_empty() {
        // A fresh RandomState is seeded differently each time: a random number without a
        // dependency.
        let r = std::collections::hash_map::RandomState::new().hash_one(n);
        format!("toolu_gemini_{r:016x}_{n}")
    } else {
        format!("toolu_gemini_{rid}_{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_for_anthropic_and_unique_per_response() {
        let a = tool_use_id(None, "QUVVadTSNJ6_qtsPvN7J8Q0", 0);
        assert_eq!(a, "toolu_gemini_QUVVadTSNJ6_qtsPvN7J8Q0_0");
        assert!(valid_id(&a));
        assert_eq!(tool_use_id(Some("call-1"), "r", 0), "call-1");
        assert_eq!(tool_use_id(Some("bad id"), "r", 2), "toolu_gemini_r_2");
        let long = tool_use_id(None, &"x/".repeat(100), 4_000_000_000);
        assert!(valid_id(&long), "{long}");
        let (x, y) = (tool_use_id(None, "", 0), tool_use_id(None, "", 0));
        assert!(valid_id(&x) && x != y, "{x} {y}");
    }

    #[test]
    fn signatures_are_told_apart_by_prefix() {
        assert_eq!(
            classify(Some("gemini-thought:abc")),
            Signature::Thought("abc")
        );
        assert_eq!(
            classify(Some("gemini-next-part:abc")),
            Signature::NextPart("abc")
        );
        assert_eq!(classify(Some("ErUBCkYIBBgCIkB")), Signature::Foreign);
        assert_eq!(classify(None), Signature::Foreign);
    }
}
