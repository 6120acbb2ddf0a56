//! Messages and content blocks.

use crate::json_str::JsonStr;
use crate::raw::{Dialect, Extra, RawJson};

/// Who said a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// OpenAI `system` message (Anthropic has a top-level `system` instead).
    System,
    /// OpenAI `developer` message; treated as system text by dialects without it.
    Developer,
    /// The user. Anthropic tool results live in user messages.
    User,
    /// The model.
    Assistant,
    /// OpenAI `tool` message: exactly one [`ContentBlock::ToolResult`].
    Tool,
    /// OpenAI's deprecated `function` message (a result by function name, no call id);
    /// kept for OpenAI upstreams, refused by dialects that need call ids.
    Function,
}

impl Role {
    /// The OpenAI name of the role (Anthropic uses the `user`/`assistant` subset).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }
}

/// How a content field was written on the wire, so the same dialect can write it back
/// the same way. Encoders fall back to [`ContentForm::Blocks`] whenever the blocks no
/// longer fit the recorded form (for example a string form holding two blocks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentForm {
    /// A JSON string: one text block.
    String,
    /// An array of blocks or parts.
    #[default]
    Blocks,
    /// An explicit `null` (OpenAI assistant messages that only call tools).
    Null,
    /// The field was absent.
    Absent,
}

/// Content of a message, a system prompt or a tool result.
#[derive(Clone, Debug, Default)]
pub struct Content {
    /// The blocks, in order.
    pub blocks: Vec<ContentBlock>,
    /// How the content was written.
    pub form: ContentForm,
}

impl Content {
    /// Plain text content, written as a string.
    pub fn text(text: impl Into<JsonStr>) -> Self {
        Content {
            blocks: vec![ContentBlock::Text(TextBlock::new(text))],
            form: ContentForm::String,
        }
    }

    /// Content from blocks, written as an array.
    pub fn blocks(blocks: Vec<ContentBlock>) -> Self {
        Content {
            blocks,
            form: ContentForm::Blocks,
        }
    }

    /// If the content is exactly one text block with no annotations, its text: the case a
    /// dialect may write as a plain string.
    pub fn as_plain_text(&self) -> Option<&JsonStr> {
        match self.blocks.as_slice() {
            [ContentBlock::Text(t)] if t.cache_control.is_none() && t.extra.is_empty() => {
                Some(&t.text)
            }
            _ => None,
        }
    }

    /// All text blocks joined with `sep`.
    pub fn joined_text(&self, sep: &str) -> String {
        let mut out = String::new();
        for b in &self.blocks {
            if let ContentBlock::Text(t) = b {
                if !out.is_empty() {
                    out.push_str(sep);
                }
                out.push_str(&t.text.as_str());
            }
        }
        out
    }
}

/// One message of a conversation.
#[derive(Clone, Debug)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said, including tool calls (assistant) and tool results (user, tool).
    pub content: Content,
    /// Unknown fields of the message object.
    pub extra: Extra,
}

impl Message {
    /// A message with plain text content.
    pub fn text(role: Role, text: impl Into<JsonStr>) -> Self {
        Message {
            role,
            content: Content::text(text),
            extra: Extra::new(),
        }
    }

    /// The refusal an OpenAI assistant message carries in place of text (`refusal` beside
    /// a null `content`), for dialects that have a refusal only as text.
    pub fn refusal_text(&self) -> Option<JsonStr> {
        if self.role != Role::Assistant
            || self
                .content
                .blocks
                .iter()
                .any(|b| matches!(b, ContentBlock::Text(t) if !t.text.is_empty()))
        {
            return None;
        }
        JsonStr::from_raw_ref(self.extra.get("refusal")?).filter(|t| !t.is_empty())
    }
}

/// The text of an OpenAI `{"type": "refusal", "refusal": "..."}` content part (kept
/// verbatim as an unknown block), when the block is one.
pub(crate) fn refusal_part(b: &ContentBlock) -> Option<JsonStr> {
    let ContentBlock::Unknown(u) = b else {
        return None;
    };
    if u.dialect != Dialect::OpenAi || u.type_name.as_deref() != Some("refusal") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Part {
        refusal: JsonStr,
    }
    serde_json::from_str::<Part>(u.raw.get())
        .ok()
        .map(|p| p.refusal)
        .filter(|t| !t.is_empty())
}

