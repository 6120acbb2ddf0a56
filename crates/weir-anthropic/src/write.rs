//! Writing Anthropic JSON from the canonical model: blocks, content, usage. Shared by the
//! request, response and stream encoders. Text arrives as JSON tokens and is copied.

use serde_json::value::RawValue;

use crate::ids::sanitize_tool_id;
use weir_model::json_writer::JsonWriter;
use weir_model::{Content, ContentBlock, ContentForm, Dialect, MediaSource, ToolInput, Usage};

/// Whether to write fields kept from the source (`Extra`, unknown blocks): only when the
/// source was Anthropic.
#[derive(Clone, Copy)]
pub(crate) struct Out {
    pub same: bool,
    /// Writing an answer (not a request): another dialect's text may carry citations made
    /// in Anthropic's shape.
    pub answer: bool,
}

/// Per-block overrides prepared by the request planner.
#[derive(Clone, Copy, Default)]
pub(crate) struct BlockEdits<'a> {
    /// For tool_use / tool_result: the id to write (sanitized when translating).
    pub id: Option<&'a str>,
    /// For tool_use: the validated input object.
    pub input: Option<&'a RawValue>,
}

fn source(w: &mut JsonWriter, s: &MediaSource) {
    // `{"type": ty, "media_type": ..., "data": ...}`
    let typed = |w: &mut JsonWriter, ty: &str, media_type: &str, data: &str| {
        w.key("type");
        w.string(ty);
        w.key("media_type");
        w.string(media_type);
        w.key("data");
        w.string(data);
    };
    w.begin_object();
    match s {
        MediaSource::Base64 { media_type, data } => typed(w, "base64", media_type, data),
        // Data kept as a URL goes as what Anthropic takes for it (its `url` sources
        // are fetched over http(s)).
        MediaSource::Url(url) => match weir_model::inline_data_url(url) {
            Some((media_type, data)) => typed(w, "base64", media_type, data),
            None => {
                w.key("type");
                w.raw("\"url\"");
                w.key("url");
                w.string(url);
            }
        },
        MediaSource::Text { media_type, data } => typed(w, "text", media_type, data),
    }
    w.end_object();
}

/// The text a base64 document of a text type holds; an error naming the type for
/// anything Anthropic cannot take.
fn text_of_base64(media_type: &str, data: &str) -> Result<String, String> {
    use base64::Engine as _;
    let mime = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let texty = mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/json" | "application/xml" | "application/x-yaml" | "application/yaml"
        );
    let refused = || {
        format!("a document of type `{media_type}` cannot be sent to Anthropic (PDF or text only)")
    };
    if !texty {
        return Err(refused());
    }
    // Padding optional: clients and data URLs differ.
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = LENIENT
        .decode(data.trim())
        .map_err(|_| format!("a document of type `{media_type}` is not valid base64"))?;
    String::from_utf8(bytes)
        .map_err(|_| format!("a document of type `{media_type}` is not UTF-8 text"))
}

fn cache_control(w: &mut JsonWriter, c: Option<&RawValue>) {
    if let Some(c) = c {
        w.key("cache_control");
        w.raw_value(c);
    }
}

