//! Reading an upstream's refusal of a request's output limit.
//!
//! Clients size `max_tokens` for the model they think they are talking to: Claude Code
//! asks up to 128000 of whatever its `claude-*` name is routed to, an OpenAI SDK
//! application may ask 32000 of a model that writes 16384 at most. Most upstreams refuse
//! such a request with a 400 that names the most the model takes, each in its own
//! words. [`output_ceiling`] reads those words, so the router can send the request again
//! with the limit lowered, and remember a model's ceiling for the next requests.

/// What an upstream's refusal of a request's output limit says it would take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputCeiling {
    /// The most the model writes, whatever the request: worth remembering for the model.
    Model(u32),
    /// The room this request's input leaves in the model's context window: for this
    /// request only.
    Room(u32),
}

impl OutputCeiling {
    /// The output limit the upstream would take.
    pub fn tokens(self) -> u32 {
        match self {
            OutputCeiling::Model(n) | OutputCeiling::Room(n) => n,
        }
    }
}

/// The names an output limit goes by in the errors read here.
const LIMIT_NAMES: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

/// Reads the output limit an upstream's error message (or an OpenAI error's `param`)
/// names as the most it takes, in the wordings of the services Weir reaches:
///
/// - Anthropic (also through Bedrock and Vertex): `max_tokens: 128000 > 64000, which is
///   the maximum allowed number of output tokens for claude-…`; and, for the room left,
///   ``input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000``;
/// - OpenAI: `max_tokens is too large: 32000. This model supports at most 16384
///   completion tokens, whereas you provided 32000.`;
/// - Gemini and Vertex: `Unable to submit request because it has a maxOutputTokens value
///   of 128000 but the supported range is from 1 (inclusive) to 65537 (exclusive).`;
/// - Bedrock Converse: `The maximum tokens you requested exceeds the model limit of
///   8192.`;
/// - DeepSeek: `the valid range of max_tokens is [1, 8192]`;
/// - Groq and others: `` `max_tokens` must be less than or equal to `32768` ``, `must be
///   <= 8192`, `expected a value <= 12288`;
/// - vLLM and OpenAI's older wording, for the room left: `This model's maximum context
///   length is 64001 tokens and your request has 24235 input tokens`, `… 8192 tokens.
///   However, you requested 8256 tokens (64 in the messages, 8192 in the completion)`;
///   Hugging Face TGI: `` `inputs` tokens + `max_new_tokens` must be <= 32769. Given: 1000
///   `inputs` tokens and 32000 `max_new_tokens` ``.
///
/// `None` for anything else, and where the room left is none.
pub fn output_ceiling(message: &str) -> Option<OutputCeiling> {
    let m = message.to_ascii_lowercase();
    let m = m.as_str();
    let n = ceiling_in(m)?;
    (n.tokens() > 0).then_some(n)
}

fn ceiling_in(m: &str) -> Option<OutputCeiling> {
    use OutputCeiling::{Model, Room};
    if m.contains("maximum allowed number of output tokens") {
        let (_, rest) = number_after(m, "max_tokens:")?;
        return number_after(rest, ">").map(|(b, _)| Model(b));
    }
    if let Some((input, rest)) = number_after(m, "exceed context limit:") {
        let (_, rest) = number_after(rest, "+")?;
        let (window, _) = number_after(rest, ">")?;
        return Some(Room(window.saturating_sub(input)));
    }
    if m.contains("maxoutputtokens") {
        let (_, rest) = number_after(m, "supported range is from")?;
        let (top, rest) = number_after(rest, "to")?;
        let exclusive = rest.trim_start().starts_with("(exclusive");
        return Some(Model(if exclusive {
            top.saturating_sub(1)
        } else {
            top
        }));
    }
    if let Some((window, rest)) = number_after(m, "maximum context length is") {
        if let Some((input, _)) = number_after(rest, "your request has") {
            return Some(Room(window.saturating_sub(input)));
        }
        if rest.contains("in the completion") {
            let (_, rest) = number_after(rest, "you requested")?;
            let (input, _) = number_after(rest, "(")?;
            return Some(Room(window.saturating_sub(input)));
        }
        return None;
    }
    if m.contains("max_new_tokens` must be <=") {
        let (window, rest) = number_after(m, "must be <=")?;
        let (input, _) = number_after(rest, "given:")?;
        return Some(Room(window.saturating_sub(input)));
    }
    if m.contains("maximum tokens you requested exceeds the model limit of") {
        return number_after(m, "exceeds the model limit of").map(|(b, _)| Model(b));
    }
    if let Some((_, rest)) = number_after(m, "valid range of max_tokens is [") {
        return number_after(rest, ",").map(|(b, _)| Model(b));
    }
    if !LIMIT_NAMES.iter().any(|n| m.contains(n)) {
        return None;
    }
    if m.contains("supports at most") && m.contains("completion tokens") {
        return number_after(m, "supports at most").map(|(b, _)| Model(b));
    }
    if m.contains("above maximum value") {
        return number_after(m, "expected a value <=").map(|(b, _)| Model(b));
    }
    // A limit's name, then (within its quotes) the bound it must keep to.
    for name in LIMIT_NAMES {
        let mut from = 0;
        while let Some(at) = m[from..].find(name) {
            let rest = m[from + at + name.len()..].trim_start_matches(['`', '\'', '"', ' ', ':']);
            for bound in ["must be less than or equal to", "must be <="] {
                if let Some(after) = rest.strip_prefix(bound) {
                    if let Some((b, _)) = number_after(after, "") {
                        return Some(Model(b));
                    }
                }
            }
            from += at + name.len();
        }
    }
    None
}