/// A piece of content.
#[derive(Clone, Debug)]
pub enum ContentBlock {
    /// Text.
    Text(TextBlock),
    /// An image.
    Image(ImageBlock),
    /// A document (PDF, plain text) given inline or by URL.
    Document(DocumentBlock),
    /// A tool call made by the model.
    ToolUse(ToolUseBlock),
    /// The result of a tool call, sent back by the client.
    ToolResult(ToolResultBlock),
    /// Visible reasoning, with the signature that lets it be sent back.
    Thinking(ThinkingBlock),
    /// Encrypted reasoning.
    RedactedThinking(RedactedThinkingBlock),
    /// A block type the decoding dialect does not model, kept verbatim.
    Unknown(UnknownBlock),
}

/// The `type_name` of an OpenAI tool call kept verbatim as an unknown block: one not in
/// the exact shape of a function call (a custom tool call; or a call without its id or
/// `type`, or whose arguments are not a string), so that OpenAI gets it back unchanged.
pub const OPENAI_TOOL_CALL: &str = "openai_tool_call";

impl UnknownBlock {
    /// An OpenAI tool call kept verbatim, read as a function call for a dialect that has
    /// no other way to carry it: the function's name; its id, else `fallback_id`; its
    /// arguments, a string as it is, an object as its text, null or missing as none.
    /// `None` for anything else (a custom tool call, which has no function).
    pub fn lenient_tool_call(&self, fallback_id: &str) -> Option<ToolUseBlock> {
        if self.dialect != Dialect::OpenAi || self.type_name.as_deref() != Some(OPENAI_TOOL_CALL) {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Call {
            id: Option<String>,
            #[serde(rename = "type")]
            ty: Option<String>,
            function: Option<Func>,
        }
        #[derive(serde::Deserialize)]
        struct Func {
            name: Option<String>,
            arguments: Option<RawJson>,
        }
        let call: Call = serde_json::from_str(self.raw.get()).ok()?;
        if call.ty.as_deref().is_some_and(|t| t != "function") {
            return None;
        }
        let f = call.function?;
        let name = f.name.filter(|n| !n.is_empty())?;
        let arguments = match f.arguments {
            None => String::new(),
            Some(a) => match serde_json::from_str::<Option<String>>(a.get()) {
                Ok(s) => s.unwrap_or_default(),
                Err(_) => a.get().to_owned(),
            },
        };
        Some(ToolUseBlock {
            id: call
                .id
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| fallback_id.to_owned()),
            name,
            input: ToolInput::Arguments(arguments),
            cache_control: None,
            extra: Extra::new(),
        })
    }
}

