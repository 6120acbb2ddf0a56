//! Chat Completions streams: chunks to canonical frames (a state machine that opens and
//! closes blocks the way Anthropic streams do), and canonical frames back to chunks.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weir_model::{
    ContentBlock, Delta, Dialect, Frame, JsonStr, SourceEvent, StopReason, StreamEvent, TextBlock,
    ThinkingBlock, ToolInput, ToolUseBlock, Usage, WireError,
};
use weir_sse::Event;

use crate::args_check::ArgsCheck;
use crate::error::{api_error_from_value, openai_error_body};
use crate::response::{now_secs, OUsage, UsageOut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Text(u32),
    Thinking(u32),
    Tool(u32),
}

impl Open {
    fn index(self) -> u32 {
        match self {
            Open::Text(i) | Open::Thinking(i) | Open::Tool(i) => i,
        }
    }
}

/// Turns an upstream's Chat Completions SSE events into canonical frames.
///
/// Blocks open when their first fragment arrives and close when another kind of content
/// starts or the choice finishes. The stop reason and usage go out together as one
/// `MessageDelta`: when the upstream sends usage in a separate final chunk (as it does
/// with `include_usage`), the delta waits for it, or for `[DONE]`.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    open: Option<Open>,
    next_index: u32,
    /// OpenAI tool-call index -> canonical block index.
    tools: Vec<(u32, u32)>,
    /// Tool calls by id, for servers that leave `index` out: OpenAI index (given or
    /// assigned) per id.
    tool_ids: Vec<(String, u32)>,
    /// Calls given neither index nor id that were told apart so far.
    anonymous: u32,
    /// Whitespace text pieces before any text block opened (see `content`).
    blank: Vec<JsonStr>,
    /// OpenAI indexes a server gave again to a new call (a new id and a name at an index
    /// another call holds: servers that number every parallel call 0), as (index given,
    /// index the newest call there was assigned).
    reused: Vec<(u32, u32)>,
    /// What could not open yet, in arrival order: a tool call whose name has not come
    /// (its block cannot open nameless), and the calls, text and reasoning that came
    /// behind it or while the open call's arguments were incomplete (a server that
    /// interleaves parallel calls' fragments, or sends text amid a call, would otherwise
    /// have deltas sent to a block already closed). They open in order once what is before
    /// them is complete, and all of them when the choice ends.
    pending: Vec<Waiting>,
    /// The open tool call's arguments so far (only what continues a JSON object goes on).
    open_args: ArgsCheck,
    stop: Option<StopReason>,
    usage: Option<Usage>,
    delta_sent: bool,
    done: bool,
    /// Pages cited (`url_citation` annotations) not yet told: as citations of the text
    /// block open when it closes (its span: the stream's text went out before them).
    cited: Vec<weir_model::web_search::Page>,
    /// Every page cited, told as a web search before the message ends.
    searched: Vec<weir_model::web_search::Page>,
    /// The stream's id once it cites pages (for the search blocks' ids), and the searches
    /// told.
    message_id: String,
    searches: u32,
    /// An error event ended the stream.
    failed: bool,
    /// Choices past the first (`n` > 1, passed through) begun and not yet finished: a
    /// stream that ends with one of them unfinished was cut short.
    others_open: Vec<u32>,
    /// The model refused (`delta.refusal`): a plain stop is then a refusal stop.
    refused: bool,
    /// `reasoning_details` (OpenRouter) received and not yet given to a thinking block,
    /// its streamed pieces joined (see [`merge_details`]).
    details: Vec<serde_json::Value>,
    /// What precedes `"choices"` in the last chunk the fast path read (id, object,
    /// created, model...), checked to hold no usage or error: the chunks of a stream repeat
    /// it byte for byte, so the next one need not be searched.
    head: String,
}

/// Content that could not open yet.
#[derive(Debug)]
enum Waiting {
    Tool(PendingTool),
    Text(Vec<JsonStr>),
    Thinking(Vec<JsonStr>),
}

/// A tool call not opened yet.
#[derive(Debug)]
struct PendingTool {
    index: u32,
    id: Option<String>,
    name: Option<String>,
    args: Vec<JsonStr>,
}

/// A chunk the fast path read.
#[derive(Debug)]
enum Fast<'d> {
    /// One piece of text.
    Text(JsonStr),
    /// The choice finished (for this reason), with nothing else in the chunk.
    Finish(&'d str),
}

#[derive(Deserialize)]
struct Chunk<'a> {
    // Borrowed: most chunks repeat them and only the first one's are kept.
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    model: Cow<'a, str>,
    #[serde(default, borrow)]
    choices: Option<Vec<ChunkChoice<'a>>>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    x_groq: Option<XGroq<'a>>,
}

#[derive(Deserialize)]
struct XGroq<'a> {
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow)]
    delta: Option<ChunkDelta<'a>>,
    finish_reason: Option<String>,
    /// Why the answer failed (OpenRouter, with `finish_reason` `error`).
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChunkDelta<'a> {
    content: Option<DeltaContent>,
    reasoning_content: Option<JsonStr>,
    /// Groq, OpenRouter and Ollama name it `reasoning`.
    reasoning: Option<JsonStr>,
    /// OpenRouter's reasoning as items (signatures, encrypted reasoning).
    #[serde(borrow)]
    reasoning_details: Option<&'a RawValue>,
    refusal: Option<JsonStr>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
    /// Pages a web search found (`url_citation`s: OpenRouter's web plugin).
    #[serde(borrow)]
    annotations: Option<&'a RawValue>,
}

/// A delta's `content`: a string (nearly always), or an array of parts (Mistral's
/// reasoning models stream thinking and text parts), read as its pieces, each with whether
/// it is reasoning.
enum DeltaContent {
    Text(JsonStr),
    Parts(Vec<(bool, JsonStr)>),
}

impl<'de> Deserialize<'de> for DeltaContent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let read = if raw.get().starts_with('"') {
            JsonStr::from_raw(raw).map(DeltaContent::Text)
        } else {
            crate::parts::pieces_of_parts(&raw).map(DeltaContent::Parts)
        };
        read.ok_or_else(|| {
            serde::de::Error::custom("content: expected a string or an array of content parts")
        })
    }
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    index: Option<u32>,
    id: Option<String>,
    #[serde(borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient_arguments")]
    arguments: Option<JsonStr>,
    #[serde(skip)]
    _borrow: std::marker::PhantomData<&'a ()>,
}

/// A call's `arguments` fragment: a string, as OpenAI sends it, or (llama.cpp's server,
/// some relays) the arguments as a JSON object, read as its text, as a whole answer's are.
fn lenient_arguments<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<JsonStr>, D::Error> {
    let raw = <&serde_json::value::RawValue>::deserialize(d)?;
    match raw.get().as_bytes().first() {
        Some(b'"') => JsonStr::from_raw_ref(raw)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("invalid arguments string")),
        _ if raw.get() == "null" => Ok(None),
        _ => Ok(Some(JsonStr::new(raw.get()))),
    }
}