/// Writes one block. Blocks that cannot be expressed for Anthropic are errors.
pub(crate) fn block(
    w: &mut JsonWriter,
    b: &ContentBlock,
    out: Out,
    edits: BlockEdits<'_>,
) -> Result<(), String> {
    let extra = |w: &mut JsonWriter, e: &weir_model::Extra| {
        if out.same {
            w.extra(e, &[]);
        }
    };
    match b {
        ContentBlock::Unknown(u) => {
            if u.dialect != Dialect::Anthropic {
                return Err(format!(
                    "content block `{}` has no form in Anthropic's Messages API",
                    b.type_name()
                ));
            }
            // A search Weir told for another upstream, sent back: not Anthropic's (it
            // would refuse it); the text after it carries what it found.
            if !out.answer && weir_model::web_search::is_told_search(u.raw.get()) {
                return Ok(());
            }
            w.raw_value(&u.raw);
            return Ok(());
        }
        ContentBlock::Text(t) => {
            w.begin_object();
            w.key("type");
            w.raw("\"text\"");
            w.key("text");
            w.json_str(&t.text);
            cache_control(w, t.cache_control.as_deref());
            // Citations Weir made for another upstream's search, sent back: left out
            // (Anthropic would refuse them).
            if out.same
                && !out.answer
                && t.extra
                    .get("citations")
                    .is_some_and(|c| weir_model::web_search::is_told_citations(c.get()))
            {
                w.extra(&t.extra, &["citations"]);
            } else {
                extra(w, &t.extra);
            }
            // Another upstream's citations of web pages, made in Anthropic's shape (Gemini's
            // grounding with Google Search), for an answer.
            if !out.same && out.answer {
                if let Some(c) = t.extra.get("citations") {
                    w.key("citations");
                    w.raw_value(c);
                }
            }
        }
        ContentBlock::Image(i) => {
            if matches!(i.source, MediaSource::Text { .. }) {
                return Err("an image cannot have a text source".into());
            }
            w.begin_object();
            w.key("type");
            // Another dialect's "image" that is a PDF (OpenAI's `image_url` with a PDF
            // data URL): Anthropic takes PDFs as documents only.
            let pdf = !out.same
                && matches!(&i.source, MediaSource::Base64 { media_type, .. } if media_type == "application/pdf");
            w.raw(if pdf { "\"document\"" } else { "\"image\"" });
            w.key("source");
            source(w, &i.source);
            cache_control(w, i.cache_control.as_deref());
            extra(w, &i.extra);
        }
        ContentBlock::Document(d) => {
            w.begin_object();
            w.key("type");
            w.raw("\"document\"");
            w.key("source");
            match &d.source {
                // Anthropic takes base64 documents as PDF only; another dialect's file of
                // text (an OpenAI `file` part of `text/plain`, CSV, JSON...) goes as a
                // plain text source, anything else is refused here rather than upstream.
                MediaSource::Base64 { media_type, data }
                    if !out.same && media_type != "application/pdf" =>
                {
                    let text = text_of_base64(media_type, data)?;
                    source(
                        w,
                        &MediaSource::Text {
                            media_type: "text/plain".into(),
                            data: text,
                        },
                    );
                }
                s => source(w, s),
            }
            if let Some(t) = &d.title {
                w.key("title");
                w.string(t);
            }
            cache_control(w, d.cache_control.as_deref());
            extra(w, &d.extra);
        }
        ContentBlock::ToolUse(t) => {
            w.begin_object();
            w.key("type");
            w.raw("\"tool_use\"");
            w.key("id");
            w.string(edits.id.unwrap_or(&t.id));
            w.key("name");
            w.string(&t.name);
            w.key("input");
            match (edits.input, &t.input) {
                (Some(input), _) => w.raw_value(input),
                (None, ToolInput::Json(raw)) => w.raw_value(raw),
                (None, ToolInput::Arguments(_)) => {
                    return Err("tool_use input was not validated".into())
                }
            }
            cache_control(w, t.cache_control.as_deref());
            extra(w, &t.extra);
        }
        ContentBlock::ToolResult(r) => {
            w.begin_object();
            w.key("type");
            w.raw("\"tool_result\"");
            w.key("tool_use_id");
            w.string(edits.id.unwrap_or(&r.tool_use_id));
            let blank = |b: &ContentBlock| matches!(b, ContentBlock::Text(t) if t.text.is_blank());
            if !out.same && r.content.blocks.iter().any(blank) {
                // Anthropic refuses blank text blocks, which another dialect's tool output
                // may hold (`[{"type": "text", "text": ""}]`): left out, and the content
                // with them when nothing else is left.
                let kept: Vec<&ContentBlock> =
                    r.content.blocks.iter().filter(|b| !blank(b)).collect();
                if !kept.is_empty() {
                    w.key("content");
                    w.begin_array();
                    for b in kept {
                        block(w, b, out, BlockEdits::default())?;
                    }
                    w.end_array();
                }
            } else if r.content.form != ContentForm::Absent || !r.content.blocks.is_empty() {
                w.key("content");
                content(w, &r.content, out)?;
            }
            if let Some(e) = r.is_error {
                w.key("is_error");
                w.bool(e);
            }
            cache_control(w, r.cache_control.as_deref());
            extra(w, &r.extra);
        }
        ContentBlock::Thinking(t) => {
            w.begin_object();
            w.key("type");
            w.raw("\"thinking\"");
            w.key("thinking");
            w.json_str(&t.thinking);
            match &t.signature {
                Some(sig) => {
                    w.key("signature");
                    w.string(sig);
                }
                // Reasoning from another dialect has none, but the field is required in
                // Anthropic's shape (streams carry it as "" too).
                None if !out.same => {
                    w.key("signature");
                    w.string("");
                }
                None => {}
            }
            extra(w, &t.extra);
        }
        ContentBlock::RedactedThinking(r) => {
            w.begin_object();
            w.key("type");
            w.raw("\"redacted_thinking\"");
            w.key("data");
            w.string(&r.data);
            extra(w, &r.extra);
        }
    }
    w.end_object();
    Ok(())
}

