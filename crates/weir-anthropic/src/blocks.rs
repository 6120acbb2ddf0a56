//! Anthropic content blocks and content fields, decoded in one pass into the canonical
//! model and written back from it.
//!
//! Decoding is single-pass when `type` is the block's first key (what every SDK writes).
//! When it is not, the block is collected raw, rewritten with `type` first and decoded
//! again: correct for any key order, fast for the usual one.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use weir_model::raw::{to_raw, Key};
pub(crate) use weir_model::wire::opt_value;
use weir_model::wire::{object_text, opt_raw, RawFields};
use weir_model::{
    Content, ContentBlock, ContentForm, Dialect, DocumentBlock, Extra, ImageBlock, JsonStr,
    MediaSource, RawJson, RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolInput,
    ToolResultBlock, ToolUseBlock, UnknownBlock,
};

/// A block decoded from Anthropic JSON.
pub(crate) struct ABlock(pub ContentBlock);

impl<'de> Deserialize<'de> for ABlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(BlockVisitor)
    }
}

struct BlockVisitor;

impl<'de> Visitor<'de> for BlockVisitor {
    type Value = ABlock;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a content block object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ABlock, A::Error> {
        let Some(first) = map.next_key::<Key<'de>>()? else {
            return Err(de::Error::custom("content block has no `type`"));
        };
        if first.as_str() != "type" {
            return reordered(first, map);
        }
        let ty: Key<'de> = map.next_value()?;
        let block = match ty.as_str() {
            "text" => text_block(map)?,
            "image" => media_block(map, "image")?,
            "document" => media_block(map, "document")?,
            "tool_use" => tool_use_block(map)?,
            "tool_result" => tool_result_block(map)?,
            "thinking" => thinking_block(map)?,
            "redacted_thinking" => redacted_block(map)?,
            other => unknown_block(other, map)?,
        };
        Ok(ABlock(block))
    }
}

/// The slow path: `type` was not the first key. Collect the object raw, put `type` first,
/// and decode it again.
fn reordered<'de, A: MapAccess<'de>>(first: Key<'de>, mut map: A) -> Result<ABlock, A::Error> {
    let mut fields: Vec<(String, RawJson)> = vec![(first.into_owned(), map.next_value()?)];
    while let Some(k) = map.next_key::<Key<'de>>()? {
        fields.push((k.into_owned(), map.next_value()?));
    }
    let Some(pos) = fields.iter().position(|(k, _)| k == "type") else {
        return Err(de::Error::custom("content block has no `type`"));
    };
    let ty = fields.remove(pos);
    fields.insert(0, ty);
    let text = object_text(fields.iter().map(|(k, v)| (k.as_str(), &**v)));
    let _nested = weir_model::wire::NestGuard::enter()?;
    let block: ABlock =
        serde_json::from_str(&text).map_err(|e| weir_model::wire::nested_error(&e))?;
    Ok(block)
}

fn unknown_block<'de, A: MapAccess<'de>>(ty: &str, mut map: A) -> Result<ContentBlock, A::Error> {
    let mut fields: Vec<(String, RawJson)> = vec![("type".to_owned(), to_raw(ty))];
    while let Some(k) = map.next_key::<Key<'de>>()? {
        fields.push((k.into_owned(), map.next_value()?));
    }
    let text = object_text(fields.iter().map(|(k, v)| (k.as_str(), &**v)));
    let raw = RawValue::from_string(text).map_err(de::Error::custom)?;
    Ok(ContentBlock::Unknown(UnknownBlock {
        dialect: Dialect::Anthropic,
        type_name: Some(ty.to_owned()),
        raw,
    }))
}

fn text_block<'de, A: MapAccess<'de>>(mut map: A) -> Result<ContentBlock, A::Error> {
    let mut b = TextBlock::default();
    let mut have_text = false;
    while let Some(k) = map.next_key::<Key<'de>>()? {
        match k.as_str() {
            "text" => {
                b.text = map.next_value()?;
                have_text = true;
            }
            "cache_control" => cache_control(&mut map, &mut b.cache_control, &mut b.extra)?,
            _ => b.extra.insert(k.into_owned(), map.next_value()?),
        }
    }
    if !have_text {
        return Err(de::Error::missing_field("text"));
    }
    Ok(ContentBlock::Text(b))
}

pub(crate) fn cache_control<'de, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Option<RawJson>,
    extra: &mut Extra,
) -> Result<(), A::Error> {
    match opt_raw(map)? {
        Some(raw) => *slot = Some(raw),
        None => extra.insert_null("cache_control"),
    }
    Ok(())
}