impl StreamDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    /// Decodes one SSE event.
    pub fn decode(&mut self, event: Event) -> Result<Frame, WireError> {
        let data = event.data();
        let mut events = Vec::new();
        let was_cut = self.cut_short();
        if !self.started && !self.failed && data.trim_end() == "[DONE]" {
            // `[DONE]` before any chunk: a 200 stream with no answer in it.
            return Err(WireError::Malformed(
                "stream ended before any chunk arrived".into(),
            ));
        }
        if !self.relay(data, &mut events) {
            let chunk: Chunk<'_> =
                serde_json::from_str(data).map_err(|e| WireError::from_json("stream chunk", &e))?;
            self.chunk(chunk, &mut events)?;
        }
        // A chunk cut short for lack of capacity goes to OpenAI clients as the error it
        // became, not as the finish chunk it was (a relayed source hides its events).
        let cut = !was_cut && self.cut_short();
        Ok(Frame {
            events,
            source: (!cut).then(|| SourceEvent::new(Dialect::OpenAi, event)),
        })
    }

    /// Whether the upstream cut the answer short for lack of capacity.
    fn cut_short(&self) -> bool {
        crate::cut_short(&self.stop)
    }

    /// Reads `[DONE]` and the chunks the fast path reads in full (text, finish), pushing
    /// their events to `out`; `false` (nothing read) for any other chunk. The SSE reader
    /// relays these without decoding their framing, and [`StreamDecoder::decode`] tries
    /// them first.
    pub fn relay(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> bool {
        if data.trim_end() == "[DONE]" {
            if !self.started && !self.failed {
                // No answer at all: `decode` says so.
                return false;
            }
            self.finish_into(out);
            return true;
        }
        match self.fast(data) {
            Some(Fast::Text(text)) => {
                self.content(Open::Text, text, out);
                true
            }
            // Not relayed: its frame must carry the error (see `decode`).
            Some(Fast::Finish(reason)) if crate::failed(reason) => false,
            Some(Fast::Finish(reason)) => {
                // What the general path does with `"delta":{}` and a finish reason.
                self.close(out);
                self.finish_reason(reason, None, out);
                if self.usage.is_some() && !self.delta_sent {
                    self.message_delta(out);
                }
                true
            }
            None => false,
        }
    }

    /// Most chunks of a stream carry one piece of text in exactly OpenAI's shape, and one
    /// says the choice finished. Those are read without a JSON parser: the text token is
    /// located and validated, and everything around it must be what such a chunk holds (no
    /// usage, error, tool call or other choice). Anything else returns `None` and goes
    /// through the general decoder.
    fn fast<'d>(&mut self, data: &'d str) -> Option<Fast<'d>> {
        if !self.started || self.failed || self.done {
            return None;
        }
        let rest = self.after_head(data)?;
        if let Some(rest) = rest.strip_prefix(r#"{"content":"#) {
            let (token, tail) = weir_model::wire::split_string_token(rest)?;
            if token.len() == 2 {
                // Empty text opens no block; the general path skips it.
                return None;
            }
            let tail = choice_rest(tail.strip_prefix('}')?, None)?;
            if !chunk_end(tail) {
                return None;
            }
            return JsonStr::from_token(token).map(Fast::Text);
        }
        let rest = rest.strip_prefix("{}")?;
        let mut reason = None;
        let tail = choice_rest(rest, Some(&mut reason))?;
        let reason = reason?;
        let plain =
            !reason.is_empty() && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        (plain && chunk_end(tail)).then_some(Fast::Finish(reason))
    }

    /// What follows `"delta":` in a chunk whose head (everything before `"choices"`) holds
    /// no usage or error and whose first choice has index 0.
    fn after_head<'d>(&mut self, data: &'d str) -> Option<&'d str> {
        // The mark has no proper prefix that is also its suffix, so its first occurrence
        // is right after a head that held none.
        const MARK: &str = r#","choices":[{"index":0,"delta":"#;
        if !self.head.is_empty() {
            if let Some(rest) = data
                .strip_prefix(self.head.as_str())
                .and_then(|r| r.strip_prefix(MARK))
            {
                return Some(rest);
            }
        }
        // Searchers built once: building one per chunk cost more than the search.
        static FINDERS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 3]> =
            std::sync::LazyLock::new(|| {
                [
                    memchr::memmem::Finder::new(MARK),
                    memchr::memmem::Finder::new(r#""usage""#),
                    memchr::memmem::Finder::new(r#""error""#),
                ]
            });
        let [mark, usage, error] = &*FINDERS;
        let at = mark.find(data.as_bytes())?;
        let head = &data[..at];
        if !head.starts_with('{')
            || usage.find(head.as_bytes()).is_some()
            || error.find(head.as_bytes()).is_some()
        {
            return None;
        }
        self.head.clear();
        self.head.push_str(head);
        Some(&data[at + MARK.len()..])
    }

    /// The stream ended without `[DONE]`. If the choice had finished, the message is
    /// completed; otherwise the stream was cut short and that is an error.
    pub fn finish(&mut self) -> Result<Frame, WireError> {
        let mut events = Vec::new();
        if self.done || self.failed {
            return Ok(Frame::from_events(events));
        }
        if !self.started {
            // An empty 200 stream (or a JSON body to a streamed request) is no answer.
            return Err(WireError::Malformed(
                "stream ended before any chunk arrived".into(),
            ));
        }
        if (self.stop.is_none() && !self.delta_sent) || !self.others_open.is_empty() {
            return Err(WireError::Malformed(
                "stream ended before the response finished".into(),
            ));
        }
        self.finish_into(&mut events);
        Ok(Frame::from_events(events))
    }

    fn chunk(&mut self, c: Chunk<'_>, out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        if let Some(err) = c.error {
            let v: serde_json::Value = serde_json::from_str(err.get()).unwrap_or_default();
            out.push(StreamEvent::Error(api_error_from_value(None, &v)));
            self.failed = true;
            return Ok(());
        }
        // Azure OpenAI opens with a chunk holding only `prompt_filter_results` (empty id,
        // model and choices): nothing has started yet.
        if !self.started
            && c.choices.as_ref().is_some_and(Vec::is_empty)
            && c.usage.is_none()
            && c.x_groq.is_none()
        {
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::MessageStart {
                id: c.id.to_string(),
                model: c.model.into_owned(),
                usage: Usage::default(),
            });
        }
        for choice in c.choices.unwrap_or_default() {
            if choice.index != 0 {
                // Canonical streams carry one choice; `n > 1` streams are only passed
                // through to OpenAI clients (via the frame's source).
                let open = self.others_open.iter().position(|&i| i == choice.index);
                match (open, choice.finish_reason.is_some()) {
                    (None, false) => self.others_open.push(choice.index),
                    (Some(at), true) => {
                        self.others_open.swap_remove(at);
                    }
                    _ => {}
                }
                continue;
            }
            if let Some(d) = choice.delta {
                if let Some(r) = d
                    .reasoning_content
                    .or(d.reasoning)
                    .filter(|s| !s.is_empty())
                {
                    self.content(Open::Thinking, r, out);
                }
                if let Some(d) = d.reasoning_details {
                    if let Ok(items) = serde_json::from_str::<Vec<serde_json::Value>>(d.get()) {
                        merge_details(&mut self.details, items);
                    }
                    // Before any content (encrypted reasoning alone): a thinking block opens
                    // for them now, so it comes first, as in a whole answer.
                    if self.open.is_none() && self.pending.is_empty() && !self.details.is_empty() {
                        self.open_content(Open::Thinking, Vec::new(), out);
                    }
                }
                self.refused |= d.refusal.as_ref().is_some_and(|r| !r.is_empty());
                match d.content {
                    Some(DeltaContent::Text(text)) if !text.is_empty() => {
                        self.content(Open::Text, text, out);
                    }
                    Some(DeltaContent::Parts(pieces)) => {
                        for (thinking, piece) in pieces.into_iter().filter(|p| !p.1.is_empty()) {
                            let kind: fn(u32) -> Open =
                                if thinking { Open::Thinking } else { Open::Text };
                            self.content(kind, piece, out);
                        }
                    }
                    _ => {}
                }
                if let Some(refusal) = d.refusal.filter(|r| !r.is_empty()) {
                    self.content(Open::Text, refusal, out);
                }
                for (position, tc) in d.tool_calls.unwrap_or_default().into_iter().enumerate() {
                    self.tool_delta(tc, position, out);
                }
                if let Some(a) = d.annotations {
                    // (The id, for the search's, taken only by a stream that searched.)
                    if self.message_id.is_empty() {
                        self.message_id = c.id.to_string();
                    }
                    for c in crate::response::url_citation_annotations(a) {
                        if !self.cited.contains(&c.page) {
                            self.cited.push(c.page.clone());
                        }
                        if !self.searched.contains(&c.page) {
                            self.searched.push(c.page);
                        }
                    }
                }
            }
            if let Some(fr) = choice.finish_reason {
                self.close(out);
                self.finish_reason(&fr, choice.error, out);
            }
        }
        let usage = c
            .usage
            .or(c.x_groq.and_then(|x| x.usage))
            .filter(|u| u.get() != "null");
        if let Some(u) = usage {
            let u: OUsage =
                serde_json::from_str(u.get()).map_err(|e| WireError::from_json("usage", &e))?;
            self.usage = Some(u.0);
        }
        if self.stop.is_some() && self.usage.is_some() && !self.delta_sent {
            self.message_delta(out);
        }
        Ok(())
    }

    /// The OpenAI index of a fragment. Servers that leave `index` out (Ollama's several
    /// calls in one chunk) are read by id: a new id is a new call, no id continues the last.
    fn tool_index(&mut self, tc: &ToolCallDelta<'_>, position: usize) -> u32 {
        if let Some(given) = tc.index {
            let current = self
                .reused
                .iter()
                .rev()
                .find(|(g, _)| *g == given)
                .map_or(given, |&(_, a)| a);
            let named = tc.function.as_ref().is_some_and(|f| f.name.is_some());
            let Some(id) = &tc.id else {
                // No id: a fragment naming a tool after the call here is whole starts
                // another call (servers that number every call 0 and send no ids).
                if named && self.call_whole(current) && self.holds(current) {
                    let i = 3_000_000 + self.reused.len() as u32;
                    self.reused.push((given, i));
                    return i;
                }
                return current;
            };
            if let Some(&(_, known)) = self.tool_ids.iter().find(|(k, _)| k == id) {
                return known;
            }
            // Another call's id at this index: a new call if the fragment names its tool
            // or opens with its id alone (a new call's first fragment does one or the
            // other), else a server that changes ids midway through a call's arguments.
            let args = tc
                .function
                .as_ref()
                .and_then(|f| f.arguments.as_ref())
                .is_some_and(|a| !a.is_empty());
            let held = self.tool_ids.iter().any(|&(_, a)| a == current) || self.holds(current);
            let i = if held && (named || !args) {
                // Past any index a server could give, or that is assigned otherwise.
                let i = 3_000_000 + self.reused.len() as u32;
                self.reused.push((given, i));
                i
            } else {
                current
            };
            self.tool_ids.push((id.clone(), i));
            return i;
        }
        match &tc.id {
            Some(id) => match self.tool_ids.iter().find(|(known, _)| known == id) {
                Some((_, i)) => *i,
                None => {
                    // Past any index a server could give alongside.
                    let i = 1_000_000 + self.tool_ids.len() as u32 + position as u32;
                    self.tool_ids.push((id.clone(), i));
                    i
                }
            },
            // The newest call (calls open in the order they started), unless the fragment
            // names a tool and that call's arguments are whole: then it starts another
            // (servers that send each call in its own chunk with neither index nor id).
            None => {
                let newest = self
                    .pending
                    .iter()
                    .rev()
                    .find_map(|w| match w {
                        Waiting::Tool(p) => Some(p.index),
                        _ => None,
                    })
                    .or_else(|| self.tools.last().map(|(oi, _)| *oi));
                let named = tc.function.as_ref().is_some_and(|f| f.name.is_some());
                match newest {
                    Some(i) if named && self.call_whole(i) => {
                        // Past any index a server could give, and any assigned by id.
                        self.anonymous += 1;
                        2_000_000 + self.anonymous
                    }
                    Some(i) => i,
                    None => position as u32,
                }
            }
        }
    }

    /// Whether a call has this OpenAI index already (opened or waiting).
    fn holds(&self, index: u32) -> bool {
        self.tools.iter().any(|(i, _)| *i == index)
            || self
                .pending
                .iter()
                .any(|w| matches!(w, Waiting::Tool(p) if p.index == index))
    }

    /// Whether the call with this OpenAI index has its name and whole arguments (a closed
    /// call's are, as far as this stream goes).
    fn call_whole(&self, index: u32) -> bool {
        if let Some(&(_, bi)) = self.tools.iter().find(|(i, _)| *i == index) {
            return self.open != Some(Open::Tool(bi)) || self.open_args.whole();
        }
        self.pending.iter().any(|w| match w {
            Waiting::Tool(p) if p.index == index && p.name.is_some() => {
                let mut check = ArgsCheck::default();
                for a in &p.args {
                    check.feed(&a.as_str());
                }
                check.whole()
            }
            _ => false,
        })
    }

    fn tool_delta(
        &mut self,
        mut tc: ToolCallDelta<'_>,
        position: usize,
        out: &mut Vec<StreamEvent>,
    ) {
        // An empty id is no id (a block gets one of its own).
        tc.id = tc.id.filter(|id| !id.is_empty());
        let oi = self.tool_index(&tc, position);
        let (name, args) = match tc.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let args = args.filter(|a| !a.is_empty());
        if let Some(bi) = self.tools.iter().find(|(i, _)| *i == oi).map(|(_, bi)| *bi) {
            if self.open == Some(Open::Tool(bi)) {
                if let Some(a) = args {
                    self.push_args(bi, a, out);
                }
                self.advance(out);
            }
            // Otherwise the call's block was closed, which happens once its arguments were
            // whole (or the choice ended): nothing after them can belong to them.
            return;
        }
        let at = self
            .pending
            .iter()
            .position(|w| matches!(w, Waiting::Tool(p) if p.index == oi));
        let at = match at {
            Some(at) => at,
            None => {
                self.pending.push(Waiting::Tool(PendingTool {
                    index: oi,
                    id: None,
                    name: None,
                    args: Vec::new(),
                }));
                self.pending.len() - 1
            }
        };
        let Waiting::Tool(p) = &mut self.pending[at] else {
            // (`at` was found or pushed as a tool call just above.)
            return;
        };
        if p.id.is_none() {
            p.id = tc.id;
        }
        if p.name.is_none() {
            p.name = name;
        }
        p.args.extend(args);
        self.advance(out);
    }

    /// A piece of text or reasoning: to its block, or behind what waits.
    fn content(&mut self, kind: fn(u32) -> Open, piece: JsonStr, out: &mut Vec<StreamEvent>) {
        if self.pending.is_empty() && self.open_done() {
            // Whitespace before any text (models write "\n\n" before tool calls) opens no
            // block until text follows: Anthropic refuses a text block of whitespace alone
            // when a client sends the turn back.
            let text = matches!(kind(0), Open::Text(_));
            if text && !matches!(self.open, Some(Open::Text(_))) {
                if piece.as_str().trim().is_empty() {
                    self.blank.push(piece);
                    return;
                }
                let mut pieces = std::mem::take(&mut self.blank);
                pieces.push(piece);
                self.open_content(kind, pieces, out);
                return;
            }
            self.open_content(kind, vec![piece], out);
            return;
        }
        match (kind(0), self.pending.last_mut()) {
            (Open::Text(_), Some(Waiting::Text(pieces)))
            | (Open::Thinking(_), Some(Waiting::Thinking(pieces))) => pieces.push(piece),
            (Open::Thinking(_), _) => self.pending.push(Waiting::Thinking(vec![piece])),
            _ => self.pending.push(Waiting::Text(vec![piece])),
        }
    }

    /// Whether the open block may be closed for the next: it is not a tool call whose
    /// arguments are still coming.
    fn open_done(&self) -> bool {
        !matches!(self.open, Some(Open::Tool(_))) || self.open_args.whole()
    }

    /// Opens what waits, in order, while its turn has come: the first waiting, once the
    /// open block is done and (a call) its name is known.
    fn advance(&mut self, out: &mut Vec<StreamEvent>) {
        while self.open_done() {
            let ready = match self.pending.first() {
                Some(Waiting::Tool(p)) => p.name.is_some(),
                Some(_) => true,
                None => false,
            };
            if !ready {
                return;
            }
            let w = self.pending.remove(0);
            self.open_waiting(w, out);
        }
    }

    fn open_waiting(&mut self, w: Waiting, out: &mut Vec<StreamEvent>) {
        match w {
            Waiting::Tool(p) => self.open_held(p, out),
            Waiting::Text(pieces) => self.open_content(Open::Text, pieces, out),
            Waiting::Thinking(pieces) => self.open_content(Open::Thinking, pieces, out),
        }
    }

    /// Text or reasoning into its block: the open one if it is of that kind, else a new
    /// one (closing the open block).
    fn open_content(
        &mut self,
        kind: fn(u32) -> Open,
        pieces: Vec<JsonStr>,
        out: &mut Vec<StreamEvent>,
    ) {
        let index = match self.open {
            Some(o) if o == kind(o.index()) => o.index(),
            _ => {
                self.close_open(out);
                if matches!(kind(0), Open::Text(_)) {
                    // The search that found the pages cited comes before the text, as
                    // Claude's does (OpenRouter sends the pages first).
                    self.tell_search(out);
                }
                let i = self.next_index;
                self.next_index += 1;
                self.open = Some(kind(i));
                out.push(StreamEvent::BlockStart {
                    index: i,
                    block: match kind(i) {
                        Open::Thinking(_) => ContentBlock::Thinking(ThinkingBlock::default()),
                        _ => ContentBlock::Text(TextBlock::default()),
                    },
                });
                i
            }
        };
        for piece in pieces {
            out.push(StreamEvent::BlockDelta {
                index,
                delta: match kind(0) {
                    Open::Thinking(_) => Delta::Thinking(piece),
                    _ => Delta::Text(piece),
                },
            });
        }
    }

    /// Opens a tool call's block (closing the one open), with the arguments that came
    /// before it could open.
    fn open_held(&mut self, held: PendingTool, out: &mut Vec<StreamEvent>) {
        // (Whitespace before a call is not text.)
        self.blank.clear();
        self.close_open(out);
        let bi = self.next_index;
        self.next_index += 1;
        self.tools.push((held.index, bi));
        self.open = Some(Open::Tool(bi));
        self.open_args = ArgsCheck::default();
        // Some compatible servers omit ids: one of our own, unique (not `call_{index}`,
        // which the next turn's calls would repeat: a conversation with two tool calls of
        // one id is refused by Anthropic when it is sent there).
        let id = held.id.unwrap_or_else(|| weir_model::generated_id("call_"));
        out.push(StreamEvent::BlockStart {
            index: bi,
            block: ContentBlock::ToolUse(ToolUseBlock {
                id,
                name: held.name.unwrap_or_default(),
                input: ToolInput::Arguments(String::new()),
                cache_control: None,
                extra: weir_model::Extra::new(),
            }),
        });
        for a in held.args {
            self.push_args(bi, a, out);
        }
    }

    /// A fragment of the open call's arguments, as far as it continues a JSON object: a
    /// fragment that breaks it is cut there, and nothing after it goes on (the client gets
    /// the valid beginning, which it reads, instead of input it fails on). Whitespace
    /// before the object is left out: Anthropic's SDKs parse the input received so far
    /// at each delta, and fail on input that is only whitespace.
    fn push_args(&mut self, index: u32, a: JsonStr, out: &mut Vec<StreamEvent>) {
        let text = a.as_str();
        let lead = if self.open_args.before_object() {
            text.len() - text.trim_start_matches([' ', '\t', '\n', '\r']).len()
        } else {
            0
        };
        let ok = self.open_args.feed(&text);
        let delta = if ok == text.len() && lead == 0 {
            drop(text);
            a
        } else {
            match text.get(lead.min(ok)..ok).filter(|p| !p.is_empty()) {
                Some(prefix) => JsonStr::from_unescaped(prefix),
                None => return,
            }
        };
        out.push(StreamEvent::BlockDelta {
            index,
            delta: Delta::InputJson(delta),
        });
    }

    /// Closes the open block, then opens what still waits, in order (a call whose name
    /// never came opens nameless rather than being lost), and closes the last.
    /// The choice's `finish_reason`. DeepSeek's `insufficient_system_resource` (the
    /// service ran out of capacity mid-answer) is an overloaded error, which clients
    /// retry, not a stop: the answer is cut short; so is OpenRouter's `error` (its
    /// provider failed mid-answer, as the choice's `error` says).
    fn finish_reason(
        &mut self,
        reason: &str,
        error: Option<&RawValue>,
        out: &mut Vec<StreamEvent>,
    ) {
        if crate::failed(reason) {
            out.push(StreamEvent::Error(crate::cut_short_error(reason, error)));
        }
        self.stop = Some(StopReason::from_openai(reason));
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        for w in std::mem::take(&mut self.pending) {
            self.open_waiting(w, out);
        }
        self.close_open(out);
        if !self.details.is_empty() && self.tools.is_empty() {
            // Details that came after the answer's text: a turn without tool calls needs
            // no reasoning back, and a thinking block after the text would end the
            // message (Claude Code reads its last block as the answer).
            self.details.clear();
        }
        if !self.details.is_empty() {
            // Details that came after a tool call opened: a thinking block of their own
            // after it, so they come back with the turn (Gemini's thought signatures are
            // required on a tool turn).
            let i = self.next_index;
            self.next_index += 1;
            out.push(StreamEvent::BlockStart {
                index: i,
                block: ContentBlock::Thinking(ThinkingBlock::default()),
            });
            self.open = Some(Open::Thinking(i));
            self.close_open(out);
        }
    }

    fn close_open(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some(Open::Text(i)) = self.open {
            for p in std::mem::take(&mut self.cited) {
                out.push(StreamEvent::BlockDelta {
                    index: i,
                    delta: Delta::Unknown {
                        dialect: Dialect::Anthropic,
                        raw: weir_model::raw::to_raw(&weir_model::web_search::citations_delta(
                            &p, "",
                        )),
                    },
                });
            }
        }
        if let Some(o) = self.open.take() {
            if matches!(o, Open::Thinking(_)) && !self.details.is_empty() {
                let details = serde_json::Value::Array(std::mem::take(&mut self.details));
                out.push(StreamEvent::BlockDelta {
                    index: o.index(),
                    delta: Delta::Signature(format!(
                        "{}{details}",
                        crate::REASONING_DETAILS_SIGNATURE
                    )),
                });
            }
            out.push(StreamEvent::BlockStop { index: o.index() });
        }
    }

    /// The web search that found the pages cited so far, as its two blocks (the upstream
    /// names no query); none when no page was cited.
    fn tell_search(&mut self, out: &mut Vec<StreamEvent>) {
        let pages = std::mem::take(&mut self.searched);
        if pages.is_empty() {
            return;
        }
        self.close_open(out);
        let id = weir_model::web_search::search_id(&self.message_id, self.searches);
        self.searches += 1;
        let [call, result] = weir_model::web_search::search_blocks(&id, "", &pages, true);
        for (block, input) in [(call, true), (result, false)] {
            let i = self.next_index;
            self.next_index += 1;
            out.push(StreamEvent::BlockStart { index: i, block });
            if input {
                out.push(StreamEvent::BlockDelta {
                    index: i,
                    delta: Delta::InputJson(JsonStr::new(
                        &weir_model::web_search::search_input("").to_string(),
                    )),
                });
            }
            out.push(StreamEvent::BlockStop { index: i });
        }
    }

    fn message_delta(&mut self, out: &mut Vec<StreamEvent>) {
        // Pages cited after the text began.
        self.tell_search(out);
        self.delta_sent = true;
        let called = !self.tools.is_empty();
        let stop_reason = match &self.stop {
            Some(StopReason::EndTurn) if self.refused => Some(StopReason::Refusal),
            // Ollama, vLLM and Gemini's OpenAI endpoint say `stop` after tool calls; a
            // client's agent loop waits for a tool-use stop to run them.
            Some(StopReason::EndTurn) if called => Some(StopReason::ToolUse),
            // So do others, with their own reasons (Together's `eos`).
            Some(StopReason::Other(s)) if called && s != "function_call" && !crate::failed(s) => {
                Some(StopReason::ToolUse)
            }
            // `[DONE]` with no finish reason at all: the answer ended as it was.
            None if called => Some(StopReason::ToolUse),
            None => Some(StopReason::EndTurn),
            other => other.clone(),
        };
        out.push(StreamEvent::MessageDelta {
            stop_reason,
            stop_sequence: None,
            usage: self.usage.clone().unwrap_or_default(),
        });
    }

    fn finish_into(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.done = true;
        if !self.started {
            return;
        }
        self.close(out);
        if !self.delta_sent {
            self.message_delta(out);
        }
        out.push(StreamEvent::MessageStop);
    }
}

