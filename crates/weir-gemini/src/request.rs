//! Canonical requests as Gemini `generateContent` bodies.

use std::borrow::Cow;

use weir_model::json_writer::JsonWriter;
use weir_model::{
    ChatRequest, ContentBlock, Dialect, DocumentBlock, JsonStr, MediaSource, Message, RawJson,
    Role, Tool, ToolResultBlock, WireError,
};

use crate::carry::{classify, Signature, SKIP_SIGNATURE_VALIDATOR};
use crate::config::{write_generation_config, write_tool_config, write_tools};

/// How tool parameter schemas are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchemaMode {
    /// In `parameters`, cut down to the OpenAPI subset Gemini accepts there (unknown
    /// keywords dropped, `$ref`s inlined; see the crate docs). Works with every model.
    #[default]
    Cleaned,
    /// Verbatim, in `parametersJsonSchema` (full JSON Schema; newer models and API versions
    /// only).
    JsonSchema,
}

/// Options for encoding a request to a Gemini upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// How tool schemas are sent.
    pub schema: SchemaMode,
    /// The `thoughtSignature` put on the function calls of a model turn that carries no
    /// Gemini signature at all (calls made by another model, or whose signature an OpenAI
    /// client could not keep). Default [`SKIP_SIGNATURE_VALIDATOR`]; `None` sends them
    /// unsigned, which Gemini 3 refuses.
    pub missing_signature: Option<String>,
    /// Send canonical tool-call ids as `functionCall.id` / `functionResponse.id` (the Gemini
    /// API takes them; turn off for endpoints that reject the field).
    pub call_ids: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            schema: SchemaMode::Cleaned,
            missing_signature: Some(SKIP_SIGNATURE_VALIDATOR.to_owned()),
            call_ids: true,
        }
    }
}

