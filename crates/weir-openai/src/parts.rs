//! OpenAI content parts and content fields.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weir_model::raw::to_raw;
use weir_model::wire::{object_text, RawFields};
use weir_model::{
    Content, ContentBlock, ContentForm, Dialect, DocumentBlock, Extra, ImageBlock, JsonStr,
    MediaSource, TextBlock, UnknownBlock,
};

/// A content field: string, array of parts, or `null`. Strings stay JSON tokens.
pub(crate) struct OContent(pub Content);

impl<'de> Deserialize<'de> for OContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OContent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content blocks")
            }
            // A string without escapes arrives borrowed: its token is the same bytes in
            // quotes, so no re-escaping is needed.
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<OContent, E> {
                Ok(OContent(Content::text(JsonStr::from_unescaped(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OContent, E> {
                Ok(OContent(Content::text(JsonStr::new(v))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<OContent, E> {
                Ok(OContent(Content {
                    blocks: Vec::new(),
                    form: ContentForm::Null,
                }))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<OContent, S::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(p) = seq.next_element::<OPart>()? {
                    blocks.push(p.0);
                }
                Ok(OContent(Content::blocks(blocks)))
            }
        }
        d.deserialize_any(V)
    }
}

/// One content part. Text and images are decoded; files with inline data become
/// documents; everything else (audio, refusals, file ids) is kept verbatim.
pub(crate) struct OPart(pub ContentBlock);

impl<'de> Deserialize<'de> for OPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fields = RawFields::deserialize(d)?.0;
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.as_str() == name)
                .map(|(_, v)| *v)
        };
        let ty: Option<String> = get("type").and_then(|v| serde_json::from_str(v.get()).ok());
        let extra_of = |known: &[&str]| {
            let mut e = Extra::new();
            for (k, v) in &fields {
                if !known.contains(&k.as_str()) {
                    e.insert(k.as_str(), (*v).to_owned());
                }
            }
            e
        };
        let block = match ty.as_deref() {
            Some("text") => match get("text").and_then(JsonStr::from_raw_ref) {
                Some(text) => Some(ContentBlock::Text(TextBlock {
                    text,
                    cache_control: get("cache_control")
                        .filter(|v| v.get() != "null")
                        .map(|v| v.to_owned()),
                    extra: extra_of(&["type", "text", "cache_control"]),
                })),
                _ => return Err(de::Error::custom("text part without a string `text`")),
            },
            Some("image_url") if fields.len() == 2 => get("image_url").and_then(image_part),
            Some("file") if fields.len() == 2 => get("file").and_then(file_part),
            _ => None,
        };
        Ok(OPart(match block {
            Some(b) => b,
            None => ContentBlock::Unknown(UnknownBlock {
                dialect: Dialect::OpenAi,
                type_name: ty,
                raw: RawValue::from_string(object_text(
                    fields.iter().map(|(k, v)| (k.as_str(), *v)),
                ))
                .map_err(de::Error::custom)?,
            }),
        }))
    }
}

/// `{"url": ..., "detail"?: ...}`; anything else stays unknown.
fn image_part(raw: &RawValue) -> Option<ContentBlock> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ImageUrl {
        url: String,
        detail: Option<String>,
    }
    let iu: ImageUrl = serde_json::from_str(raw.get()).ok()?;
    if raw.get().contains("null") && iu.detail.is_none() {
        // `"detail": null` would not round-trip; keep such parts verbatim.
        let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
        if v.get("detail").is_some_and(serde_json::Value::is_null) {
            return None;
        }
    }
    let source = match parse_data_url(&iu.url) {
        Some((media_type, data)) => MediaSource::Base64 { media_type, data },
        None => MediaSource::Url(iu.url),
    };
    Some(ContentBlock::Image(ImageBlock {
        source,
        detail: iu.detail,
        cache_control: None,
        extra: Extra::new(),
    }))
}

/// `{"file_data": "data:...;base64,...", "filename"?: ...}` becomes a document.
fn file_part(raw: &RawValue) -> Option<ContentBlock> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        file_data: String,
        filename: Option<String>,
    }
    let f: File = serde_json::from_str(raw.get()).ok()?;
    let (media_type, data) = parse_data_url(&f.file_data)?;
    Some(ContentBlock::Document(DocumentBlock {
        source: MediaSource::Base64 { media_type, data },
        title: f.filename,
        cache_control: None,
        extra: Extra::new(),
    }))
}