/// Adds `reasoning_details` items to those received: a piece that continues the last item
/// (same type and index) is joined to it (its text, summary or data appended, its other
/// fields, such as the signature, set); anything else is a new item.
pub(crate) fn merge_details(into: &mut Vec<serde_json::Value>, items: Vec<serde_json::Value>) {
    use serde_json::Value;
    for item in items {
        let Value::Object(new) = item else {
            continue;
        };
        if let Some(Value::Object(last)) = into.last_mut() {
            if last.get("type") == new.get("type") && last.get("index") == new.get("index") {
                for (k, v) in new {
                    match (last.get_mut(&k), v) {
                        (_, Value::Null) => {}
                        (Some(Value::String(s)), Value::String(more))
                            if matches!(k.as_str(), "text" | "summary" | "data") =>
                        {
                            s.push_str(&more);
                        }
                        (_, v) => {
                            last.insert(k, v);
                        }
                    }
                }
                continue;
            }
        }
        into.push(Value::Object(new));
    }
}

/// Whether a frame is an OpenAI upstream's usage-only chunk: `choices` empty (however
/// spaced) and a `usage` that is not `null`, the chunk `stream_options.include_usage` asks
/// for, which a client that did not ask for it must not get (the gateway asks for it to
/// count tokens). Azure's opening `prompt_filter_results` chunk also has no choices, but no
/// usage: it is not one.
pub fn is_usage_only_chunk(f: &Frame) -> bool {
    // Built once: building a searcher per event cost more than the search.
    static CHOICES: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(r#""choices""#));
    static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(r#""usage""#));
    let Some(src) = f.source.as_ref().filter(|s| s.dialect == Dialect::OpenAi) else {
        return false;
    };
    let data = src.event.data().as_bytes();
    let after = |finder: &memchr::memmem::Finder<'_>| -> Option<&[u8]> {
        let at = finder.find(data)? + finder.needle().len();
        let rest = data[at..].trim_ascii_start().strip_prefix(b":")?;
        Some(rest.trim_ascii_start())
    };
    let empty_choices = after(&CHOICES)
        .and_then(|r| r.strip_prefix(b"["))
        .is_some_and(|r| r.trim_ascii_start().starts_with(b"]"));
    empty_choices && after(&USAGE).is_some_and(|r| !r.starts_with(b"null"))
}

/// Options for writing a stream to an OpenAI client.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamEncodeOptions {
    /// The client asked for `stream_options.include_usage`: end with a usage chunk. When
    /// it did not, an OpenAI upstream's own usage-only chunk (asked for to count tokens) is
    /// not passed on either (usage on a chunk that also has choices goes as it came).
    pub include_usage: bool,
    /// `created` for every chunk (unix seconds); the current time when `None`.
    pub created: Option<u64>,
}

