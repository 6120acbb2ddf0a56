//! OpenAI-compatible services with their own quirks: `kind = "openai"` plus `preset =
//! "<name>"` (or a `base_url` on the service's host, which implies it).

use weir_model::{ChatRequest, MaxTokensField};

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
            // reasoning it ignores. Its content is a string: it answers 400 to an array
            // of parts (Claude Code sends several text blocks per turn).
            Preset::DeepSeek => {
                o.max_tokens_field = Some(MaxTokensField::MaxTokens);
                o.reasoning_content_in_history = true;
                o.text_as_string = true;
            }
            Preset::OpenRouter | Preset::Zai | Preset::Together => {
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
        let mut removed = Vec::new();
        let mut strip = |req: &mut ChatRequest, fields: &[&'static str]| {
            for f in fields {
                if req.extra.remove(f).is_some() {
                    removed.push(*f);
                }
            }
        };
        match self {
            Preset::Groq => {
                strip(req, &["logprobs", "logit_bias", "top_logprobs", "n"]);
                for m in &mut req.messages {
                    if m.extra.remove("name").is_some() {
                        removed.push("messages[].name");
                    }
                }
            }
            Preset::Cerebras => {
                strip(
                    req,
                    &["frequency_penalty", "presence_penalty", "logit_bias"],
                );
                if req.parallel_tool_calls.take().is_some() {
                    removed.push("parallel_tool_calls");
                }
            }
            // Mistral refuses fields it does not know (422 extra_forbidden): it has no
            // `user` (an Anthropic client's metadata.user_id), and calls the seed
            // `random_seed`.
            Preset::Mistral => {
                if req.include_usage.take().is_some() {
                    removed.push("stream_options");
                }
                if req.metadata.take().is_some() {
                    removed.push("user");
                }
                if let Some(seed) = req.extra.remove("seed") {
                    req.extra.insert("random_seed".to_owned(), seed);
                }
            }
            // DeepSeek answers 400 to an output limit over its model's maximum (Claude
            // Code asks for 32000-64000; deepseek-chat takes 8192).
            Preset::DeepSeek => {
                let max = if req.model.starts_with("deepseek-chat") {
                    Some(8192)
                } else if req.model.starts_with("deepseek-reasoner") {
                    Some(65536)
                } else {
                    None
                };
                if let (Some(max), Some(asked)) = (max, req.max_tokens) {
                    if asked > max {
                        req.max_tokens = Some(max);
                        removed.push("max_tokens (lowered to the model's maximum)");
                    }
                }
            }
            Preset::Xai | Preset::OpenRouter | Preset::Zai | Preset::Together => {}
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
