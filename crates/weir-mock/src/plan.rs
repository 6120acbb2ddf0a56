//! Deciding the answer: a pure function of the request, so the same request always gets
//! the same answer, ids included.

use std::time::Duration;

use weir_model::raw::to_raw;
use weir_model::{
    ApiError, ChatRequest, ChatResponse, Content, ContentBlock, ErrorKind, FunctionTool,
    ProviderError, RawJson, Role, StopReason, TextBlock, Tool, ToolChoice, ToolInput, ToolUseBlock,
    Usage,
};

use crate::args::{arguments, Hints};

/// How much of the user's text, or of a tool result, an answer quotes (in characters).
const QUOTE_CHARS: usize = 200;
/// Appended to answers for users who ask for something "long", to fill a stream.
const LONG_SENTENCE: &str = "The mock model keeps talking so that there is plenty to stream.";
/// Roughly how many words (and so streamed chunks) a "long" answer has.
const LONG_WORDS: usize = 50;
const ERROR_MARKER: &str = "[mock:error:";
const ERROR_AFTER_FIRST_MARKER: &str = "[mock:error-after-first:";

/// One block of the answer.
#[derive(Clone, Debug)]
pub(crate) enum Block {
    /// Text.
    Text(String),
    /// A tool call; `input` is a compact JSON object.
    Tool {
        id: String,
        name: String,
        input: RawJson,
    },
}

/// The whole answer, before it is given as a response or a stream.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub id: String,
    pub model: String,
    pub blocks: Vec<Block>,
    pub stop_reason: StopReason,
    pub stop_sequence: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What to do with a request.
pub(crate) enum Plan {
    /// Fail at once.
    Fail(ProviderError),
    /// Answer; a stream fails after its first delta when `fail_after_first` is set.
    Answer {
        answer: Answer,
        fail_after_first: Option<ProviderError>,
    },
}

/// Decides the answer to `req`.
pub(crate) fn plan(req: &ChatRequest) -> Plan {
    if req.origin == Some(weir_model::Dialect::OpenAi) {
        if let Some(n) = req.extra.get("n").map(|n| n.get()) {
            if n != "1" && n != "null" {
                return Plan::Fail(ProviderError::from_api(
                    ApiError::new(
                        ErrorKind::InvalidRequest,
                        format!("the mock provider answers one choice; n = {n} is not supported"),
                    ),
                    None,
                ));
            }
        }
    }
    let user = last_user_text(req);
    if let Some(status) = marker(&user, ERROR_MARKER) {
        return Plan::Fail(mock_error(status));
    }
    let fail_after_first = marker(&user, ERROR_AFTER_FIRST_MARKER).map(mock_error);
    let hash = request_hash(req);

    let mut blocks = Vec::new();
    let (stop_reason, stop_sequence) = if let Some(summary) = tool_result_summary(req) {
        text_answer(summary, req, &mut blocks)
    } else {
        let tools = chosen_tools(req, &user);
        if tools.is_empty() {
            text_answer(echo(&user), req, &mut blocks)
        } else {
            let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
            blocks.push(Block::Text(format!("Calling {}.", names.join(", "))));
            let mut hints = Hints::new(&user);
            for (n, tool) in tools.iter().enumerate() {
                let input = arguments(tool.parameters.as_deref(), &mut hints);
                blocks.push(Block::Tool {
                    id: tool_id(hash, n, &tool.name),
                    name: tool.name.clone(),
                    input: to_raw(&input),
                });
            }
            (StopReason::ToolUse, None)
        }
    };

    let output_tokens = blocks
        .iter()
        .map(|b| match b {
            Block::Text(t) => words(t),
            Block::Tool { input, .. } => words(input.get()).max(1),
        })
        .sum::<usize>();
    Plan::Answer {
        answer: Answer {
            // In the client's own id style (the OpenAI SDKs show `chatcmpl-` ids).
            id: if req.origin == Some(weir_model::Dialect::OpenAi) {
                format!("chatcmpl-mock-{:016x}", mix(hash))
            } else {
                format!("msg_mock_{:016x}", mix(hash))
            },
            model: req.model.clone(),
            blocks,
            stop_reason,
            stop_sequence,
            input_tokens: input_tokens(req),
            output_tokens: output_tokens as u64,
        },
        fail_after_first,
    }
}