/// Writes canonical frames as a Chat Completions SSE stream for an OpenAI client.
///
/// Frames that came from an OpenAI upstream are written as received. Frames from other
/// dialects become chunks: the role in the first, tool id and name in each call's first
/// fragment, the finish reason in its own chunk, a `choices: []` usage chunk if asked,
/// and `[DONE]`.
///
/// Chunks are written directly as bytes: everything but the delta is the same in every
/// chunk of a stream, so it is rendered once, and text arrives as JSON string tokens that
/// are copied, not re-escaped.
#[derive(Debug)]
pub struct StreamEncoder {
    opts: StreamEncodeOptions,
    id: String,
    model: String,
    created: u64,
    /// `{"id":...,"model":...,"choices":[{"index":0,"delta":` for this stream.
    prefix: Vec<u8>,
    /// Canonical block index -> (OpenAI tool-call index, whether arguments were sent, the
    /// arguments the block's start carried, as a JSON string token, if any).
    tools: Vec<(u32, u32, bool, Option<String>)>,
    usage: Usage,
    done: bool,
    /// Characters of content written so far, where citations' `url_citation` annotations
    /// point.
    chars: usize,
    /// The open text block's index, the character it starts at, and the web pages it
    /// cites (Anthropic's `citations_delta`), written as annotations when it stops.
    citing: Option<(u32, usize, Vec<crate::response::Citation>)>,
    /// The `url_citation` annotations of the blocks that stopped, written in one chunk
    /// before the finish, as OpenAI sends them (its SDK's stream helper cannot merge a
    /// second annotations chunk: list deltas must carry an `index`).
    notes: Vec<serde_json::Value>,
    /// The upstream speaks OpenAI too: its chunks go out as they came, so a closing frame
    /// the decoder makes itself (the upstream ended without `[DONE]`) only owes `[DONE]`;
    /// its finish and usage were in the upstream's own chunks.
    passthrough: bool,
    /// The signature of the empty thinking block just before (Gemini's on the call that
    /// follows), written into that call's id ([`weir_model::content::signed_call_id`]).
    carrier: Option<String>,
}

