//! Gemini `GenerateContentResponse` bodies as canonical responses, and the wire types the
//! stream decoder shares.

use serde::Deserialize;
use serde_json::value::RawValue;
use weir_model::{
    ChatResponse, ContentBlock, DocumentBlock, Extra, ImageBlock, JsonStr, MediaSource, StopReason,
    TextBlock, ThinkingBlock, ToolInput, ToolUseBlock, Usage, WireError,
};

use crate::carry::{next_part_signature, thought_signature, tool_use_id};

/// One `GenerateContentResponse`: a whole answer, or one chunk of a stream.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GResponse<'a> {
    #[serde(default, borrow)]
    pub candidates: Option<Vec<Candidate<'a>>>,
    pub usage_metadata: Option<UsageMetadata>,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
    pub prompt_feedback: Option<PromptFeedback>,
    /// An error sent inside a stream.
    #[serde(borrow)]
    pub error: Option<&'a RawValue>,
}

impl<'a> GResponse<'a> {
    /// The first candidate (canonical responses carry one).
    pub fn take_candidate(&mut self) -> Option<Candidate<'a>> {
        let cands = self.candidates.as_mut()?;
        let at = cands
            .iter()
            .position(|c| c.index.unwrap_or(0) == 0)
            .unwrap_or(0);
        (at < cands.len()).then(|| cands.swap_remove(at))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Candidate<'a> {
    #[serde(borrow)]
    pub content: Option<GContent<'a>>,
    pub finish_reason: Option<String>,
    pub index: Option<u32>,
    /// Grounding with Google Search (read leniently: see `grounding`).
    #[serde(borrow)]
    pub grounding_metadata: Option<&'a RawValue>,
}

impl Candidate<'_> {
    /// Its grounding with Google Search, if it has any that reads.
    pub fn grounding(&self) -> Option<crate::grounding::Grounding> {
        self.grounding_metadata
            .and_then(crate::grounding::Grounding::read)
    }
}

/// The id of the search block made from a response's grounding.
pub(crate) fn search_id(response_id: &str) -> String {
    weir_model::web_search::search_id(response_id, 0)
}

#[derive(Deserialize)]
pub(crate) struct GContent<'a> {
    #[serde(default, borrow)]
    pub parts: Option<Vec<Part<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Part<'a> {
    pub text: Option<JsonStr>,
    pub thought: Option<bool>,
    pub thought_signature: Option<String>,
    #[serde(borrow)]
    pub function_call: Option<FunctionCall<'a>>,
    pub inline_data: Option<Blob>,
    pub file_data: Option<FileData>,
}

#[derive(Deserialize)]
pub(crate) struct FunctionCall<'a> {
    pub id: Option<String>,
    pub name: String,
    #[serde(borrow)]
    pub args: Option<&'a RawValue>,
}

