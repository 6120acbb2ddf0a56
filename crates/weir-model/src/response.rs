//! The canonical chat response, usage and stop reasons.

use crate::content::ContentBlock;
use crate::raw::{Dialect, Extra, RawJson};

/// A complete (non-streamed) response.
#[derive(Clone, Debug, Default)]
pub struct ChatResponse {
    /// The dialect it was decoded from.
    pub origin: Option<Dialect>,
    /// The provider's response id.
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// The assistant's content: text, thinking, tool calls.
    pub content: Vec<ContentBlock>,
    /// Why generation stopped.
    pub stop_reason: Option<StopReason>,
    /// The stop sequence that matched (Anthropic).
    pub stop_sequence: Option<String>,
    /// Token usage.
    pub usage: Usage,
    /// OpenAI `created` (unix seconds).
    pub created: Option<u64>,
    /// Unknown top-level fields.
    pub extra: Extra,
    /// Unknown fields of OpenAI's first choice object.
    pub choice_extra: Extra,
    /// Unknown fields of OpenAI's first choice's message.
    pub message_extra: Extra,
    /// OpenAI choices after the first (`n > 1`), verbatim; other dialects cannot carry them.
    pub other_choices: Vec<RawJson>,
    /// The upstream's body verbatim, when the client speaks the upstream's dialect
    /// ([`CallContext::client_dialect`](crate::CallContext::client_dialect)): the provider
    /// then decoded only what the gateway accounts by (id, model, usage), `content` is
    /// empty, and the gateway forwards these bytes as they came.
    pub raw: Option<Vec<u8>>,
}

impl ChatResponse {
    /// The response with OpenAI tool calls kept verbatim read as function calls where they
    /// can be ([`crate::content::lenient_tool_calls`]): a copy only when it holds some.
    pub fn with_lenient_tool_calls(&self) -> std::borrow::Cow<'_, ChatResponse> {
        match crate::content::lenient_tool_calls(&self.content, true) {
            Some(content) => std::borrow::Cow::Owned(ChatResponse {
                content,
                ..self.clone()
            }),
            None => std::borrow::Cow::Borrowed(self),
        }
    }

    /// The refusal an OpenAI upstream gave (`message.refusal`, with structured outputs),
    /// for translating it: other dialects carry a refusal as text with a refusal stop.
    pub fn openai_refusal(&self) -> Option<crate::JsonStr> {
        if self.origin != Some(Dialect::OpenAi) {
            return None;
        }
        crate::JsonStr::from_raw_ref(self.message_extra.get("refusal")?).filter(|t| !t.is_empty())
    }
}

/// Why the model stopped. Anthropic's set, which is the richest; see each dialect for the
/// mapping of its own names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Natural end of the turn.
    EndTurn,
    /// The output token limit.
    MaxTokens,
    /// A stop sequence matched.
    StopSequence,
    /// The model called tools.
    ToolUse,
    /// A long server-tool turn paused; the client should continue it.
    PauseTurn,
    /// The model refused (OpenAI `content_filter`).
    Refusal,
    /// The context window filled up.
    ContextWindowExceeded,
    /// A reason the canonical set does not name, verbatim.
    Other(String),
}