impl Answer {
    /// The answer as a complete response.
    pub(crate) fn to_response(&self) -> ChatResponse {
        let content = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Text(t) => ContentBlock::Text(TextBlock::new(t.as_str())),
                Block::Tool { id, name, input } => ContentBlock::ToolUse(ToolUseBlock {
                    id: id.clone(),
                    name: name.clone(),
                    input: ToolInput::Json(input.clone()),
                    cache_control: None,
                    extra: Default::default(),
                }),
            })
            .collect();
        ChatResponse {
            origin: None,
            id: self.id.clone(),
            model: self.model.clone(),
            content,
            stop_reason: Some(self.stop_reason.clone()),
            stop_sequence: self.stop_sequence.clone(),
            usage: Usage {
                input_tokens: Some(self.input_tokens),
                output_tokens: Some(self.output_tokens),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// What the user last typed: the last text block of the last user message (empty when
/// there is none). Clients such as Claude Code put system reminders in earlier blocks of
/// the same message; they are context, not the request.
fn last_user_text(req: &ChatRequest) -> String {
    req.messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .and_then(|m| {
            m.content.blocks.iter().rev().find_map(|b| match b {
                weir_model::ContentBlock::Text(t) => Some(t.text.as_str().into_owned()),
                _ => None,
            })
        })
        .unwrap_or_default()
}

/// The error an `[mock:error:<status>]` marker in `text` asks for.
pub(crate) fn error_marker(text: &str) -> Option<ProviderError> {
    marker(text, ERROR_MARKER).map(mock_error)
}

/// The status in a `<prefix><status>]` marker.
fn marker(text: &str, prefix: &str) -> Option<u16> {
    let start = text.find(prefix)? + prefix.len();
    let rest = &text[start..];
    rest[..rest.find(']')?].trim().parse().ok()
}

/// The error a marker asks for.
fn mock_error(status: u16) -> ProviderError {
    let api = ApiError {
        status,
        ..ApiError::new(
            ErrorKind::from_status(status),
            format!("mock error {status}"),
        )
    };
    let retry_after = (status == 429).then_some(Duration::from_secs(1));
    ProviderError::from_api(api, retry_after)
}

/// One line per tool result sent after the last assistant turn, if any.
fn tool_result_summary(req: &ChatRequest) -> Option<String> {
    let after = req
        .messages
        .iter()
        .rposition(|m| m.role == Role::Assistant)
        .map_or(0, |i| i + 1);
    let mut lines = Vec::new();
    for m in &req.messages[after..] {
        for b in &m.content.blocks {
            let ContentBlock::ToolResult(r) = b else {
                continue;
            };
            let name = tool_name(req, &r.tool_use_id).unwrap_or(&r.tool_use_id);
            let what = if r.is_error == Some(true) {
                "Tool error for"
            } else {
                "Tool result for"
            };
            let text = collapse(&r.content.joined_text(" "));
            let line = format!("{what} {name}: {}", clip(&text, QUOTE_CHARS));
            lines.push(line.trim_end().to_owned());
        }
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The name of the tool the assistant called with `id`.
fn tool_name<'a>(req: &'a ChatRequest, id: &str) -> Option<&'a str> {
    req.messages
        .iter()
        .flat_map(|m| &m.content.blocks)
        .find_map(|b| match b {
            ContentBlock::ToolUse(u) if u.id == id => Some(u.name.as_str()),
            _ => None,
        })
}

/// The function tools to call: those the user names, in declaration order, subject to
/// `tool_choice` and `parallel_tool_calls`.
fn chosen_tools<'a>(req: &'a ChatRequest, user: &str) -> Vec<&'a FunctionTool> {
    let functions = req.tools().iter().filter_map(|t| match t {
        Tool::Function(f) if !f.name.is_empty() => Some(f),
        _ => None,
    });
    let lower = user.to_lowercase();
    let mut chosen: Vec<&FunctionTool> = match &req.tool_choice {
        Some(ToolChoice::None) => return Vec::new(),
        Some(ToolChoice::Tool(name)) => functions.filter(|f| f.name == *name).take(1).collect(),
        _ => functions
            .filter(|f| lower.contains(&f.name.to_lowercase()))
            .collect(),
    };
    if chosen.is_empty() && matches!(req.tool_choice, Some(ToolChoice::Required)) {
        chosen.extend(req.tools().iter().find_map(|t| match t {
            Tool::Function(f) if !f.name.is_empty() => Some(f),
            _ => None,
        }));
    }
    if req.parallel_tool_calls == Some(false) {
        chosen.truncate(1);
    }
    chosen
}

/// The plain answer: an echo of the user, padded out when they ask for something long.
pub(crate) fn echo(user: &str) -> String {
    let mut text = format!("Mock reply to: {}", clip(&collapse(user), QUOTE_CHARS));
    let long = user
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case("long"));
    if long {
        while words(&text) < LONG_WORDS {
            text.push(' ');
            text.push_str(LONG_SENTENCE);
        }
    }
    text.trim_end().to_owned()
}

/// Pushes `text` as a text block, cut at the first stop sequence and at `max_tokens`
/// words, and returns the stop reason and the stop sequence that matched.
fn text_answer(
    mut text: String,
    req: &ChatRequest,
    blocks: &mut Vec<Block>,
) -> (StopReason, Option<String>) {
    let mut stop = (StopReason::EndTurn, None);
    let hit = req
        .stop
        .iter()
        .flat_map(|s| &s.sequences)
        .filter(|s| !s.is_empty());
    if let Some((at, seq)) = hit
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at)
    {
        text.truncate(at);
        stop = (StopReason::StopSequence, Some(seq.clone()));
    }
    if let Some(max) = req.max_tokens {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if words(&text) > max {
            let end = (0..max).fold(0, |pos, _| chunk_end(&text, pos));
            text.truncate(end);
            text.truncate(text.trim_end().len());
            stop = (StopReason::MaxTokens, None);
        }
    }
    if !text.trim().is_empty() {
        blocks.push(Block::Text(text));
    }
    stop
}

