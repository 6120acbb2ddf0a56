//! OpenAI-compatible services with their own quirks: `kind = "openai"` plus `preset =
//! "<name>"` (or a `base_url` on the service's host, which implies it).

use std::borrow::Cow;

use weir_model::{ChatRequest, ContentBlock, MaxTokensField};

use crate::EncodeOptions;

/// A known OpenAI-compatible service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Groq: rejects `logprobs`, `logit_bias`, `top_logprobs`, `n`, and `name` on
    /// messages; stream usage arrives in `x_groq.usage`.
    Groq,
    /// xAI (Grok): reasoning in `reasoning_content`.
    Xai,
    /// Cerebras: rejects `frequency_penalty`, `presence_penalty`, `logit_bias` and
    /// `parallel_tool_calls`; per-day and per-minute rate-limit headers.
    Cerebras,
    /// OpenRouter: SSE comments while processing, errors inside a 200 stream.
    OpenRouter,
    /// DeepSeek: `reasoning_content`, usage on the finish chunk, `max_tokens`.
    DeepSeek,
    /// Z.AI (GLM).
    Zai,
    /// Mistral: `max_tokens`, no `stream_options`.
    Mistral,
    /// Together AI.
    Together,
}

/// Every preset, for listings and errors.
pub const PRESETS: &[Preset] = &[
    Preset::Groq,
    Preset::Xai,
    Preset::Cerebras,
    Preset::OpenRouter,
    Preset::DeepSeek,
    Preset::Zai,
    Preset::Mistral,
    Preset::Together,
];