impl StreamEncoder {
    /// An encoder for one stream.
    pub fn new(opts: StreamEncodeOptions) -> Self {
        let created = opts.created.unwrap_or_else(now_secs);
        let mut e = StreamEncoder {
            opts,
            id: String::new(),
            model: String::new(),
            created,
            prefix: Vec::new(),
            tools: Vec::new(),
            usage: Usage::default(),
            done: false,
            chars: 0,
            citing: None,
            notes: Vec::new(),
            passthrough: false,
            carrier: None,
        };
        e.render_prefix();
        e
    }

    fn render_prefix(&mut self) {
        let mut p = Vec::with_capacity(128 + self.id.len() + self.model.len());
        p.extend_from_slice(b"data: {\"id\":");
        json_string(&self.id, &mut p);
        p.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        p.extend_from_slice(itoa::Buffer::new().format(self.created).as_bytes());
        p.extend_from_slice(b",\"model\":");
        json_string(&self.model, &mut p);
        p.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
        self.prefix = p;
    }

    /// Appends the SSE bytes for `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), WireError> {
        if let Some(src) = &frame.source {
            if src.dialect == Dialect::OpenAi {
                self.passthrough = true;
                if !self.opts.include_usage && is_usage_only_chunk(frame) {
                    return Ok(());
                }
                return src
                    .write(out)
                    .map_err(|e| WireError::Malformed(e.to_string()));
            }
        }
        if self.passthrough {
            for ev in &frame.events {
                match ev {
                    StreamEvent::MessageStop if !self.done => {
                        self.done = true;
                        out.extend_from_slice(b"data: [DONE]\n\n");
                    }
                    StreamEvent::Error(_) | StreamEvent::Ping => self.encode_event(ev, out)?,
                    _ => {}
                }
            }
            return Ok(());
        }
        for ev in &frame.events {
            self.encode_event(ev, out)?;
        }
        Ok(())
    }

    /// One chunk: the prefix, a delta written by `delta`, and the finish reason.
    fn chunk(&self, out: &mut Vec<u8>, finish: Option<&str>, delta: impl FnOnce(&mut Vec<u8>)) {
        out.extend_from_slice(&self.prefix);
        delta(out);
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => json_string(f, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]}\n\n");
    }

    /// Appends the SSE bytes for one canonical event.
    pub fn encode_event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) -> Result<(), WireError> {
        match ev {
            StreamEvent::MessageStart { id, model, usage } => {
                if id.is_empty() {
                    // An upstream that gave none (Bedrock Converse, some Gemini answers).
                    self.id = weir_model::generated_id("chatcmpl-");
                } else {
                    self.id.clone_from(id);
                }
                self.model.clone_from(model);
                self.usage.merge(usage);
                self.render_prefix();
                self.chunk(out, None, |o| {
                    o.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"\"}")
                });
            }
            StreamEvent::BlockStart { index, block } => match block {
                ContentBlock::ToolUse(t) => {
                    // (At most 40 characters of the call's own, as whole answers write it:
                    // OpenAI refuses longer ids should the conversation go there.)
                    let carrier = self.carrier.take();
                    let own = crate::request::openai_tool_id(&t.id);
                    let id = weir_model::content::signed_call_id(&own, carrier.as_deref());
                    let ti = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                    // Anthropic starts a call with `input: {}` and streams the arguments;
                    // a compatible service may put them in the start instead.
                    let started = t.input.to_object();
                    let started = (started.get().trim() != "{}")
                        .then(|| serde_json::to_string(started.get()).ok())
                        .flatten();
                    self.tools.push((*index, ti, false, started));
                    self.chunk(out, None, |o| {
                        o.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                        o.extend_from_slice(itoa::Buffer::new().format(ti).as_bytes());
                        o.extend_from_slice(b",\"id\":");
                        json_string(&id, o);
                        o.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                        json_string(&t.name, o);
                        o.extend_from_slice(b",\"arguments\":\"\"}}]}");
                    });
                }
                // Text or reasoning a block's start carries (Anthropic's are empty).
                ContentBlock::Text(t) => {
                    self.carrier = None;
                    self.citing = Some((*index, self.chars, Vec::new()));
                    if !t.text.is_empty() {
                        self.chars += t.text.chars();
                        self.chunk(out, None, |o| token_delta(o, b"{\"content\":", &t.text))
                    }
                }
                ContentBlock::Thinking(t) => {
                    self.carrier = t.signature.clone().filter(|_| t.thinking.is_empty());
                    if !t.thinking.is_empty() {
                        self.chunk(out, None, |o| {
                            token_delta(o, b"{\"reasoning_content\":", &t.thinking)
                        })
                    }
                }
                _ => self.carrier = None,
            },
            StreamEvent::BlockDelta { index, delta } => match delta {
                Delta::Text(t) => {
                    self.chars += t.chars();
                    self.chunk(out, None, |o| token_delta(o, b"{\"content\":", t))
                }
                Delta::Thinking(t) => {
                    self.carrier = None;
                    self.chunk(out, None, |o| token_delta(o, b"{\"reasoning_content\":", t))
                }
                Delta::Signature(sig) => self.carrier = Some(sig.clone()),
                Delta::InputJson(j) if !j.is_empty() => {
                    if let Some(t) = self.tools.iter_mut().find(|t| t.0 == *index) {
                        t.2 = true;
                        let ti = t.1;
                        self.chunk(out, None, |o| tool_arguments(o, ti, j.token()));
                    }
                }
                Delta::Unknown {
                    dialect: Dialect::Anthropic,
                    raw,
                } => {
                    // Anthropic's citation of a web search result, for the text that follows.
                    #[derive(serde::Deserialize)]
                    struct Cited {
                        citation: crate::response::Citation,
                    }
                    if let (Some((open, _, cites)), Ok(c)) = (
                        self.citing.as_mut(),
                        serde_json::from_str::<Cited>(raw.get()),
                    ) {
                        if *open == *index {
                            cites.push(c.citation);
                        }
                    }
                }
                _ => {}
            },
            StreamEvent::BlockStop { index } => {
                // A text block that cited web pages: OpenAI's annotations for its span.
                if let Some((_, start, cites)) = self.citing.take_if(|c| c.0 == *index) {
                    let end = self.chars;
                    self.notes
                        .extend(cites.iter().filter_map(|c| c.url_citation(start, end)));
                }
                // A tool called without arguments streams only `partial_json: ""`; OpenAI
                // clients parse the concatenated arguments, so they must get `{}` (or what
                // the block's start carried).
                if let Some((_, ti, false, started)) = self.tools.iter().find(|t| t.0 == *index) {
                    let (ti, args) = (*ti, started.as_deref().unwrap_or("\"{}\"").to_owned());
                    self.chunk(out, None, |o| tool_arguments(o, ti, &args));
                }
            }
            StreamEvent::MessageDelta {
                stop_reason, usage, ..
            } => {
                self.usage.merge(usage);
                if !self.notes.is_empty() {
                    let notes = std::mem::take(&mut self.notes);
                    self.chunk(out, None, |o| {
                        o.extend_from_slice(b"{\"annotations\":");
                        // (Values serialize infallibly into a Vec.)
                        let _ = serde_json::to_writer(&mut *o, &notes);
                        o.push(b'}');
                    });
                }
                // (Another dialect's stream: tool calls are a tool-calls finish whatever the
                // upstream said.)
                let finish = match stop_reason {
                    None | Some(StopReason::EndTurn) if !self.tools.is_empty() => "tool_calls",
                    None => "stop",
                    Some(r) => r.openai_client_name(),
                };
                self.chunk(out, Some(finish), |o| o.extend_from_slice(b"{}"));
            }
            StreamEvent::MessageStop => self.done_into(out)?,
            StreamEvent::Error(e) => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&openai_error_body(e));
                out.extend_from_slice(b"\n\n");
            }
            // A keep-alive (the gateway's own while the upstream is silent, or an
            // Anthropic upstream's ping): an SSE comment, which clients skip.
            StreamEvent::Ping if !self.done => out.extend_from_slice(b": keep-alive\n\n"),
            StreamEvent::Ping | StreamEvent::Unknown { .. } => {}
        }
        Ok(())
    }

    fn done_into(&mut self, out: &mut Vec<u8>) -> Result<(), WireError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if self.opts.include_usage {
            let c = UsageChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: [(); 0],
                usage: UsageOut {
                    usage: &self.usage,
                    same: false,
                },
            };
            out.extend_from_slice(b"data: ");
            serde_json::to_writer(&mut *out, &c)
                .map_err(|e| WireError::Unsupported(e.to_string()))?;
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Ok(())
    }
}