impl StopReason {
    /// Anthropic's name.
    pub fn anthropic_name(&self) -> &str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ToolUse => "tool_use",
            StopReason::PauseTurn => "pause_turn",
            StopReason::Refusal => "refusal",
            StopReason::ContextWindowExceeded => "model_context_window_exceeded",
            StopReason::Other(s) => s,
        }
    }

    /// From Anthropic's name; unknown names are kept as [`StopReason::Other`].
    pub fn from_anthropic(s: &str) -> StopReason {
        match s {
            "end_turn" => StopReason::EndTurn,
            "max_tokens" => StopReason::MaxTokens,
            "stop_sequence" => StopReason::StopSequence,
            "tool_use" => StopReason::ToolUse,
            "pause_turn" => StopReason::PauseTurn,
            "refusal" => StopReason::Refusal,
            "model_context_window_exceeded" => StopReason::ContextWindowExceeded,
            other => StopReason::Other(other.to_owned()),
        }
    }

    /// Anthropic's name for an Anthropic client of another dialect's upstream: a reason
    /// Anthropic has no name for becomes the nearest one.
    pub fn anthropic_client_name(&self) -> &str {
        match self {
            StopReason::Other(s) if s == "function_call" => "tool_use",
            // Another dialect's own reason: the answer ended as it is.
            StopReason::Other(_) => "end_turn",
            _ => self.anthropic_name(),
        }
    }

    /// OpenAI's `finish_reason` for an OpenAI client of another dialect's upstream: a
    /// reason OpenAI has no name for (another dialect's own) becomes `stop`.
    pub fn openai_client_name(&self) -> &str {
        match self {
            StopReason::Other(s) if s == "function_call" => s,
            StopReason::Other(_) => "stop",
            _ => self.openai_name(),
        }
    }

    /// OpenAI's `finish_reason`.
    pub fn openai_name(&self) -> &str {
        match self {
            StopReason::EndTurn | StopReason::StopSequence | StopReason::PauseTurn => "stop",
            StopReason::MaxTokens | StopReason::ContextWindowExceeded => "length",
            StopReason::ToolUse => "tool_calls",
            StopReason::Refusal => "content_filter",
            StopReason::Other(s) => s,
        }
    }

    /// From OpenAI's `finish_reason`; unknown names are kept as [`StopReason::Other`].
    pub fn from_openai(s: &str) -> StopReason {
        match s {
            "stop" => StopReason::EndTurn,
            "length" => StopReason::MaxTokens,
            "tool_calls" => StopReason::ToolUse,
            "content_filter" => StopReason::Refusal,
            // Z.AI's filtered answer; Z.AI's and Mistral's full context window.
            "sensitive" => StopReason::Refusal,
            "model_context_window_exceeded" | "model_length" => StopReason::ContextWindowExceeded,
            other => StopReason::Other(other.to_owned()),
        }
    }
}

/// An id for an answer whose upstream gave none (Bedrock Converse; Gemini without a
/// `responseId`), as a client of `prefix`'s dialect expects one (`msg_`, `chatcmpl-`):
/// unique within the process, and unlikely to repeat across processes (not secret).
pub fn generated_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed =
        (nanos ^ u64::from(std::process::id()).rotate_left(40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{prefix}{mixed:016x}{n:08x}")
}

/// Token usage. Input figures follow Anthropic: `input_tokens` excludes the cache reads and
/// writes, and the total input is the three summed. Fields are `None` when the source did
/// not report them (stream deltas often carry only `output_tokens`).
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// Input tokens that were neither read from nor written to the cache.
    pub input_tokens: Option<u64>,
    /// Output tokens, reasoning included.
    pub output_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: Option<u64>,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: Option<u64>,
    /// Of `cache_write_tokens`, those written to be kept one hour (Anthropic's
    /// `cache_creation.ephemeral_1h_input_tokens`), which cost more than the five-minute
    /// writes.
    pub cache_write_1h_tokens: Option<u64>,
    /// Web searches the upstream ran for the answer (Anthropic's
    /// `server_tool_use.web_search_requests`), billed per search.
    pub web_search_requests: Option<u64>,
    /// What the upstream says the request cost, in USD (OpenRouter's `usage.cost`, its
    /// own key's inference added when the account brings its own key): the cost counted,
    /// whatever a price list says.
    pub billed_usd: Option<f64>,
    /// Output tokens spent on reasoning, when reported separately.
    pub reasoning_tokens: Option<u64>,
    /// Unknown fields, and the source dialect's own breakdown objects.
    pub extra: Extra,
}

impl Usage {
    /// Whether the upstream reported no token count at all (no input, output or cache
    /// read: some OpenAI-compatible servers send no usage).
    pub fn unreported(&self) -> bool {
        self.input_tokens.is_none()
            && self.output_tokens.is_none()
            && self.cache_read_tokens.is_none()
    }

    /// Whether it reports the request's input: some input tokens. An input of 0, as an
    /// OpenAI stream's opening chunk and some Anthropic-compatible servers' figures say,
    /// is none reported (no request is free of input), so the gateway charges its estimate.
    pub fn reports_input(&self) -> bool {
        self.total_input() > 0
    }