impl Preset {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Groq => "groq",
            Preset::Xai => "xai",
            Preset::Cerebras => "cerebras",
            Preset::OpenRouter => "openrouter",
            Preset::DeepSeek => "deepseek",
            Preset::Zai => "zai",
            Preset::Mistral => "mistral",
            Preset::Together => "together",
        }
    }

    /// The preset of a name.
    pub fn parse(name: &str) -> Result<Preset, String> {
        PRESETS
            .iter()
            .copied()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown preset `{name}` ({})",
                    PRESETS
                        .iter()
                        .map(|p| p.name())
                        .collect::<Vec<_>>()
                        .join(" | ")
                )
            })
    }

    /// The service's API base (what `base_url` defaults to).
    pub fn base_url(self) -> &'static str {
        match self {
            Preset::Groq => "https://api.groq.com/openai/v1",
            Preset::Xai => "https://api.x.ai/v1",
            Preset::Cerebras => "https://api.cerebras.ai/v1",
            Preset::OpenRouter => "https://openrouter.ai/api/v1",
            Preset::DeepSeek => "https://api.deepseek.com",
            Preset::Zai => "https://api.z.ai/api/paas/v4",
            Preset::Mistral => "https://api.mistral.ai/v1",
            Preset::Together => "https://api.together.xyz/v1",
        }
    }

    /// The preset a `base_url` implies, by its host.
    pub fn infer(base_url: &str) -> Option<Preset> {
        let host = base_url
            .split("://")
            .nth(1)?
            .split(['/', ':', '?'])
            .next()?
            .to_ascii_lowercase();
        PRESETS.iter().copied().find(|p| {
            p.base_url()
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .is_some_and(|h| h == host)
        })
    }

    /// How requests are encoded for the service.
    pub fn encode_options(self) -> EncodeOptions {
        let mut o = EncodeOptions::default();
        match self {
            // These know `max_completion_tokens`.
            Preset::Groq | Preset::Cerebras | Preset::Xai => {}
            // DeepSeek's thinking mode (on by default) answers 400 to a history whose
            // tool-call turns lack the `reasoning_content` they came with; other turns'
            // reasoning it ignores: thinking goes off for a request that continues such a
            // turn. A client's thinking on or off is its `thinking` field. Its content is a
            // string: it answers 400 to an array of parts (Claude Code sends several text
            // blocks per turn).
            Preset::DeepSeek => {
                o.max_tokens_field = Some(MaxTokensField::MaxTokens);
                o.reasoning_content_in_history = true;
                o.text_as_string = true;
                o.thinking_type = true;
                o.thinking_off_for_unreasoned_tool_turn = true;
            }
            // OpenRouter needs `reasoning_details` back (reasoning signatures of Claude,
            // Gemini's encrypted thought signatures: without them a tool loop's next call
            // is refused); Z.AI wants its interleaved reasoning back with the tool results.
            // An Anthropic client's thinking goes as OpenRouter's `reasoning`, which it
            // maps for every model that reasons.
            Preset::OpenRouter => {
                o.max_tokens_field = Some(MaxTokensField::MaxTokens);
                o.reasoning_details_in_history = true;
                o.reasoning_object = true;
                // It passes prompt-caching markers on text parts to Claude and Gemini.
                o.cache_control = true;
                // Its web search server tool searches for any model.
                o.web_search_tool = true;
            }
            // Z.AI turns GLM's thinking on and off with its own `thinking` field.
            Preset::Zai => {
                o.max_tokens_field = Some(MaxTokensField::MaxTokens);
                o.reasoning_content_in_history = true;
                o.thinking_type = true;
            }
            Preset::Together => {
                o.max_tokens_field = Some(MaxTokensField::MaxTokens);
            }
            // Mistral answers 400 to a user message right after a tool message (Claude
            // Code's image results, a turn interrupted after its tool results).
            Preset::Mistral => {
                o.max_tokens_field = Some(MaxTokensField::MaxTokens);
                o.request_stream_usage = false;
                o.assistant_after_tool = true;
            }
        }
        o
    }

    /// Removes what the service rejects. Returns the fields removed (for a debug log).
    pub fn adapt(self, req: &mut ChatRequest) -> Vec<&'static str> {
        let (adapted, removed) = self.adapted(req);
        if let Cow::Owned(r) = adapted {
            *req = r;
        }
        removed
    }

    /// [`Preset::adapt`] without a copy of the request when nothing needs removing (most
    /// requests: a Claude Code request is 50-100 KB).
    pub fn adapted(self, req: &ChatRequest) -> (Cow<'_, ChatRequest>, Vec<&'static str>) {
        let mut req = Cow::Borrowed(req);
        let mut removed = Vec::new();
        // A field the service refuses is removed only when it asks for nothing (its
        // default: `n: 1`, `logprobs: false`, a zero penalty, an empty `logit_bias`,
        // null); one that asks for something is sent, so the service's 400 names it
        // rather than the client silently getting less than it asked for.
        let mut strip = |req: &mut Cow<'_, ChatRequest>, fields: &[&'static str]| {
            for f in fields {
                if req
                    .extra
                    .get(f)
                    .is_some_and(|v| weir_model::request::asks_nothing(f, v.get()))
                {
                    req.to_mut().extra.remove(f);
                    removed.push(*f);
                }
            }
        };
        match self {
            Preset::Groq => {
                strip(&mut req, &["logprobs", "logit_bias", "top_logprobs", "n"]);
                if req.messages.iter().any(|m| m.extra.contains("name")) {
                    for m in &mut req.to_mut().messages {
                        m.extra.remove("name");
                    }
                    removed.push("messages[].name");
                }
            }
            Preset::Cerebras => {
                strip(
                    &mut req,
                    &["frequency_penalty", "presence_penalty", "logit_bias"],
                );
                // `true` is the default; an OpenAI client's `false` is sent (and refused by
                // the service, naming the field it sent). Another dialect's client never
                // named the field (Anthropic's `disable_parallel_tool_use`): it goes.
                let openai = req.origin == Some(weir_model::Dialect::OpenAi);
                if req.parallel_tool_calls.is_some()
                    && (req.parallel_tool_calls == Some(true) || !openai)
                {
                    req.to_mut().parallel_tool_calls = None;
                    removed.push("parallel_tool_calls");
                }
            }
            // Mistral refuses fields it does not know (422 extra_forbidden): it has no
            // `user` (an Anthropic client's metadata.user_id), and calls the seed
            // `random_seed`.
            Preset::Mistral => {
                if req.include_usage.is_some() || req.extra.contains("stream_options") {
                    let r = req.to_mut();
                    r.include_usage = None;
                    r.extra.remove("stream_options");
                    removed.push("stream_options");
                }
                if req.metadata.is_some() {
                    req.to_mut().metadata = None;
                    removed.push("user");
                }
                if req.extra.contains("seed") {
                    let r = req.to_mut();
                    if let Some(seed) = r.extra.remove("seed") {
                        r.extra.insert("random_seed".to_owned(), seed);
                    }
                }
                // Mistral refuses any tool call id but nine letters and digits: ids from
                // another upstream (Claude's `toolu_...`, OpenAI's `call_...`) in the
                // history, after a failover, are rewritten, the same way for a call and
                // its result.
                let foreign = |id: &str| mistral_tool_id(id).is_some();
                let rewrite = req.messages.iter().any(|m| {
                    m.content.blocks.iter().any(|b| match b {
                        ContentBlock::ToolUse(t) => foreign(&t.id),
                        ContentBlock::ToolResult(r) => foreign(&r.tool_use_id),
                        _ => false,
                    })
                });
                if rewrite {
                    for m in &mut req.to_mut().messages {
                        for b in &mut m.content.blocks {
                            let id = match b {
                                ContentBlock::ToolUse(t) => &mut t.id,
                                ContentBlock::ToolResult(r) => &mut r.tool_use_id,
                                _ => continue,
                            };
                            if let Some(new) = mistral_tool_id(id) {
                                *id = new;
                            }
                        }
                    }
                    removed.push("tool call ids (rewritten as Mistral's nine characters)");
                }
            }
            // (DeepSeek's V4 models, which `deepseek-chat` and `deepseek-reasoner` now
            // name, take up to 384K output tokens: a client's limit goes as it is.)
            // xAI's reasoning models (grok-4.3) refuse the penalties.
            Preset::Xai => {
                strip(&mut req, &["presence_penalty", "frequency_penalty"]);
            }
            Preset::DeepSeek | Preset::OpenRouter | Preset::Zai | Preset::Together => {}
        }
        (req, removed)
    }
}