fn token_delta(out: &mut Vec<u8>, key: &[u8], token: &JsonStr) {
    out.extend_from_slice(key);
    out.extend_from_slice(token.token().as_bytes());
    out.push(b'}');
}

fn tool_arguments(out: &mut Vec<u8>, index: u32, token: &str) {
    out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
    out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
    out.extend_from_slice(b",\"function\":{\"arguments\":");
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(b"}}]}");
}

/// Writes `s` as a JSON string.
fn json_string(s: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The choice's other fields after its delta, each at most once: `logprobs` null, and
/// `finish_reason` null or (when `finish` asks for it) a plain string, put there. What
/// follows the choice, or `None` if it holds anything else.
fn choice_rest<'d>(mut tail: &'d str, mut finish: Option<&mut Option<&'d str>>) -> Option<&'d str> {
    // OpenAI sends both, compatible servers (vLLM, Groq, DeepSeek...) often only
    // `finish_reason`.
    let (mut logprobs, mut reason) = (false, false);
    loop {
        if let Some(t) = tail
            .strip_prefix(r#","logprobs":null"#)
            .filter(|_| !logprobs)
        {
            (tail, logprobs) = (t, true);
        } else if let Some(t) = tail
            .strip_prefix(r#","finish_reason":"#)
            .filter(|_| !reason)
        {
            reason = true;
            match finish.as_mut() {
                None => tail = t.strip_prefix("null")?,
                Some(out) => {
                    let t = t.strip_prefix('"')?;
                    let end = t.find('"')?;
                    **out = Some(&t[..end]);
                    tail = &t[end + 1..];
                }
            }
        } else {
            break;
        }
    }
    if finish.is_some() && !reason {
        return None;
    }
    tail.strip_prefix("}]")
}

/// Whether what follows the choices closes a plain chunk: nothing, null usage, OpenAI's
/// obfuscation padding, or (as OpenAI writes every chunk of a stream with usage) both.
fn chunk_end(tail: &str) -> bool {
    let tail = tail.trim_end();
    let tail = tail.strip_prefix(r#","usage":null"#).unwrap_or(tail);
    tail == "}"
        || tail
            .strip_prefix(r#","obfuscation":"#)
            .and_then(weir_model::wire::split_string_token)
            .is_some_and(|(_, rest)| rest == "}")
}

#[derive(Serialize)]
struct UsageChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [(); 0],
    usage: UsageOut<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(stream: &str, force_general: bool) -> Vec<String> {
        let mut d = StreamDecoder::new();
        let mut sse = weir_sse::Decoder::new();
        let mut evs = Vec::new();
        sse.feed(stream.as_bytes(), &mut evs).unwrap();
        evs.into_iter()
            .map(|ev| {
                let ev = if force_general {
                    // A space after the colon defeats the fast path's exact match.
                    Event::new(ev.data().replace(r#""delta":{"#, r#""delta": {"#))
                } else {
                    ev
                };
                format!("{:?}", d.decode(ev).unwrap().events)
            })
            .collect()
    }

    /// A passed-through usage chunk reaches only a client that asked for one: the
    /// gateway asks an upstream for it to count tokens.
    #[test]
    fn an_upstreams_usage_chunk_reaches_only_a_client_that_asked() {
        let stream = concat!(
            r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}"#,
            "\n\n",
            r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            "\n\n",
            r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
            "\n\n",
            "data: [DONE]\n\n",
        );
        for include_usage in [false, true] {
            let mut d = StreamDecoder::new();
            let mut sse = weir_sse::Decoder::new();
            let mut evs = Vec::new();
            sse.feed(stream.as_bytes(), &mut evs).unwrap();
            let mut enc = StreamEncoder::new(StreamEncodeOptions {
                include_usage,
                ..Default::default()
            });
            let mut out = Vec::new();
            for ev in evs {
                enc.encode(&d.decode(ev).unwrap(), &mut out).unwrap();
            }
            let out = String::from_utf8(out).unwrap();
            assert_eq!(out.contains(r#""usage""#), include_usage, "{out}");
            assert!(out.contains(r#""content":"Hi""#), "{out}");
            assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
        }
    }

    /// Arguments streamed as a JSON object (llama.cpp's server, some relays) are read as
    /// their text, as a whole answer's are, instead of failing the stream.
    #[test]
    fn a_call_s_arguments_as_an_object_are_read_as_their_text() {
        let stream = concat!(
            r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"bash","arguments":{"command":"ls -la"}}}]},"finish_reason":null}]}"#,
            "\n\n",
            r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":null}}]},"finish_reason":"tool_calls"}]}"#,
            "\n\n",
            "data: [DONE]\n\n",
        );
        let events = decode_all(stream, false).concat();
        let args = events
            .split("InputJson(")
            .nth(1)
            .and_then(|a| a.split(')').next())
            .unwrap_or_default();
        assert!(
            args.contains("command") && args.contains("ls -la"),
            "{events}"
        );
        assert!(events.contains("ToolUse"), "{events}");
    }

    /// `[DONE]` before any chunk is a 200 with no answer in it, an error (as an empty
    /// body is), not an empty stream an Anthropic client would get as a bare 200.
    #[test]
    fn done_before_any_chunk_is_no_answer() {
        let mut d = StreamDecoder::new();
        let mut relayed = Vec::new();
        assert!(!d.relay("[DONE]", &mut relayed), "not relayed as an end");
        let e = d.decode(Event::new("[DONE]".to_owned())).unwrap_err();
        assert!(e.to_string().contains("before any chunk"), "{e}");
        // After an error chunk (which said what went wrong), `[DONE]` adds no second error.
        let mut d = StreamDecoder::new();
        let f = d
            .decode(Event::new(
                r#"{"error":{"message":"busy","code":502}}"#.to_owned(),
            ))
            .unwrap();
        assert!(
            matches!(f.events.as_slice(), [StreamEvent::Error(_)]),
            "{:?}",
            f.events
        );
        let f = d.decode(Event::new("[DONE]".to_owned())).unwrap();
        assert!(f.events.is_empty(), "{:?}", f.events);
    }

    /// With several choices (`n` > 1, passed through), a stream cut after the first one
    /// finished, another still open, was cut short: no made-up end.
    #[test]
    fn a_stream_cut_with_a_choice_unfinished_is_cut_short() {
        let chunk = |i: u32, delta: &str, finish: &str| {
            format!(
                r#"{{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":{i},"delta":{delta},"finish_reason":{finish}}}]}}"#
            )
        };
        let feed = |chunks: &[String]| {
            let mut d = StreamDecoder::new();
            for c in chunks {
                d.decode(Event::new(c.clone())).unwrap();
            }
            d.finish()
        };
        let mut chunks = vec![
            chunk(0, r#"{"role":"assistant","content":""}"#, "null"),
            chunk(1, r#"{"role":"assistant","content":""}"#, "null"),
            chunk(0, r#"{"content":"A"}"#, "null"),
            chunk(1, r#"{"content":"B"}"#, "null"),
            chunk(0, "{}", r#""stop""#),
        ];
        let e = feed(&chunks).unwrap_err();
        assert!(
            e.to_string().contains("before the response finished"),
            "{e}"
        );
        chunks.push(chunk(1, "{}", r#""stop""#));
        assert!(feed(&chunks).is_ok());
    }

    #[test]
    fn fast_content_path_agrees_with_the_general_decoder() {
        let head = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":"#;
        let tail = r#","logprobs":null,"finish_reason":null}]"#;
        let short = r#","finish_reason":null}]"#;
        let stream = [
            format!(r#"{head}{{"role":"assistant","content":""}}{tail}}}"#),
            format!(r#"{head}{{"content":"a \"b\" \u00e9\n"}}{tail}}}"#),
            format!(r#"{head}{{"content":"without logprobs"}}{short}}}"#),
            format!(r#"{head}{{"content":"w"}},"finish_reason":null,"logprobs":null}}]}}"#),
            format!(r#"{head}{{"content":"c"}}{tail},"usage":null}}"#),
            format!(r#"{head}{{"content":"d"}}{tail},"obfuscation":"x"}}"#),
            format!(r#"{head}{{"content":"e"}}{tail},"usage":null,"obfuscation":"x"}}"#),
            format!(r#"{head}{{"content":""}}{tail}}}"#),
            format!(r#"{head}{{}},"logprobs":null,"finish_reason":"stop"}}]}}"#),
            format!(r#"{head}{{}},"finish_reason":"length"}}]}}"#),
            "data: [DONE]".to_owned(),
        ]
        .join("\n\n")
            + "\n\n";
        let mut started = StreamDecoder {
            started: true,
            ..StreamDecoder::default()
        };
        let text = |d: &mut StreamDecoder, s: &str| matches!(d.fast(s), Some(Fast::Text(_)));
        let plain =
            format!(r#"{{"id":"c","choices":[{{"index":0,"delta":{{"content":"x"}}{tail}}}"#);
        assert!(
            text(&mut started, &plain),
            "the fast path must take plain chunks"
        );
        assert!(
            text(&mut started, &plain),
            "and again with the head it kept"
        );
        // OpenAI's own chunks, when usage was asked for (as the gateway always asks).
        let openai = format!(
            r#"{{"id":"c","choices":[{{"index":0,"delta":{{"content":"x"}}{tail},"usage":null,"obfuscation":"auU6fTns"}}"#
        );
        assert!(text(&mut started, &openai), "OpenAI's own chunk shape");
        let openai_finish = r#"{"id":"c","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null,"obfuscation":"o"}"#;
        assert!(matches!(
            started.fast(openai_finish),
            Some(Fast::Finish("stop"))
        ));
        let short_plain =
            format!(r#"{{"id":"c","choices":[{{"index":0,"delta":{{"content":"x"}}{short}}}"#);
        assert!(
            text(&mut started, &short_plain),
            "and those without logprobs"
        );
        let finished =
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}"#;
        assert!(
            started.fast(finished).is_none(),
            "a chunk with text and a finish takes the general path"
        );
        let twice = format!(
            r#"{{"id":"c","choices":[{{"index":0,"delta":{{"content":"x"}},"finish_reason":null{short}}}"#
        );
        assert!(
            started.fast(&twice).is_none(),
            "a repeated field takes the general path (which rejects it)"
        );
        let usage_head = format!(
            r#"{{"id":"c","usage":{{"prompt_tokens":1}},"choices":[{{"index":0,"delta":{{"content":"x"}}{short}}}"#
        );
        assert!(
            started.fast(&usage_head).is_none(),
            "a head unlike the kept one is searched again, and one with usage is not fast"
        );
        let finish = r#"{"id":"c","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}"#;
        assert!(matches!(
            started.fast(finish),
            Some(Fast::Finish("tool_calls"))
        ));
        for other in [
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"logprobs":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"st\"op"}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"},{"index":1,"delta":{}}]}"#,
        ] {
            assert!(started.fast(other).is_none(), "{other}");
        }
        assert_eq!(decode_all(&stream, false), decode_all(&stream, true));
    }
}