/// The whole number that follows `pat` in `s` (past spaces and quotes), and what follows
/// it. A number past `u32` is taken as its top.
fn number_after<'a>(s: &'a str, pat: &str) -> Option<(u32, &'a str)> {
    let at = s.find(pat)? + pat.len();
    let rest = s[at..].trim_start_matches([' ', '`', '\'', '"']);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n = rest[..digits]
        .parse::<u64>()
        .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX));
    Some((n, &rest[digits..]))
}

#[cfg(test)]
mod tests {
    use super::OutputCeiling::{Model, Room};
    use super::*;

    #[test]
    fn each_services_wording_gives_its_ceiling() {
        for (message, expect) in [
            (
                "max_tokens: 128000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5-20250929",
                Some(Model(64000)),
            ),
            (
                "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, decrease input length or `max_tokens` and try again",
                Some(Room(11760)),
            ),
            (
                "max_tokens is too large: 32000. This model supports at most 16384 completion tokens, whereas you provided 32000.",
                Some(Model(16384)),
            ),
            (
                "max_completion_tokens is too large: 200000. This model supports at most 128000 completion tokens, whereas you provided 200000.",
                Some(Model(128000)),
            ),
            (
                "Unable to submit request because it has a maxOutputTokens value of 128000 but the supported range is from 1 (inclusive) to 65537 (exclusive). Update the value and try again.",
                Some(Model(65536)),
            ),
            (
                "The maximum tokens you requested exceeds the model limit of 8192. Try again with a maximum tokens value that is lower than 8192.",
                Some(Model(8192)),
            ),
            (
                "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]",
                Some(Model(8192)),
            ),
            (
                "`max_tokens` must be less than or equal to `32768`, the maximum value for `max_tokens` is less than the `context_window` for this model",
                Some(Model(32768)),
            ),
            ("Invalid max_tokens: must be <= 8192", Some(Model(8192))),
            ("max_tokens must be <= 8192", Some(Model(8192))),
            (
                "The parameter `max_completion_tokens` specified in the request are not valid: integer above maximum value, expected a value <= 12288, but got 32000 instead.",
                Some(Model(12288)),
            ),
            (
                "'max_tokens' or 'max_completion_tokens' is too large: 64000. This model's maximum context length is 64001 tokens and your request has 24235 input tokens (64000 > 64001 - 24235). None",
                Some(Room(39766)),
            ),
            (
                "This model's maximum context length is 8192 tokens. However, you requested 8256 tokens (64 in the messages, 8192 in the completion). Please reduce the length of the messages or completion.",
                Some(Room(8128)),
            ),
            (
                "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 32769. Given: 1000 `inputs` tokens and 32000 `max_new_tokens`",
                Some(Room(31769)),
            ),
        ] {
            assert_eq!(output_ceiling(message), expect, "{message}");
        }
    }

    #[test]
    fn other_refusals_name_no_ceiling() {
        for message in [
            "max_tokens: Field required",
            "`max_tokens` must be greater than `thinking.budget_tokens`",
            "messages: at least one message is required",
            // The messages alone fill the window: no room to give.
            "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (9000 in the messages, 0 in the completion).",
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
            "prompt is too long: 210000 tokens > 200000 maximum",
            "The input token count (2845475) exceeds the maximum number of tokens allowed (1048576).",
            "Unable to submit request because it has a maxOutputTokens value of 0 but the supported range is from 1 (inclusive) to 1 (exclusive).",
            "",
        ] {
            assert_eq!(output_ceiling(message), None, "{message}");
        }
        // (A ceiling a model really has, however small, is one.)
        assert_eq!(
            output_ceiling(
                "max_tokens: 5 > 4, which is the maximum allowed number of output tokens"
            ),
            Some(Model(4))
        );
    }

    #[test]
    fn a_number_past_u32_is_its_top() {
        assert_eq!(
            output_ceiling("the valid range of max_tokens is [1, 99999999999]"),
            Some(Model(u32::MAX))
        );
    }
}