/// `blocks` with OpenAI tool calls kept verbatim read as function calls where they can be
/// ([`UnknownBlock::lenient_tool_call`]); `None` when there is none to read. A call
/// without an id gets, in an answer (`answer`), a [`generated_id`](crate::generated_id):
/// unique, as the client will send it back and may meet the same call again in a later
/// turn; in a request, a hash of the call, so that encoding the same
/// history twice (a retry on the next target) gives the same ids.
pub fn lenient_tool_calls(blocks: &[ContentBlock], answer: bool) -> Option<Vec<ContentBlock>> {
    let is_call = |b: &ContentBlock| match b {
        ContentBlock::Unknown(u) => u.lenient_tool_call("").is_some(),
        _ => false,
    };
    if !blocks.iter().any(is_call) {
        return None;
    }
    let read = |b: &ContentBlock| match b {
        ContentBlock::Unknown(u) => u.lenient_tool_call(&if answer {
            crate::generated_id("call_")
        } else {
            format!("call_{:016x}", fnv(u.raw.get().as_bytes()))
        }),
        _ => None,
    };
    Some(
        blocks
            .iter()
            .map(|b| read(b).map_or_else(|| b.clone(), ContentBlock::ToolUse))
            .collect(),
    )
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ContentBlock {
    /// A short name for the block type, for errors.
    pub fn type_name(&self) -> &str {
        match self {
            ContentBlock::Text(_) => "text",
            ContentBlock::Image(_) => "image",
            ContentBlock::Document(_) => "document",
            ContentBlock::ToolUse(_) => "tool_use",
            ContentBlock::ToolResult(_) => "tool_result",
            ContentBlock::Thinking(_) => "thinking",
            ContentBlock::RedactedThinking(_) => "redacted_thinking",
            ContentBlock::Unknown(u) => u.type_name.as_deref().unwrap_or("unknown"),
        }
    }
}

/// Text.
#[derive(Clone, Debug, Default)]
pub struct TextBlock {
    /// The text.
    pub text: JsonStr,
    /// Anthropic prompt-caching marker, verbatim.
    pub cache_control: Option<RawJson>,
    /// Unknown fields (citations, ...).
    pub extra: Extra,
}

impl TextBlock {
    /// Plain text.
    pub fn new(text: impl Into<JsonStr>) -> Self {
        // Not `..Default::default()`: that would build (and drop) an empty token.
        TextBlock {
            text: text.into(),
            cache_control: None,
            extra: Extra::new(),
        }
    }
}

/// Where an image or document comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaSource {
    /// Inline bytes, base64-encoded.
    Base64 {
        /// MIME type, e.g. `image/png`.
        media_type: String,
        /// The base64 payload (no `data:` prefix).
        data: String,
    },
    /// A URL the provider fetches.
    Url(String),
    /// Plain text (documents only).
    Text {
        /// MIME type, normally `text/plain`.
        media_type: String,
        /// The text.
        data: String,
    },
}

/// An image.
#[derive(Clone, Debug)]
pub struct ImageBlock {
    /// The image.
    pub source: MediaSource,
    /// OpenAI `detail` (`low`, `high`, `auto`).
    pub detail: Option<String>,
    /// Anthropic prompt-caching marker.
    pub cache_control: Option<RawJson>,
    /// Unknown fields, of the block or of its source object.
    pub extra: Extra,
}

/// A document.
#[derive(Clone, Debug)]
pub struct DocumentBlock {
    /// The document.
    pub source: MediaSource,
    /// A title or file name.
    pub title: Option<String>,
    /// Anthropic prompt-caching marker.
    pub cache_control: Option<RawJson>,
    /// Unknown fields.
    pub extra: Extra,
}

/// The arguments of a tool call, as the originating dialect wrote them.
#[derive(Clone, Debug)]
pub enum ToolInput {
    /// A JSON object (Anthropic `input`), verbatim.
    Json(RawJson),
    /// A string holding JSON (OpenAI `arguments`), verbatim; it may be invalid JSON, which
    /// is only an error when a dialect needs the object.
    Arguments(String),
}

impl ToolInput {
    /// The arguments as a JSON object text, for dialects that carry an object.
    ///
    /// OpenAI strings are validated: one that is not a JSON object (empty, or a model's
    /// broken or cut-short output) becomes `{}`. The client then gets a call it can answer
    /// with an error, and a conversation holding such a call can go on, where refusing it
    /// would lose the whole response, or block the conversation for good.
    pub fn to_object(&self) -> RawJson {
        match self {
            ToolInput::Json(raw) => raw.clone(),
            ToolInput::Arguments(s) => serde_json::from_str::<RawJson>(s.trim())
                .ok()
                .filter(|raw| raw.get().starts_with('{'))
                .unwrap_or_else(|| crate::raw::to_raw(&serde_json::Map::new())),
        }
    }

    /// The arguments as the string OpenAI carries (compact JSON for objects).
    pub fn as_arguments(&self) -> std::borrow::Cow<'_, str> {
        match self {
            ToolInput::Json(raw) => crate::wire::compact_json(raw.get()),
            ToolInput::Arguments(s) => std::borrow::Cow::Borrowed(s),
        }
    }
}