/// Encodes a canonical request as a Gemini `generateContent` (or `streamGenerateContent`)
/// body. Whether to stream is the URL's business, so `stream` is not written; neither is
/// the model, which is in the URL too.
///
/// A tool call whose arguments are not a JSON object is sent with `{}`
/// ([`weir_model::ToolInput::to_object`]).
///
/// Errors: a tool result whose call is not earlier in the conversation (Gemini needs the
/// function's name, which only the call has) ([`WireError::Malformed`]); blocks, tools or a `tool_choice` that only another
/// dialect can carry; OpenAI `function` messages ([`WireError::Unsupported`]).
pub fn encode_request(req: &ChatRequest, opts: &EncodeOptions) -> Result<Vec<u8>, WireError> {
    // (Gemini grounds with Google Search for an OpenAI client's `web_search_options`.)
    req.check_translatable_to("Gemini", true)?;
    // An OpenAI assistant's refusal is what the model said: Gemini has it as text.
    let req = &*req.with_refusals_as_text();
    // Claude Code's tool search results name tools Gemini has declared anyway.
    let req = &*req.with_tool_references_as_text();
    // OpenAI tool calls kept verbatim (no id or type, arguments not a string) go as calls.
    let req = &*req.with_lenient_tool_calls();
    let mut plan = Plan::default();
    if let Some(sys) = &req.system {
        for b in &sys.blocks {
            plan.system_block(b, "system")?;
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        plan.message(i, m, opts)?;
    }
    // Gemini refuses empty content, so empty messages were left out above.
    req.check_kept_messages("Gemini", plan.turns.last().map(|t| t.role == "model"))?;
    let mut functions = Vec::new();
    let mut search = web_search_options(req)?;
    for t in req.tools() {
        match t {
            Tool::Function(f) => functions.push(f),
            t @ Tool::Unknown { .. } if t.is_web_search("Gemini", false)? => search = true,
            Tool::Unknown { dialect, name, .. } => {
                return Err(WireError::Unsupported(format!(
                    "tool `{}` is a {dialect}-specific tool and cannot be sent to Gemini",
                    name.as_deref().unwrap_or("?")
                )))
            }
        }
    }
    // No tool use asked for: no search either.
    search &= !matches!(req.tool_choice, Some(weir_model::ToolChoice::None));
    if search && !functions.is_empty() {
        // Gemini takes both only with server-side tool calls turned on, whose parts would
        // then have to come back in later turns, which clients of other dialects cannot
        // carry.
        return Err(WireError::Unsupported(
            "web search (Gemini's grounding with Google Search) and function tools cannot be sent to Gemini in one request; send the search on its own".into(),
        ));
    }
    let mut w = JsonWriter::with_capacity(req.size_hint + req.size_hint / 8 + 256);
    w.begin_object();
    w.key("contents");
    w.begin_array();
    for turn in &plan.turns {
        w.begin_object();
        w.key("role");
        w.string(turn.role);
        w.key("parts");
        w.begin_array();
        for p in &turn.parts {
            write_part(&mut w, p, opts);
        }
        w.end_array();
        w.end_object();
    }
    w.end_array();
    if !plan.system.is_empty() {
        w.key("systemInstruction");
        w.begin_object();
        w.key("parts");
        w.begin_array();
        for t in &plan.system {
            w.begin_object();
            w.key("text");
            w.json_str(t);
            w.end_object();
        }
        w.end_array();
        w.end_object();
    }
    // (One budget for every schema of the request: see `schema::MAX_BYTES`.)
    let budget = crate::schema::Budget::new();
    if !functions.is_empty() || search {
        write_tools(&mut w, &functions, search, opts, &budget)?;
    }
    if !functions.is_empty() {
        if let Some(choice) = &req.tool_choice {
            write_tool_config(&mut w, choice, &functions)?;
        }
    }
    write_generation_config(&mut w, req, opts, &budget)?;
    w.end_object();
    Ok(w.into_bytes())
}

/// Whether an OpenAI client asked for web search (`web_search_options`, an object: its
/// `user_location` and `search_context_size` have no Gemini counterpart and are not
/// sent).
fn web_search_options(req: &ChatRequest) -> Result<bool, WireError> {
    if req.origin != Some(Dialect::OpenAi) {
        return Ok(false);
    }
    match req
        .extra
        .get("web_search_options")
        .map(|r| r.get().trim_start())
    {
        None | Some("null") => Ok(false),
        Some(v) if v.starts_with('{') => Ok(true),
        Some(_) => Err(WireError::Malformed(
            "web_search_options: must be an object".into(),
        )),
    }
}

/// What a part holds.
enum Data<'a> {
    Text(Cow<'a, JsonStr>),
    Inline {
        mime: &'a str,
        data: &'a str,
    },
    File {
        mime: &'a str,
        uri: &'a str,
    },
    Call {
        id: &'a str,
        name: &'a str,
        args: RawJson,
    },
    Response {
        id: &'a str,
        name: &'a str,
        /// The answered call's place among its turn's calls.
        place: usize,
        /// `output`, or `error` for a failed call (the keys Google documents).
        key: &'static str,
        output: JsonStr,
    },
}

struct Part<'a> {
    data: Data<'a>,
    thought: bool,
    signature: Option<&'a str>,
}

impl<'a> Part<'a> {
    fn new(data: Data<'a>) -> Self {
        Part {
            data,
            thought: false,
            signature: None,
        }
    }

    /// An empty text part holding only a signature (Gemini sends these at the end of a
    /// turn; a carried signature with no part after it is written back as one).
    fn signature_only(sig: &'a str) -> Self {
        Part {
            data: Data::Text(Cow::Owned(JsonStr::empty())),
            thought: false,
            signature: Some(sig),
        }
    }
}

struct Turn<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Default)]
struct Plan<'a> {
    system: Vec<&'a JsonStr>,
    turns: Vec<Turn<'a>>,
    /// Tool calls seen so far: id, name, place among its model turn's calls.
    calls: Vec<(&'a str, &'a str, usize)>,
    /// Calls in the model turn being built (consecutive assistant messages are one turn).
    turn_calls: usize,
}

impl<'a> Plan<'a> {
    fn system_block(&mut self, b: &'a ContentBlock, at: &str) -> Result<(), WireError> {
        match b {
            ContentBlock::Text(t) => {
                if !t.text.is_empty() {
                    self.system.push(&t.text);
                }
                Ok(())
            }
            other => Err(WireError::Unsupported(format!(
                "{at}: `{}` content cannot be part of Gemini's systemInstruction",
                other.type_name()
            ))),
        }
    }