pub use weir_model::parse_data_url;

fn data_url(media_type: &str, data: &str) -> String {
    let mut s = String::with_capacity(media_type.len() + data.len() + 13);
    s.push_str("data:");
    s.push_str(media_type);
    s.push_str(";base64,");
    s.push_str(data);
    s
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Serializes one part. `same` writes fields kept from an OpenAI source; `cache` a
/// text part's caching marker from another dialect.
pub(crate) struct PartOut<'a> {
    pub block: &'a ContentBlock,
    pub same: bool,
    pub cache: bool,
}

impl Serialize for PartOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        if let ContentBlock::Unknown(u) = self.block {
            if u.dialect == Dialect::OpenAi {
                return u.raw.serialize(s);
            }
        }
        let mut m = s.serialize_map(None)?;
        match self.block {
            ContentBlock::Text(t) => {
                m.serialize_entry("type", "text")?;
                m.serialize_entry("text", &t.text)?;
                if self.same || self.cache {
                    if let Some(c) = &t.cache_control {
                        m.serialize_entry("cache_control", c)?;
                    }
                }
                if self.same {
                    t.extra.serialize_into(&mut m, &[])?;
                }
            }
            ContentBlock::Image(i) => {
                let url = match &i.source {
                    MediaSource::Base64 { media_type, data } => data_url(media_type, data),
                    MediaSource::Url(u) => u.clone(),
                    MediaSource::Text { .. } => {
                        return Err(S::Error::custom("an image cannot have a text source"))
                    }
                };
                m.serialize_entry("type", "image_url")?;
                let mut inner = Extra::new();
                inner.insert("url", to_raw(&url));
                if let Some(d) = &i.detail {
                    inner.insert("detail", to_raw(d));
                }
                m.serialize_entry("image_url", &inner)?;
            }
            ContentBlock::Document(d) => match &d.source {
                MediaSource::Base64 { media_type, data } => {
                    m.serialize_entry("type", "file")?;
                    let mut inner = Extra::new();
                    inner.insert("file_data", to_raw(&data_url(media_type, data)));
                    let name = d
                        .title
                        .clone()
                        .unwrap_or_else(|| default_filename(media_type));
                    inner.insert("filename", to_raw(&name));
                    m.serialize_entry("file", &inner)?;
                }
                MediaSource::Text { data, .. } => {
                    m.serialize_entry("type", "text")?;
                    m.serialize_entry("text", data)?;
                }
                MediaSource::Url(_) => {
                    return Err(S::Error::custom(
                        "documents by URL cannot be sent to an OpenAI upstream",
                    ))
                }
            },
            other => {
                return Err(S::Error::custom(format_args!(
                    "content of type `{}` cannot be sent as an OpenAI content part",
                    other.type_name()
                )))
            }
        }
        m.end()
    }
}

fn default_filename(media_type: &str) -> String {
    match media_type {
        "application/pdf" => "document.pdf".to_owned(),
        "text/plain" => "document.txt".to_owned(),
        _ => "document".to_owned(),
    }
}

/// Serializes content in its recorded form where it fits: a string when it was a string
/// (or, translating, when it is plain text), else an array of parts.
pub(crate) struct ContentOut<'a> {
    pub blocks: &'a [&'a ContentBlock],
    pub form: ContentForm,
    pub same: bool,
    /// Text-only content goes as one string, its parts joined by newlines (for servers
    /// that refuse content arrays).
    pub join_text: bool,
    /// Translating, text parts keep their caching markers (and so stay parts).
    pub cache: bool,
}