/// A tool call.
#[derive(Clone, Debug)]
pub struct ToolUseBlock {
    /// The call id; preserved exactly across dialects when valid for the target.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments.
    pub input: ToolInput,
    /// Anthropic prompt-caching marker.
    pub cache_control: Option<RawJson>,
    /// Unknown fields (of the OpenAI `function` object for OpenAI-origin calls).
    pub extra: Extra,
}

/// A tool result.
#[derive(Clone, Debug)]
pub struct ToolResultBlock {
    /// The id of the call this answers.
    pub tool_use_id: String,
    /// The result: text, or blocks (images allowed by Anthropic).
    pub content: Content,
    /// Whether the tool failed.
    pub is_error: Option<bool>,
    /// Anthropic prompt-caching marker.
    pub cache_control: Option<RawJson>,
    /// Unknown fields.
    pub extra: Extra,
}

/// Visible reasoning.
#[derive(Clone, Debug, Default)]
pub struct ThinkingBlock {
    /// The reasoning text.
    pub thinking: JsonStr,
    /// Anthropic's signature; must be sent back unmodified. `None` when the source dialect
    /// has none (OpenAI-compatible `reasoning_content`).
    pub signature: Option<String>,
    /// Unknown fields.
    pub extra: Extra,
}

impl ThinkingBlock {
    /// Whether its signature is another provider's state carried through a client
    /// ([`carried_signature`]): Anthropic refuses it as a signature.
    pub fn carries_state(&self) -> bool {
        self.signature.as_deref().is_some_and(carried_signature)
    }
}

/// The prefixes of thinking signatures that are not Anthropic's but another upstream's
/// state riding on a thinking block through Anthropic clients: Gemini's thought
/// signatures (`weir-gemini`) and OpenAI-compatible `reasoning_details` (`weir-openai`).
pub const CARRIED_SIGNATURE_PREFIXES: [&str; 3] = [
    "gemini-thought:",
    "gemini-next-part:",
    "openai-reasoning-details:",
];

/// Whether a thinking signature is one of [`CARRIED_SIGNATURE_PREFIXES`].
pub fn carried_signature(signature: &str) -> bool {
    CARRIED_SIGNATURE_PREFIXES
        .iter()
        .any(|p| signature.starts_with(p))
}

/// What follows a tool call's own id, in the ids Weir writes for OpenAI clients, before
/// the length of the signature Gemini put on the call and the signature itself:
/// `<id>__wsig<length>_<signature>`. OpenAI clients keep no thinking blocks, but every one
/// of them sends a call's id back, with the call and with its result; the length tells a
/// signature whole from one a client cut short.
pub const SIGNED_ID_MARK: &str = "__wsig";

/// LiteLLM's form of the same, `<id>__thought__<signature>`: read (a conversation begun
/// through LiteLLM), never written.
pub const LITELLM_SIGNED_ID_SEPARATOR: &str = "__thought__";

/// A tool call's id for an OpenAI client, carrying the `gemini-next-part:` signature of
/// the (empty) thinking block just before the call, if any ([`SIGNED_ID_MARK`]).
pub fn signed_call_id<'a>(id: &'a str, carrier: Option<&str>) -> std::borrow::Cow<'a, str> {
    match carrier.and_then(|s| s.strip_prefix(CARRIED_SIGNATURE_PREFIXES[1])) {
        Some(sig) if !sig.is_empty() => format!("{id}{SIGNED_ID_MARK}{}_{sig}", sig.len()).into(),
        _ => id.into(),
    }
}

/// Weir's form of a signed id, split: the call's own id and the signature, whole.
fn weir_signed(id: &str) -> Option<(&str, &str)> {
    // (A signature is base64, which has no `_`: the last mark is the one.)
    let at = id.rfind(SIGNED_ID_MARK)?;
    let (own, rest) = (&id[..at], &id[at + SIGNED_ID_MARK.len()..]);
    let (len, sig) = rest.split_once('_')?;
    let whole = !len.is_empty()
        && len.bytes().all(|b| b.is_ascii_digit())
        && len.parse::<usize>().ok() == Some(sig.len());
    (whole && !own.is_empty() && !sig.is_empty()).then_some((own, sig))
}