/// Where the streamed chunk starting at `pos` ends: after the next word and the
/// whitespace that follows it. Returns `pos` at the end of the text.
pub(crate) fn chunk_end(text: &str, pos: usize) -> usize {
    let mut in_word = false;
    let mut after_word = false;
    for (i, c) in text[pos..].char_indices() {
        if c.is_whitespace() {
            after_word |= in_word;
        } else if after_word {
            return pos + i;
        } else {
            in_word = true;
        }
    }
    text.len()
}

/// The mock's token count: whitespace-separated words.
pub(crate) fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Input tokens: words of the system prompt and all messages; never 0.
fn input_tokens(req: &ChatRequest) -> u64 {
    fn content(c: &Content) -> usize {
        c.blocks
            .iter()
            .map(|b| match b {
                ContentBlock::Text(t) => words(&t.text.as_str()),
                ContentBlock::Thinking(t) => words(&t.thinking.as_str()),
                ContentBlock::ToolUse(u) => 1 + words(&u.input.as_arguments()),
                ContentBlock::ToolResult(r) => 1 + content(&r.content),
                _ => 1,
            })
            .sum()
    }
    let n = req.system.as_ref().map_or(0, content)
        + req
            .messages
            .iter()
            .map(|m| content(&m.content))
            .sum::<usize>();
    n.max(1) as u64
}

/// Whitespace runs collapsed to single spaces.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first `n` characters of `s`.
fn clip(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// A tool call id: `toolu_mock_<n>_<8 hex>`.
fn tool_id(hash: u64, n: usize, name: &str) -> String {
    let mut h = Fnv::new();
    h.bytes(&hash.to_le_bytes());
    h.bytes(&(n as u64).to_le_bytes());
    h.str(name);
    format!("toolu_mock_{n}_{:08x}", mix(h.0) as u32)
}

/// A hash of everything in the request that shapes the answer (not `stream`, so a
/// streamed and a complete answer to the same request carry the same ids).
fn request_hash(req: &ChatRequest) -> u64 {
    let mut h = Fnv::new();
    h.str(&req.model);
    if let Some(system) = &req.system {
        h.str("system");
        h.content(system);
    }
    for m in &req.messages {
        h.str(m.role.as_str());
        h.content(&m.content);
    }
    for t in req.tools() {
        if let Tool::Function(f) = t {
            h.str(&f.name);
            h.str(f.parameters.as_ref().map_or("", |p| p.get()));
        }
    }
    match &req.tool_choice {
        Some(ToolChoice::None) => h.str("choice:none"),
        Some(ToolChoice::Required) => h.str("choice:required"),
        Some(ToolChoice::Tool(name)) => h.str(name),
        _ => {}
    }
    h.str(&format!(
        "{:?}/{:?}",
        req.max_tokens, req.parallel_tool_calls
    ));
    for s in req.stop.iter().flat_map(|s| &s.sequences) {
        h.str(s);
    }
    h.0
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike `DefaultHasher`.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// A string and a separator byte that UTF-8 never contains.
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
        self.bytes(&[0xff]);
    }

    fn content(&mut self, c: &Content) {
        for b in &c.blocks {
            self.str(b.type_name());
            match b {
                ContentBlock::Text(t) => self.str(&t.text.as_str()),
                ContentBlock::Thinking(t) => self.str(&t.thinking.as_str()),
                ContentBlock::ToolUse(u) => {
                    self.str(&u.id);
                    self.str(&u.name);
                    self.str(&u.input.as_arguments());
                }
                ContentBlock::ToolResult(r) => {
                    self.str(&r.tool_use_id);
                    self.content(&r.content);
                }
                _ => {}
            }
        }
    }
}

/// A finalizer (splitmix64's) so every output bit depends on every input bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_words_with_their_following_space() {
        let text = "one  two\nthree";
        let mut pos = 0;
        let mut chunks = Vec::new();
        while chunk_end(text, pos) > pos {
            let end = chunk_end(text, pos);
            chunks.push(&text[pos..end]);
            pos = end;
        }
        assert_eq!(chunks, ["one  ", "two\n", "three"]);
        assert_eq!(chunks.len(), words(text));
    }

    #[test]
    fn markers_carry_a_status() {
        assert_eq!(marker("x [mock:error:529] y", ERROR_MARKER), Some(529));
        assert_eq!(marker("[mock:error:abc]", ERROR_MARKER), None);
        assert_eq!(marker("[mock:error:429", ERROR_MARKER), None);
        assert_eq!(
            marker("[mock:error-after-first:500]", ERROR_AFTER_FIRST_MARKER),
            Some(500)
        );
        assert_eq!(marker("[mock:error-after-first:500]", ERROR_MARKER), None);
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("hi", 5), "hi");
    }

    #[test]
    fn long_answers_have_about_fifty_words() {
        let n = words(&echo("tell me a long story"));
        assert!((LONG_WORDS..LONG_WORDS + 12).contains(&n), "{n}");
        assert_eq!(words(&echo("a short one")), 6);
    }
}