impl Serialize for ContentOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.join_text && self.blocks.len() > 1 {
            // (A text document goes as a text part: it is joined too.)
            let texts: Option<Vec<std::borrow::Cow<'_, str>>> = self
                .blocks
                .iter()
                .map(|b| match b {
                    ContentBlock::Text(t) => Some(t.text.as_str()),
                    ContentBlock::Document(d) => match &d.source {
                        MediaSource::Text { data, .. } => Some(data.as_str().into()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            if let Some(texts) = texts {
                return s.serialize_str(&texts.join("\n"));
            }
        }
        let plain = match self.blocks {
            // (Translating, a part's cache_control and extra fields are not written,
            // unless the upstream takes the marker.)
            [ContentBlock::Text(t)]
                if (t.cache_control.is_none() && t.extra.is_empty())
                    || ((!self.same || self.join_text)
                        && !(self.cache && t.cache_control.is_some())) =>
            {
                Some(Some(&t.text))
            }
            [] if self.form == ContentForm::String => Some(None),
            _ => None,
        };
        let want_string = self.form == ContentForm::String || !self.same || self.join_text;
        match (plain, want_string) {
            (Some(Some(text)), true) => return text.serialize(s),
            (Some(None), true) => return s.serialize_str(""),
            _ => {}
        }
        if self.blocks.is_empty() && matches!(self.form, ContentForm::Null | ContentForm::Absent) {
            return s.serialize_unit();
        }
        let mut seq = s.serialize_seq(Some(self.blocks.len()))?;
        for b in self.blocks {
            seq.serialize_element(&PartOut {
                block: b,
                same: self.same,
                cache: self.cache,
            })?;
        }
        seq.end()
    }
}

/// The text and reasoning of a `content` field that is an array of parts, in order, each
/// piece with whether it is reasoning: `text` parts, and `thinking` parts (Mistral's
/// reasoning models: `{"type": "thinking", "thinking": [{"type": "text", "text": ...}]}`,
/// or a string). Other parts (images, references) have no text and are skipped. `None`
/// if `raw` is not an array of objects.
pub(crate) fn pieces_of_parts(raw: &RawValue) -> Option<Vec<(bool, JsonStr)>> {
    #[derive(Deserialize)]
    struct Part {
        #[serde(rename = "type")]
        ty: Option<String>,
        text: Option<JsonStr>,
        thinking: Option<Box<RawValue>>,
    }
    fn read(raw: &RawValue, thinking: bool, out: &mut Vec<(bool, JsonStr)>) -> Option<()> {
        if raw.get().starts_with('"') {
            out.push((thinking, JsonStr::from_raw_ref(raw)?));
            return Some(());
        }
        let parts: Vec<Part> = serde_json::from_str(raw.get()).ok()?;
        for p in parts {
            match (p.ty.as_deref(), p.text, p.thinking) {
                (Some("text"), Some(text), _) => out.push((thinking, text)),
                (Some("thinking"), _, Some(inner)) if !thinking => {
                    // (A part that cannot be read is skipped, not the whole content.)
                    let _ = read(&inner, true, out);
                }
                _ => {}
            }
        }
        Some(())
    }
    if !raw.get().starts_with('[') {
        return None;
    }
    let mut out = Vec::new();
    read(raw, false, &mut out)?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_split_into_media_type_and_data() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBORw0KGgo="),
            Some(("image/png".into(), "iVBORw0KGgo=".into()))
        );
        assert_eq!(parse_data_url("https://example.com/cat.png"), None);
        assert_eq!(parse_data_url("data:image/png,notbase64"), None);
        assert_eq!(
            parse_data_url("data:image/JPEG;charset=utf-8;base64,/9j/"),
            Some(("image/jpeg".to_owned(), "/9j/".to_owned()))
        );
        assert_eq!(parse_data_url("data:;base64,abc"), None);
        assert_eq!(
            parse_data_url("DATA:IMAGE/PNG;BASE64,iVBORw0KGgo="),
            Some(("image/png".into(), "iVBORw0KGgo=".into()))
        );
        // No media type: the data's own magic bytes tell it.
        for (data, media_type) in [
            ("iVBORw0KGgoAAAANSUhEUg==", "image/png"),
            ("/9j/4AAQSkZJRg==", "image/jpeg"),
            ("R0lGODlhAQABAA==", "image/gif"),
            ("JVBERi0xLjQK", "application/pdf"),
            ("UklGRiQAAABXRUJQVlA4IA==", "image/webp"),
        ] {
            assert_eq!(
                parse_data_url(&format!("data:;base64,{data}")),
                Some((media_type.into(), data.into())),
                "{data}"
            );
        }
        assert_eq!(parse_data_url("data:;base64,UklGRiQAAABXQVZF"), None);
        assert_eq!(parse_data_url("data:;base6,abc"), None);
        assert_eq!(parse_data_url("data:"), None);
        assert_eq!(
            parse_data_url("data:image/jpg;base64,/9j/"),
            Some(("image/jpeg".to_owned(), "/9j/".to_owned()))
        );
        assert_eq!(data_url("image/png", "abc"), "data:image/png;base64,abc");
    }
}