/// LiteLLM's form of a signed id, split, where what follows is whole base64 (a client
/// that cut its ids short leaves a piece, worse than none).
fn litellm_signed(id: &str) -> Option<(&str, &str)> {
    let (own, sig) = id.split_once(LITELLM_SIGNED_ID_SEPARATOR)?;
    let bare = sig.trim_end_matches('=');
    let whole = sig.len() % 4 == 0
        && bare.len() + 2 >= sig.len()
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    (whole && !own.is_empty() && !sig.is_empty()).then_some((own, sig))
}

/// A tool call id an OpenAI client sent back, split into the call's own id and the
/// thinking signature it carried (Weir's form or LiteLLM's), prefixed as the thinking
/// block's. `None` for any other id, and for a signature cut short: Gemini then takes
/// the call with Google's placeholder.
pub fn split_signed_id(id: &str) -> Option<(&str, String)> {
    let (own, sig) = weir_signed(id).or_else(|| litellm_signed(id))?;
    Some((own, format!("{}{sig}", CARRIED_SIGNATURE_PREFIXES[1])))
}

/// A tool call's id without a signature Weir wrote into it: what an OpenAI-compatible
/// upstream gets (it never saw the signature; ids of its own, LiteLLM's signed ones
/// included, go as they came).
pub fn without_weir_signature(id: &str) -> &str {
    match id.rfind(SIGNED_ID_MARK) {
        Some(at) if at > 0 => &id[..at],
        _ => id,
    }
}

/// A tool call's own id, without a signature it carries in either form: what goes to
/// Gemini (`functionCall.id`, `functionResponse.id`) and to Anthropic-dialect upstreams.
pub fn own_call_id(id: &str) -> &str {
    let id = without_weir_signature(id);
    match id.split_once(LITELLM_SIGNED_ID_SEPARATOR) {
        Some((own, _)) if !own.is_empty() => own,
        _ => id,
    }
}

/// Encrypted reasoning.
#[derive(Clone, Debug)]
pub struct RedactedThinkingBlock {
    /// Opaque data; must be sent back unmodified.
    pub data: String,
    /// Unknown fields.
    pub extra: Extra,
}

/// A block the decoder does not model (server tool calls and results, audio, ...).
#[derive(Clone, Debug)]
pub struct UnknownBlock {
    /// The dialect it came from; only that dialect can write it back.
    pub dialect: Dialect,
    /// Its `type`, when it had one.
    pub type_name: Option<String>,
    /// The whole block, verbatim.
    pub raw: RawJson,
}

/// Splits `data:<media type>[;param=value...];base64,<data>` into the bare media type
/// (parameters such as `charset` dropped: sources take a media type alone) and the data.
/// The scheme and `base64` are read in any case; a URL without a media type gets the one
/// its data's first bytes show (PNG, JPEG, GIF, WebP, PDF), as browsers sniff it.
pub fn parse_data_url(url: &str) -> Option<(String, String)> {
    let (media_type, data) = inline_data_url(url)?;
    let media_type = media_type.to_ascii_lowercase();
    // (A common misspelling browsers and OpenAI accept; Anthropic, Bedrock and Gemini
    // take only the registered name.)
    let media_type = if media_type == "image/jpg" {
        "image/jpeg".to_owned()
    } else {
        media_type
    };
    Some((media_type, data.to_owned()))
}

/// The media type base64 data's first bytes show, for the kinds a model takes.
fn sniffed(data: &str) -> Option<&'static str> {
    const MAGIC: &[(&str, &str)] = &[
        ("iVBORw0KGgo", "image/png"),
        ("/9j/", "image/jpeg"),
        ("R0lGOD", "image/gif"),
        ("JVBERi0", "application/pdf"),
    ];
    if let Some(&(_, t)) = MAGIC.iter().find(|(m, _)| data.starts_with(m)) {
        return Some(t);
    }
    // `RIFF`, four bytes of size, `WEBP` (bytes 9-11, "EBP", are characters 12-15).
    (data.starts_with("UklGR") && data.get(12..16) == Some("RUJQ")).then_some("image/webp")
}