impl FunctionCall<'_> {
    /// The arguments as a JSON object text (`{}` when absent or null).
    pub fn args_text(&self) -> &str {
        match self.args {
            Some(a) if a.get() != "null" => a.get(),
            _ => "{}",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Blob {
    pub mime_type: String,
    pub data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileData {
    pub mime_type: Option<String>,
    pub file_uri: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromptFeedback {
    pub block_reason: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageMetadata {
    pub prompt_token_count: Option<u64>,
    pub candidates_token_count: Option<u64>,
    pub thoughts_token_count: Option<u64>,
    pub cached_content_token_count: Option<u64>,
    pub tool_use_prompt_token_count: Option<u64>,
}

impl UsageMetadata {
    /// Canonical usage. `promptTokenCount` includes the cached tokens and canonical input
    /// does not, so they are subtracted; tool-use prompt tokens (search and URL-context
    /// results) are billed as input and added. Thoughts are output and reported as
    /// reasoning too.
    pub fn usage(&self) -> Usage {
        let cached = self.cached_content_token_count;
        let input = match (self.prompt_token_count, self.tool_use_prompt_token_count) {
            (None, None) => None,
            (p, t) => Some(
                p.unwrap_or(0)
                    .saturating_add(t.unwrap_or(0))
                    .saturating_sub(cached.unwrap_or(0)),
            ),
        };
        let output = match (self.candidates_token_count, self.thoughts_token_count) {
            (None, None) => None,
            (c, t) => Some(c.unwrap_or(0).saturating_add(t.unwrap_or(0))),
        };
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cached,
            cache_write_tokens: None,
            cache_write_1h_tokens: None,
            web_search_requests: None,
            billed_usd: None,
            reasoning_tokens: self.thoughts_token_count,
            extra: Extra::new(),
        }
    }

    /// Only the input side (what a stream knows when it starts).
    pub fn input_usage(&self) -> Usage {
        let mut u = self.usage();
        u.output_tokens = None;
        u.reasoning_tokens = None;
        u
    }
}

/// Canonical stop reason for a `finishReason`. `STOP` is also Gemini's reason when the turn
/// ends in function calls, so `called_tools` turns it into `tool_use`. Stop sequences are
/// not told apart from a natural end by Gemini (both `STOP`).
pub(crate) fn stop_reason(finish: &str, called_tools: bool) -> Result<StopReason, WireError> {
    Ok(match finish {
        "STOP" if called_tools => StopReason::ToolUse,
        "STOP" => StopReason::EndTurn,
        "MAX_TOKENS" => StopReason::MaxTokens,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "IMAGE_OTHER"
        | "LANGUAGE" => StopReason::Refusal,
        // The model's call could not be used: no answer a client could act on (as
        // Bedrock's `malformed_tool_use`).
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS" => {
            return Err(WireError::ModelOutput(format!(
                "the model's tool call could not be used (Gemini finishReason {finish})"
            )))
        }
        // Generation failed: Gemini could not use the conversation (a replayed call
        // without the thought signature Gemini 3 demands) or answered something malformed.
        "MISSING_THOUGHT_SIGNATURE" => {
            return Err(WireError::ModelOutput(
                "Gemini could not continue the conversation: a function call in it lacks \
                 its thought signature (Gemini finishReason MISSING_THOUGHT_SIGNATURE)"
                    .to_owned(),
            ))
        }
        "MALFORMED_RESPONSE" => {
            return Err(WireError::ModelOutput(
                "the model's answer was malformed (Gemini finishReason MALFORMED_RESPONSE)"
                    .to_owned(),
            ))
        }
        // `OTHER`, `FINISH_REASON_UNSPECIFIED` and reasons added later: the answer ended
        // as it is.
        _ if called_tools => StopReason::ToolUse,
        _ => StopReason::EndTurn,
    })
}

/// What one Gemini part becomes: the signature carrier before it (a thinking block) and the
/// block itself, either possibly absent.
pub(crate) struct Decoded {
    pub carrier: Option<ContentBlock>,
    pub block: Option<ContentBlock>,
}

/// Decodes a part. `calls` counts function calls so far (for ids); it is advanced here.
pub(crate) fn part_blocks(p: Part<'_>, response_id: &str, calls: &mut u32) -> Decoded {
    if p.thought == Some(true) {
        return Decoded {
            carrier: None,
            block: Some(ContentBlock::Thinking(ThinkingBlock {
                thinking: p.text.unwrap_or_default(),
                signature: p.thought_signature.as_deref().map(thought_signature),
                extra: Extra::new(),
            })),
        };
    }
    let is_text = p.text.is_some();
    let block = if let Some(fc) = p.function_call {
        let id = tool_use_id(fc.id.as_deref(), response_id, *calls);
        *calls += 1;
        let input = match RawValue::from_string(fc.args_text().to_owned()) {
            Ok(raw) => ToolInput::Json(raw),
            Err(_) => ToolInput::Arguments(fc.args_text().to_owned()),
        };
        Some(ContentBlock::ToolUse(ToolUseBlock {
            id,
            name: fc.name,
            input,
            cache_control: None,
            extra: Extra::new(),
        }))
    } else if let Some(t) = p.text {
        (!t.is_empty()).then(|| ContentBlock::Text(TextBlock::new(t)))
    } else if let Some(b) = p.inline_data {
        Some(media_block(
            MediaSource::Base64 {
                media_type: b.mime_type.clone(),
                data: b.data,
            },
            &b.mime_type,
        ))
    } else if let Some(f) = p.file_data {
        let mime = f.mime_type.unwrap_or_default();
        Some(media_block(MediaSource::Url(f.file_uri), &mime))
    } else {
        // Server-side tool parts (executableCode, codeExecutionResult, ...) have no
        // canonical form; the answer they lead to arrives as text.
        None
    };
    let carrier = match (&p.thought_signature, &block) {
        // A signature on an empty text part ends a turn: it is kept on its own and written
        // back as such (see the request encoder).
        (Some(sig), Some(_)) => Some(sig),
        (Some(sig), None) if is_text => Some(sig),
        _ => None,
    }
    .map(|sig| {
        ContentBlock::Thinking(ThinkingBlock {
            thinking: JsonStr::empty(),
            signature: Some(next_part_signature(sig)),
            extra: Extra::new(),
        })
    });
    Decoded { carrier, block }
}

fn media_block(source: MediaSource, mime: &str) -> ContentBlock {
    if mime.starts_with("image/") {
        ContentBlock::Image(ImageBlock {
            source,
            detail: None,
            cache_control: None,
            extra: Extra::new(),
        })
    } else {
        ContentBlock::Document(DocumentBlock {
            source,
            title: None,
            cache_control: None,
            extra: Extra::new(),
        })
    }
}

/// Leaves out the function calls after the first (and the empty thinking block carrying
/// a left-out call's signature): the client asked for one tool call per turn
/// (`parallel_tool_calls: false`, `disable_parallel_tool_use`), which Gemini has no switch
/// for. The call that is kept is the one the model made first; the model asks again for
/// what it still needs next turn, as Claude does when told to make one call at a time.
pub fn keep_one_call(r: &mut ChatResponse) {
    let mut seen = false;
    let mut i = 0;
    while i < r.content.len() {
        if matches!(r.content[i], ContentBlock::ToolUse(_)) {
            if seen {
                r.content.remove(i);
                if i > 0
                    && matches!(&r.content[i - 1], ContentBlock::Thinking(t)
                        if t.thinking.is_empty() && t.signature.is_some())
                {
                    r.content.remove(i - 1);
                    i -= 1;
                }
                continue;
            }
            seen = true;
        }
        i += 1;
    }
}

/// Decodes a Gemini `generateContent` response body.
///
/// The first candidate's parts become blocks (see the crate docs for thoughts, signatures
/// and tool-call ids). A prompt blocked before any candidate (`promptFeedback.blockReason`)
/// is an empty response with the `refusal` stop reason.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, WireError> {
    let text = weir_model::wire::utf8("response body", body)?;
    let mut r: GResponse<'_> =
        serde_json::from_str(text).map_err(|e| WireError::from_json("response body", &e))?;
    if let Some(err) = r.error {
        return Err(WireError::Malformed(format!(
            "the response body is an error: {}",
            crate::error::message_of(err.get())
        )));
    }
    // A 200 with neither (`{}`) carries no answer.
    if r.candidates.is_none() && r.prompt_feedback.is_none() {
        return Err(WireError::Malformed(
            "not a generateContent response: it has no `candidates`".into(),
        ));
    }
    let id = r.response_id.take().unwrap_or_default();
    let mut content = Vec::new();
    let mut calls = 0;
    let mut stop = None;
    let mut searches = None;
    if let Some(cand) = r.take_candidate() {
        let grounding = cand.grounding();
        let parts = cand.content.and_then(|c| c.parts).unwrap_or_default();
        for p in parts {
            let d = part_blocks(p, &id, &mut calls);
            content.extend(d.carrier);
            content.extend(d.block);
        }
        if let Some(g) = grounding {
            content = g.apply(content, &search_id(&id));
            searches = Some(g.searches());
        }
        stop = cand
            .finish_reason
            .as_deref()
            .map(|f| stop_reason(f, calls > 0))
            .transpose()?;
    } else if r
        .prompt_feedback
        .as_ref()
        .is_some_and(|f| f.block_reason.is_some())
    {
        stop = Some(StopReason::Refusal);
    }
    Ok(ChatResponse {
        origin: None,
        id,
        model: r.model_version.unwrap_or_default(),
        content,
        stop_reason: stop,
        stop_sequence: None,
        usage: Usage {
            web_search_requests: searches,
            ..r.usage_metadata.map(|u| u.usage()).unwrap_or_default()
        },
        ..Default::default()
    })
}