/// A tool call id as Mistral takes it, nine letters and digits, for one it would refuse:
/// the FNV-1a hash of the whole id in base 62, so the call and its result still match.
fn mistral_tool_id(id: &str) -> Option<String> {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Some(
        (0..9)
            .map(|_| {
                let d = DIGITS[(hash % 62) as usize];
                hash /= 62;
                char::from(d)
            })
            .collect(),
    )
}

/// Whether `base_url` is Google's OpenAI-compatible endpoint (the Gemini API's
/// `/v1beta/openai`, or Vertex AI's `/endpoints/openapi`), whose Gemini 3 models want a
/// thought signature on every earlier function call
/// ([`EncodeOptions::placeholder_thought_signature`]).
pub fn is_google_openai(base_url: &str) -> bool {
    let host = base_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default()
        .to_ascii_lowercase();
    host == "generativelanguage.googleapis.com"
        || (host.ends_with("aiplatform.googleapis.com") && base_url.contains("/endpoints/openapi"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_request_with_nothing_to_remove_is_not_copied() {
        let plain: ChatRequest = crate::decode_request(
            br#"{"model":"deepseek-chat","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        for p in PRESETS {
            let (r, removed) = p.adapted(&plain);
            assert!(matches!(r, Cow::Borrowed(_)), "{}", p.name());
            assert!(removed.is_empty());
        }
        // DeepSeek's V4 models take Claude Code's limits as they are.
        let mut big = plain.clone();
        big.max_tokens = Some(64000);
        let (r, _) = Preset::DeepSeek.adapted(&big);
        assert_eq!(r.max_tokens, Some(64000));
    }

    #[test]
    fn mistral_gets_tool_call_ids_of_nine_letters_and_digits() {
        let req: ChatRequest = request_with_foreign_ids();
        let (r, removed) = Preset::Mistral.adapted(&req);
        assert!(!removed.is_empty());
        let ids: Vec<&str> = r
            .messages
            .iter()
            .flat_map(|m| &m.content.blocks)
            .filter_map(|b| match b {
                ContentBlock::ToolUse(t) => Some(t.id.as_str()),
                ContentBlock::ToolResult(r) => Some(r.tool_use_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(ids.len(), 4, "{ids:?}");
        for id in &ids {
            assert!(
                id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{id}"
            );
        }
        // Each call and its result still match; the two calls stay apart; Mistral's own
        // ids are kept.
        assert_eq!(ids[0], ids[2]);
        assert_eq!(ids[1], ids[3]);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(ids[1], "D681Ber86");
        // Other presets leave ids alone.
        let (r, _) = Preset::Groq.adapted(&req);
        assert!(matches!(r, Cow::Borrowed(_)));
    }

    fn request_with_foreign_ids() -> ChatRequest {
        crate::decode_request(
            br#"{"model":"m","messages":[
                {"role":"user","content":"q"},
                {"role":"assistant","content":null,"tool_calls":[
                    {"id":"toolu_01A09q90qw90lq917835lq9","type":"function","function":{"name":"f","arguments":"{}"}},
                    {"id":"D681Ber86","type":"function","function":{"name":"g","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"toolu_01A09q90qw90lq917835lq9","content":"r1"},
                {"role":"tool","tool_call_id":"D681Ber86","content":"r2"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn names_and_hosts() {
        for p in PRESETS {
            assert_eq!(Preset::parse(p.name()).unwrap(), *p);
            assert_eq!(Preset::infer(p.base_url()), Some(*p));
        }
        assert_eq!(
            Preset::infer("https://API.GROQ.COM/openai/v1/"),
            Some(Preset::Groq)
        );
        assert_eq!(Preset::infer("http://127.0.0.1:9000/v1"), None);
        assert!(Preset::parse("grok").unwrap_err().contains("groq | xai"));
    }
}