/// A URL source that holds its data inline (the form every encoder reads from a URL
/// source), borrowed: [`parse_data_url`]'s media type as written (parameters dropped, or
/// sniffed from the data) and the data.
pub fn inline_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .get(..5)
        .filter(|s| s.eq_ignore_ascii_case("data:"))
        .map(|_| &url[5..])?;
    let (meta, data) = rest.split_once(',')?;
    let cut = meta.len().checked_sub(7)?;
    if !meta.get(cut..)?.eq_ignore_ascii_case(";base64") {
        return None;
    }
    let media_type = meta[..cut].split(';').next()?.trim();
    let media_type = if media_type.is_empty() {
        sniffed(data)?
    } else if media_type.contains('/') {
        media_type
    } else {
        return None;
    };
    Some((media_type, data))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// The inline form, its scheme and `;base64` in any case (as URLs allow); anything
    /// else is not data to send.
    #[test]
    fn inline_data_urls() {
        for (url, want) in [
            ("data:image/png;base64,AAAA", Some(("image/png", "AAAA"))),
            ("DATA:image/png;BASE64,AAAA", Some(("image/png", "AAAA"))),
            ("data:image/png,AAAA", None),
            ("data:;base64,AAAA", None),
            // No media type, but the data shows one; parameters are no part of it.
            (
                "data:;base64,iVBORw0KGgoAAAA",
                Some(("image/png", "iVBORw0KGgoAAAA")),
            ),
            (
                "data:image/png;charset=x;base64,AAAA",
                Some(("image/png", "AAAA")),
            ),
            ("data:png;base64,AAAA", None),
            (" data:image/png;base64,AAAA", None),
            ("https://x/y.png", None),
        ] {
            assert_eq!(super::inline_data_url(url), want, "{url}");
        }
    }
}

#[cfg(test)]
mod signed_id_tests {
    use super::*;

    #[test]
    fn a_signature_rides_in_an_id_and_comes_out_whole() {
        let carrier = format!("{}QUJD+/9=", CARRIED_SIGNATURE_PREFIXES[1]);
        let id = signed_call_id("call_1", Some(&carrier));
        assert_eq!(id, "call_1__wsig8_QUJD+/9=");
        assert_eq!(split_signed_id(&id), Some(("call_1", carrier.clone())));
        assert_eq!(own_call_id(&id), "call_1");
        assert_eq!(without_weir_signature(&id), "call_1");
        // LiteLLM's form is read too, and kept for OpenAI-compatible upstreams.
        let theirs = "call_1__thought__QUJD+/9=";
        assert_eq!(split_signed_id(theirs), Some(("call_1", carrier)));
        assert_eq!(own_call_id(theirs), "call_1");
        assert_eq!(without_weir_signature(theirs), theirs);
        // Only Gemini's next-part signatures ride (a thought's own stays on its block).
        let thought = format!("{}QUJD", CARRIED_SIGNATURE_PREFIXES[0]);
        assert_eq!(signed_call_id("call_1", Some(&thought)), "call_1");
        assert_eq!(signed_call_id("call_1", None), "call_1");
    }

    #[test]
    fn a_cut_or_foreign_suffix_is_no_signature() {
        for id in [
            "call_1__wsig8_QUJD+/9",    // cut: shorter than its length
            "call_1__wsig8_QUJD",       // cut at a multiple of 4
            "call_1__wsig_QUJD",        // no length
            "call_1__wsig4_",           // nothing
            "call_1__thought__QUJD+/9", // cut: not whole base64
            "call_1__thought__QU===",   // too much padding
            "call_1__thought__not base64!",
            "call_1__thought__",
            "__thought__QUJD",
            "__wsig4_QUJD",
            "call_1",
        ] {
            assert_eq!(split_signed_id(id), None, "{id}");
        }
        assert_eq!(own_call_id("call_1"), "call_1");
        assert_eq!(own_call_id("__thought__QUJD"), "__thought__QUJD");
        assert_eq!(without_weir_signature("__wsig4_QUJD"), "__wsig4_QUJD");
    }
}