/// Writes a content field in its recorded form where it still fits.
pub(crate) fn content(w: &mut JsonWriter, c: &Content, out: Out) -> Result<(), String> {
    match c.form {
        ContentForm::String => {
            if let Some(text) = c.as_plain_text() {
                w.json_str(text);
                return Ok(());
            }
            if c.blocks.is_empty() {
                w.raw("\"\"");
                return Ok(());
            }
        }
        ContentForm::Null | ContentForm::Absent if c.blocks.is_empty() && out.same => {
            w.null();
            return Ok(());
        }
        _ => {}
    }
    w.begin_array();
    for b in &c.blocks {
        // Another upstream's state riding on a thinking block (a turn Gemini or OpenRouter
        // served earlier in the conversation) is no Anthropic signature: Anthropic refuses
        // the whole request for it.
        if matches!(b, ContentBlock::Thinking(t) if t.carries_state()) {
            continue;
        }
        // A tool id Anthropic would refuse (an OpenAI-compatible upstream's, say
        // `functions.Bash:0`, earlier in an Anthropic client's conversation) is rewritten
        // as translation rewrites it, so a call and its result still match; valid ids,
        // the rule, are written as they came.
        let id = match b {
            ContentBlock::ToolUse(t) => Some(sanitize_tool_id(&t.id)),
            ContentBlock::ToolResult(r) => Some(sanitize_tool_id(&r.tool_use_id)),
            _ => None,
        };
        let edits = BlockEdits {
            id: id.as_deref(),
            input: None,
        };
        block(w, b, out, edits)?;
    }
    w.end_array();
    Ok(())
}

/// Writes a `message_delta` event's usage: `output_tokens` always (the field is required),
/// the others only when known. Clients take each field the delta carries as the
/// cumulative figure (the Anthropic SDKs overwrite their snapshot's `input_tokens` and
/// cache counts with the delta's when present), so an unknown count written as 0 would
/// erase the one `message_start` gave.
pub(crate) fn delta_usage(w: &mut JsonWriter, u: &Usage) {
    w.begin_object();
    let known = [
        ("input_tokens", u.input_tokens),
        ("cache_creation_input_tokens", u.cache_write_tokens),
        ("cache_read_input_tokens", u.cache_read_tokens),
    ];
    for (k, v) in known {
        if let Some(v) = v {
            w.key(k);
            w.u64(v);
        }
    }
    w.key("output_tokens");
    w.u64(u.output_tokens.unwrap_or(0));
    thinking_tokens(w, u);
    web_searches(w, u);
    w.end_object();
}

/// Another dialect's web searches (Gemini's grounding queries) as Anthropic's
/// `server_tool_use.web_search_requests`.
fn web_searches(w: &mut JsonWriter, u: &Usage) {
    if let Some(n) = u.web_search_requests {
        w.key("server_tool_use");
        w.begin_object();
        w.key("web_search_requests");
        w.u64(n);
        w.end_object();
    }
}

/// Another dialect's reasoning tokens as Anthropic's `output_tokens_details`, which the
/// SDKs and frameworks read (LangChain's reasoning token count).
fn thinking_tokens(w: &mut JsonWriter, u: &Usage) {
    if let Some(r) = u.reasoning_tokens {
        w.key("output_tokens_details");
        w.begin_object();
        w.key("thinking_tokens");
        w.u64(r);
        w.end_object();
    }
}

/// Writes usage. Usage from other dialects gets Anthropic's semantics (input excludes
/// cache reads and writes, which the canonical model already follows) and always names
/// input and output.
pub(crate) fn usage(w: &mut JsonWriter, u: &Usage, same: bool) {
    w.begin_object();
    if same {
        // A compacted request's counts are summed over its iterations for accounting;
        // the top level said the answer's alone, and says it again.
        let top = u
            .extra
            .get("iterations")
            .and_then(|raw| crate::response::iterations_sum(raw.get(), false));
        let u = match &top {
            Some(t) => &Usage {
                extra: u.extra.clone(),
                ..t.clone()
            },
            None => u,
        };
        let fields = [
            ("input_tokens", u.input_tokens),
            ("output_tokens", u.output_tokens),
            ("cache_read_input_tokens", u.cache_read_tokens),
            ("cache_creation_input_tokens", u.cache_write_tokens),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                w.key(k);
                w.u64(v);
            }
        }
        w.extra(&u.extra, &[]);
    } else {
        w.key("input_tokens");
        w.u64(u.input_tokens.unwrap_or(0));
        w.key("output_tokens");
        w.u64(u.output_tokens.unwrap_or(0));
        w.key("cache_creation_input_tokens");
        w.u64(u.cache_write_tokens.unwrap_or(0));
        w.key("cache_read_input_tokens");
        w.u64(u.cache_read_tokens.unwrap_or(0));
        thinking_tokens(w, u);
        web_searches(w, u);
    }
    w.end_object();
}