/// An image or document `source` object.
struct ASource(Result<MediaSource, RawJson>);

impl<'de> Deserialize<'de> for ASource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Sources are small; decoding through a map of raw values keeps the unknown-form
        // fallback (file ids, content sources) lossless.
        let fields: Vec<(Key<'de>, &'de RawValue)> = RawFields::deserialize(d)?.0;
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.as_str() == name)
                .map(|(_, v)| *v)
        };
        let string = |name: &str| -> Option<String> {
            get(name).and_then(|v| serde_json::from_str(v.get()).ok())
        };
        let ty = string("type");
        let known = |names: &[&str]| fields.iter().all(|(k, _)| names.contains(&k.as_str()));
        let parsed = match ty.as_deref() {
            Some("base64") if known(&["type", "media_type", "data"]) => {
                match (string("media_type"), string("data")) {
                    (Some(media_type), Some(data)) => {
                        Some(MediaSource::Base64 { media_type, data })
                    }
                    _ => None,
                }
            }
            Some("url") if known(&["type", "url"]) => string("url").map(MediaSource::Url),
            Some("text") if known(&["type", "media_type", "data"]) => {
                match (string("media_type"), string("data")) {
                    (Some(media_type), Some(data)) => Some(MediaSource::Text { media_type, data }),
                    _ => None,
                }
            }
            _ => None,
        };
        Ok(ASource(match parsed {
            Some(s) => Ok(s),
            None => Err(RawValue::from_string(object_text(
                fields.iter().map(|(k, v)| (k.as_str(), *v)),
            ))
            .map_err(de::Error::custom)?),
        }))
    }
}

/// Image and document blocks. A source the canonical model does not name (file ids,
/// nested content) makes the whole block unknown, kept verbatim.
fn media_block<'de, A: MapAccess<'de>>(mut map: A, ty: &str) -> Result<ContentBlock, A::Error> {
    let mut fields: Vec<(String, RawJson)> = vec![("type".to_owned(), to_raw(ty))];
    let mut source = None;
    let mut title = None;
    let mut cache = None;
    let mut extra = Extra::new();
    while let Some(k) = map.next_key::<Key<'de>>()? {
        match k.as_str() {
            "source" => {
                let raw: RawJson = map.next_value()?;
                let parsed: ASource = serde_json::from_str(raw.get())
                    .map_err(|e| weir_model::wire::nested_error(&e))?;
                source = Some(parsed.0);
                fields.push(("source".to_owned(), raw));
            }
            "title" if ty == "document" => {
                let raw: RawJson = map.next_value()?;
                title = serde_json::from_str::<Option<String>>(raw.get())
                    .map_err(|e| weir_model::wire::nested_error(&e))?;
                if title.is_none() {
                    extra.insert_null("title");
                }
                fields.push(("title".to_owned(), raw));
            }
            "cache_control" => {
                let raw: RawJson = map.next_value()?;
                if raw.get() == "null" {
                    extra.insert_null("cache_control");
                } else {
                    cache = Some(raw.clone());
                }
                fields.push(("cache_control".to_owned(), raw));
            }
            _ => {
                let raw: RawJson = map.next_value()?;
                extra.insert(k.as_str(), raw.clone());
                fields.push((k.into_owned(), raw));
            }
        }
    }
    match source {
        Some(Ok(source)) => Ok(if ty == "image" {
            ContentBlock::Image(ImageBlock {
                source,
                detail: None,
                cache_control: cache,
                extra,
            })
        } else {
            ContentBlock::Document(DocumentBlock {
                source,
                title,
                cache_control: cache,
                extra,
            })
        }),
        Some(Err(_)) => {
            let text = object_text(fields.iter().map(|(k, v)| (k.as_str(), &**v)));
            Ok(ContentBlock::Unknown(UnknownBlock {
                dialect: Dialect::Anthropic,
                type_name: Some(ty.to_owned()),
                raw: RawValue::from_string(text).map_err(de::Error::custom)?,
            }))
        }
        None => Err(de::Error::missing_field("source")),
    }
}

fn tool_use_block<'de, A: MapAccess<'de>>(mut map: A) -> Result<ContentBlock, A::Error> {
    let (mut id, mut name, mut input) = (None, None, None);
    let mut cache = None;
    let mut extra = Extra::new();
    while let Some(k) = map.next_key::<Key<'de>>()? {
        match k.as_str() {
            "id" => id = Some(map.next_value::<String>()?),
            "name" => name = Some(map.next_value::<String>()?),
            "input" => input = Some(map.next_value::<RawJson>()?),
            "cache_control" => cache_control(&mut map, &mut cache, &mut extra)?,
            _ => extra.insert(k.into_owned(), map.next_value()?),
        }
    }
    Ok(ContentBlock::ToolUse(ToolUseBlock {
        id: id.ok_or_else(|| de::Error::missing_field("id"))?,
        name: name.ok_or_else(|| de::Error::missing_field("name"))?,
        input: ToolInput::Json(input.ok_or_else(|| de::Error::missing_field("input"))?),
        cache_control: cache,
        extra,
    }))
}