    fn message(
        &mut self,
        i: usize,
        m: &'a Message,
        opts: &'a EncodeOptions,
    ) -> Result<(), WireError> {
        let role = match m.role {
            Role::System | Role::Developer => {
                let at = format!("messages[{i}]");
                for b in &m.content.blocks {
                    self.system_block(b, &at)?;
                }
                return Ok(());
            }
            Role::Function => {
                return Err(WireError::Unsupported(format!(
                    "messages[{i}]: an OpenAI `function` message answers a call by name only; \
                     Gemini needs tool messages with a tool_call_id"
                )))
            }
            Role::User | Role::Tool => "user",
            Role::Assistant => "model",
        };
        // A model turn's calls are placed from 0; an assistant message joined to the
        // turn before it continues its count.
        if role == "model" && self.turns.last().is_none_or(|t| t.role != "model") {
            self.turn_calls = 0;
        }
        let mut parts = self.parts(&m.content.blocks).map_err(|e| match e {
            WireError::Malformed(s) => WireError::Malformed(format!("messages[{i}]: {s}")),
            WireError::Unsupported(s) => WireError::Unsupported(format!("messages[{i}]: {s}")),
            WireError::ModelOutput(s) => WireError::ModelOutput(format!("messages[{i}]: {s}")),
        })?;
        if role == "model" {
            if let Some(ph) = &opts.missing_signature {
                let calls = || parts.iter().filter(|p| matches!(p.data, Data::Call { .. }));
                if calls().all(|p| p.signature.is_none()) {
                    for p in &mut parts {
                        if matches!(p.data, Data::Call { .. }) {
                            p.signature = Some(ph);
                        }
                    }
                }
            }
        }
        if parts.is_empty() {
            return Ok(());
        }
        match self.turns.last_mut() {
            Some(last) if last.role == role => last.parts.append(&mut parts),
            _ => self.turns.push(Turn { role, parts }),
        }
        if let Some(last) = self.turns.last_mut().filter(|t| t.role == "user") {
            in_call_order(&mut last.parts);
        }
        Ok(())
    }