    /// All input tokens: uncached + cache read + cache write.
    pub fn total_input(&self) -> u64 {
        self.input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_read_tokens.unwrap_or(0))
            .saturating_add(self.cache_write_tokens.unwrap_or(0))
    }

    /// A token count past any real request's (2^40, a trillion): an upstream reporting
    /// more is broken, or hostile, and is not believed for accounting.
    pub const MAX_TOKENS: u64 = 1 << 40;

    /// Whether a count is past [`Usage::MAX_TOKENS`].
    pub fn past_belief(&self) -> bool {
        [
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
            self.web_search_requests,
            self.reasoning_tokens,
        ]
        .into_iter()
        .flatten()
        .any(|n| n > Self::MAX_TOKENS)
    }

    /// This usage without the counts past belief (as if unreported: the caller's
    /// estimate stands in for a missing input).
    pub fn believed(&self) -> Usage {
        let keep = |n: Option<u64>| n.filter(|&n| n <= Self::MAX_TOKENS);
        Usage {
            input_tokens: keep(self.input_tokens),
            output_tokens: keep(self.output_tokens),
            cache_read_tokens: keep(self.cache_read_tokens),
            cache_write_tokens: keep(self.cache_write_tokens),
            cache_write_1h_tokens: keep(self.cache_write_1h_tokens),
            web_search_requests: keep(self.web_search_requests),
            reasoning_tokens: keep(self.reasoning_tokens),
            billed_usd: self.billed_usd,
            extra: Extra::new(),
        }
    }

    /// Output tokens, zero when unreported.
    pub fn output(&self) -> u64 {
        self.output_tokens.unwrap_or(0)
    }

    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.input_tokens.is_none()
            && self.output_tokens.is_none()
            && self.cache_read_tokens.is_none()
            && self.cache_write_tokens.is_none()
            && self.reasoning_tokens.is_none()
    }

    /// What an upstream that says so charged (OpenRouter: `cost`, and with the account's
    /// own provider key, `is_byok`, the provider's inference billed apart,
    /// `cost_details.upstream_inference_cost`), for [`Usage::billed_usd`]; a figure that
    /// is no amount is none.
    pub fn billed(cost: Option<f64>, own_key: bool, inference: Option<f64>) -> Option<f64> {
        let amount = |c: &f64| c.is_finite() && *c >= 0.0;
        let inference = inference.filter(|c| own_key && amount(c)).unwrap_or(0.0);
        cost.filter(amount).map(|c| c + inference)
    }

    /// Folds a later report into this one: figures present in `later` replace these
    /// (Anthropic `message_delta` usage is cumulative).
    pub fn merge(&mut self, later: &Usage) {
        fn take(a: &mut Option<u64>, b: Option<u64>) {
            if b.is_some() {
                *a = b;
            }
        }
        take(&mut self.input_tokens, later.input_tokens);
        take(&mut self.output_tokens, later.output_tokens);
        take(&mut self.cache_read_tokens, later.cache_read_tokens);
        take(&mut self.cache_write_tokens, later.cache_write_tokens);
        take(&mut self.cache_write_1h_tokens, later.cache_write_1h_tokens);
        take(&mut self.web_search_requests, later.web_search_requests);
        if later.billed_usd.is_some() {
            self.billed_usd = later.billed_usd;
        }
        take(&mut self.reasoning_tokens, later.reasoning_tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reason_names_round_trip_within_each_dialect() {
        for a in [
            "end_turn",
            "max_tokens",
            "stop_sequence",
            "tool_use",
            "pause_turn",
            "refusal",
            "model_context_window_exceeded",
            "something_new",
        ] {
            assert_eq!(StopReason::from_anthropic(a).anthropic_name(), a);
        }
        for o in [
            "stop",
            "length",
            "tool_calls",
            "content_filter",
            "function_call",
        ] {
            assert_eq!(StopReason::from_openai(o).openai_name(), o);
        }
    }

    #[test]
    fn usage_merge_keeps_unreported_figures() {
        let mut u = Usage {
            input_tokens: Some(10),
            cache_read_tokens: Some(5),
            output_tokens: Some(1),
            ..Default::default()
        };
        u.merge(&Usage {
            output_tokens: Some(42),
            ..Default::default()
        });
        assert_eq!((u.total_input(), u.output()), (15, 42));
    }
}