fn tool_result_block<'de, A: MapAccess<'de>>(mut map: A) -> Result<ContentBlock, A::Error> {
    let mut id = None;
    let mut content = Content {
        blocks: Vec::new(),
        form: ContentForm::Absent,
    };
    let mut is_error = None;
    let mut cache = None;
    let mut extra = Extra::new();
    while let Some(k) = map.next_key::<Key<'de>>()? {
        match k.as_str() {
            "tool_use_id" => id = Some(map.next_value::<String>()?),
            // Tool results are often whole files full of escapes: take a string as its raw
            // token (a scan and a copy) instead of unescaping and re-escaping it.
            "content" => content = map.next_value::<RawContent>()?.0,
            "is_error" => is_error = opt_value(&mut map, &k, &mut extra)?,
            "cache_control" => cache_control(&mut map, &mut cache, &mut extra)?,
            _ => extra.insert(k.into_owned(), map.next_value()?),
        }
    }
    Ok(ContentBlock::ToolResult(ToolResultBlock {
        tool_use_id: id.ok_or_else(|| de::Error::missing_field("tool_use_id"))?,
        content,
        is_error,
        cache_control: cache,
        extra,
    }))
}

fn thinking_block<'de, A: MapAccess<'de>>(mut map: A) -> Result<ContentBlock, A::Error> {
    let mut b = ThinkingBlock::default();
    while let Some(k) = map.next_key::<Key<'de>>()? {
        match k.as_str() {
            "thinking" => b.thinking = map.next_value()?,
            "signature" => b.signature = opt_value(&mut map, &k, &mut b.extra)?,
            _ => b.extra.insert(k.into_owned(), map.next_value()?),
        }
    }
    Ok(ContentBlock::Thinking(b))
}

fn redacted_block<'de, A: MapAccess<'de>>(mut map: A) -> Result<ContentBlock, A::Error> {
    let mut data = None;
    let mut extra = Extra::new();
    while let Some(k) = map.next_key::<Key<'de>>()? {
        match k.as_str() {
            "data" => data = Some(map.next_value::<String>()?),
            _ => extra.insert(k.into_owned(), map.next_value()?),
        }
    }
    Ok(ContentBlock::RedactedThinking(RedactedThinkingBlock {
        data: data.ok_or_else(|| de::Error::missing_field("data"))?,
        extra,
    }))
}

/// Content read raw first: a string becomes its token unchanged; an array is decoded.
pub(crate) struct RawContent(pub Content);

impl<'de> Deserialize<'de> for RawContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        if let Some(s) = JsonStr::from_raw_ref(raw) {
            return Ok(RawContent(Content::text(s)));
        }
        let _nested = weir_model::wire::NestGuard::enter()?;
        let c: AContent =
            serde_json::from_str(raw.get()).map_err(|e| weir_model::wire::nested_error(&e))?;
        Ok(RawContent(c.0))
    }
}

/// A content field: a string, an array of blocks, or `null`. Strings stay JSON tokens
/// (tool results are often whole files: they are copied, never unescaped).
pub(crate) struct AContent(pub Content);

impl<'de> Deserialize<'de> for AContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AContent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content blocks")
            }
            // A string without escapes arrives borrowed: its token is the same bytes in
            // quotes, so no re-escaping is needed.
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<AContent, E> {
                Ok(AContent(Content::text(JsonStr::from_unescaped(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AContent, E> {
                Ok(AContent(Content::text(JsonStr::new(v))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<AContent, E> {
                Ok(AContent(Content {
                    blocks: Vec::new(),
                    form: ContentForm::Null,
                }))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<AContent, S::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                let mut i = 0usize;
                while let Some(b) = seq.next_element_seed(Indexed(i))? {
                    blocks.push(b);
                    i += 1;
                }
                Ok(AContent(Content::blocks(blocks)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes one block, naming its index in any error.
struct Indexed(usize);

impl<'de> DeserializeSeed<'de> for Indexed {
    type Value = ContentBlock;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ContentBlock, D::Error> {
        ABlock::deserialize(d)
            .map(|b| b.0)
            .map_err(|e| de::Error::custom(format_args!("content[{}]: {e}", self.0)))
    }
}