    /// The parts of one message. A signature carried by an empty thinking block goes on
    /// the part after it; media from tool results follow the run of function responses
    /// (Gemini pairs responses with calls; other parts may come after them).
    fn parts(&mut self, blocks: &'a [ContentBlock]) -> Result<Vec<Part<'a>>, WireError> {
        let mut out = Vec::with_capacity(blocks.len());
        let mut carried: Option<&'a str> = None;
        let mut deferred: Vec<Part<'a>> = Vec::new();
        for b in blocks {
            if !matches!(b, ContentBlock::ToolResult(_)) {
                out.append(&mut deferred);
            }
            let part = match b {
                ContentBlock::Text(t) => {
                    (!t.text.is_empty()).then(|| Part::new(Data::Text(Cow::Borrowed(&t.text))))
                }
                ContentBlock::Image(img) => Some(Part::new(image(&img.source)?)),
                ContentBlock::Document(d) => Some(Part::new(document(d))),
                ContentBlock::ToolUse(t) => {
                    let args = t.input.to_object();
                    self.calls.push((&t.id, &t.name, self.turn_calls));
                    self.turn_calls += 1;
                    Some(Part::new(Data::Call {
                        id: &t.id,
                        name: &t.name,
                        args,
                    }))
                }
                ContentBlock::ToolResult(r) => {
                    let (name, place) = self.name_of(&r.tool_use_id)?;
                    Some(Part::new(tool_result(r, name, place, &mut deferred)?))
                }
                ContentBlock::Thinking(t) => match classify(t.signature.as_deref()) {
                    Signature::Thought(sig) => Some(Part {
                        data: Data::Text(Cow::Borrowed(&t.thinking)),
                        thought: true,
                        signature: Some(sig),
                    }),
                    Signature::NextPart(sig) => {
                        if let Some(prev) = carried.replace(sig) {
                            out.push(Part::signature_only(prev));
                        }
                        None
                    }
                    // Reasoning from another provider: Gemini takes unsigned thought text.
                    Signature::Foreign => (!t.thinking.is_empty()).then_some(Part {
                        data: Data::Text(Cow::Borrowed(&t.thinking)),
                        thought: true,
                        signature: None,
                    }),
                },
                // Anthropic-encrypted reasoning means nothing to Gemini.
                ContentBlock::RedactedThinking(_) => None,
                // A web search Claude (or Gemini, through Weir) made, and its results: the
                // text after them carries the answer, and Gemini searches on its own.
                ContentBlock::Unknown(u)
                    if u.dialect == Dialect::Anthropic
                        && u.type_name.as_deref().is_some_and(|t| {
                            t == "server_tool_use"
                                || (t.ends_with("_tool_result") && !t.starts_with("mcp_"))
                        }) =>
                {
                    None
                }
                // An OpenAI client's audio: Gemini takes it inline.
                ContentBlock::Unknown(u)
                    if u.dialect == Dialect::OpenAi
                        && u.type_name.as_deref() == Some("input_audio") =>
                {
                    Some(Part::new(input_audio(&u.raw)?))
                }
                ContentBlock::Unknown(u) => {
                    return Err(WireError::Unsupported(format!(
                        "content block `{}` from the {} dialect cannot be sent to Gemini",
                        b.type_name(),
                        u.dialect
                    )))
                }
            };
            if let Some(mut p) = part {
                if let Some(sig) = carried.take() {
                    if p.signature.is_none() {
                        p.signature = Some(sig);
                    } else {
                        out.push(Part::signature_only(sig));
                    }
                }
                out.push(p);
            }
        }
        out.append(&mut deferred);
        if let Some(sig) = carried {
            out.push(Part::signature_only(sig));
        }
        Ok(out)
    }

    /// The name of the function an earlier call with this id called (the latest such
    /// call), and the call's place among its message's calls.
    fn name_of(&self, id: &str) -> Result<(&'a str, usize), WireError> {
        self.calls
            .iter()
            .rev()
            .find(|(cid, _, _)| *cid == id)
            .map(|(_, name, place)| (*name, *place))
            .ok_or_else(|| {
                WireError::Unsupported(format!(
                    "tool result for `{id}` answers no earlier tool call; Gemini needs the called \
                     function's name, which only the call has"
                ))
            })
    }
}

/// A user turn answering several calls: its function responses first, in the order of
/// the calls, then its other parts in their order. Gemini makes no ids of its own and
/// pairs responses with calls by place, so results a client sent in another order (or
/// as separate tool messages) would answer the wrong calls of one function.
fn in_call_order(parts: &mut [Part<'_>]) {
    let place = |p: &Part<'_>| match p.data {
        Data::Response { place, .. } => Some(place),
        _ => None,
    };
    let mut responses = parts.iter().filter_map(place);
    let Some(first) = responses.next() else {
        return;
    };
    let ordered = responses
        .try_fold(first, |prev, p| (p >= prev).then_some(p))
        .is_some();
    let leading = parts.iter().take_while(|p| place(p).is_some()).count();
    if ordered && parts[leading..].iter().all(|p| place(p).is_none()) {
        return;
    }
    // (A stable sort: the other parts keep their order.)
    parts.sort_by_key(|p| place(p).map_or((1, 0), |n| (0, n)));
}

fn tool_result<'a>(
    r: &'a ToolResultBlock,
    name: &'a str,
    place: usize,
    media: &mut Vec<Part<'a>>,
) -> Result<Data<'a>, WireError> {
    let mut texts = Vec::new();
    for b in &r.content.blocks {
        match b {
            ContentBlock::Text(t) => texts.push(&t.text),
            ContentBlock::Image(img) => media.push(Part::new(image(&img.source)?)),
            ContentBlock::Document(d) => media.push(Part::new(document(d))),
            other => {
                return Err(WireError::Unsupported(format!(
                    "tool result `{}` holds `{}` content, which Gemini cannot take",
                    r.tool_use_id,
                    other.type_name()
                )))
            }
        }
    }
    Ok(Data::Response {
        id: &r.tool_use_id,
        name,
        place,
        key: if r.is_error == Some(true) {
            "error"
        } else {
            "output"
        },
        output: JsonStr::join(texts, "\n").unwrap_or_default(),
    })
}

/// An OpenAI `input_audio` part (`{"input_audio": {"data": <base64>, "format": "wav"}}`)
/// as inline data of its audio type.
fn input_audio(raw: &serde_json::value::RawValue) -> Result<Data<'_>, WireError> {
    #[derive(serde::Deserialize)]
    struct PartOf<'a> {
        #[serde(borrow)]
        input_audio: Audio<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Audio<'a> {
        data: &'a str,
        format: &'a str,
    }
    let p: PartOf<'_> = serde_json::from_str(raw.get()).map_err(|_| {
        WireError::Malformed(
            "an input_audio part needs input_audio.data (base64) and input_audio.format".into(),
        )
    })?;
    let mime = match p.input_audio.format {
        "wav" => "audio/wav",
        "mp3" => "audio/mp3",
        "flac" => "audio/flac",
        "aac" => "audio/aac",
        "ogg" | "opus" => "audio/ogg",
        "aiff" => "audio/aiff",
        other => {
            return Err(WireError::Unsupported(format!(
                "audio of format `{other}` cannot be sent to Gemini (wav, mp3, flac, aac, ogg, opus or aiff)"
            )))
        }
    };
    Ok(Data::Inline {
        mime,
        data: p.input_audio.data,
    })
}

fn image(src: &MediaSource) -> Result<Data<'_>, WireError> {
    match src {
        MediaSource::Base64 { media_type, data } => Ok(Data::Inline {
            mime: media_type,
            data,
        }),
        MediaSource::Url(url) => Ok(url_data(url, "image/jpeg")),
        MediaSource::Text { .. } => Err(WireError::Unsupported(
            "an image cannot have a text source".into(),
        )),
    }
}

fn document(d: &DocumentBlock) -> Data<'_> {
    match &d.source {
        MediaSource::Base64 { media_type, data } => Data::Inline {
            mime: media_type,
            data,
        },
        MediaSource::Url(url) => url_data(url, "application/pdf"),
        MediaSource::Text { data, .. } => Data::Text(Cow::Owned(JsonStr::new(data))),
    }
}

/// A `data:` URL inline; any other URL as `fileData` with a MIME type guessed from the
/// path's extension (Gemini requires one), `fallback` when it has none we know.
fn url_data<'a>(url: &'a str, fallback: &'static str) -> Data<'a> {
    if let Some((mime, data)) = weir_model::inline_data_url(url) {
        return Data::Inline { mime, data };
    }
    Data::File {
        mime: guess_mime(url).unwrap_or(fallback),
        uri: url,
    }
}

/// A MIME type from a URL's file extension.
pub(crate) fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let (_, ext) = file.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

fn write_part(w: &mut JsonWriter, p: &Part<'_>, opts: &EncodeOptions) {
    w.begin_object();
    match &p.data {
        Data::Text(t) => {
            w.key("text");
            w.json_str(t);
        }
        Data::Inline { mime, data } => {
            w.key("inlineData");
            w.begin_object();
            w.key("mimeType");
            w.string(mime);
            w.key("data");
            w.string(data);
            w.end_object();
        }
        Data::File { mime, uri } => {
            w.key("fileData");
            w.begin_object();
            w.key("mimeType");
            w.string(mime);
            w.key("fileUri");
            w.string(uri);
            w.end_object();
        }
        Data::Call { id, name, args } => {
            w.key("functionCall");
            w.begin_object();
            if opts.call_ids {
                w.key("id");
                // (An OpenAI client's id carrying Gemini's signature: the call's own.)
                w.string(weir_model::content::own_call_id(id));
            }
            w.key("name");
            w.string(name);
            w.key("args");
            w.raw_value(args);
            w.end_object();
        }
        Data::Response {
            id,
            name,
            key,
            output,
            place: _,
        } => {
            w.key("functionResponse");
            w.begin_object();
            if opts.call_ids {
                w.key("id");
                w.string(weir_model::content::own_call_id(id));
            }
            w.key("name");
            w.string(name);
            w.key("response");
            w.begin_object();
            w.key(key);
            w.json_str(output);
            w.end_object();
            w.end_object();
        }
    }
    if p.thought {
        w.key("thought");
        w.bool(true);
    }
    if let Some(sig) = p.signature {
        w.key("thoughtSignature");
        w.string(sig);
    }
    w.end_object();
}
