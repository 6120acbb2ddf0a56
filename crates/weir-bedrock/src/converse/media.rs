//! Images and documents for Converse: formats, sources (bytes or S3, never a web URL)
//! and document names.

use weir_model::json_writer::JsonWriter;
use weir_model::{ContentBlock, DocumentBlock, ImageBlock, MediaSource};

/// Document names must be unique and made of letters, digits, single spaces, hyphens,
/// parentheses and square brackets.
pub(super) struct Names(pub(super) Vec<String>);

impl Names {
    /// A unique, valid name for a document with this title.
    pub(super) fn name(&mut self, title: Option<&str>) -> String {
        let mut clean = String::new();
        for c in title.unwrap_or("").chars() {
            let c = if c.is_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
                c
            } else {
                ' '
            };
            if c != ' ' || !clean.ends_with(' ') {
                clean.push(c);
            }
        }
        let clean: String = clean.trim().chars().take(100).collect();
        let base = if clean.is_empty() {
            format!("Document {}", self.0.len() + 1)
        } else {
            clean
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.0.contains(&name) {
            name = format!("{base} ({n})");
            n += 1;
        }
        self.0.push(name.clone());
        name
    }
}

fn image_format(media_type: &str) -> Option<&'static str> {
    Some(match media_type.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return None,
    })
}

fn document_format(media_type: &str) -> Option<&'static str> {
    Some(match media_type.to_ascii_lowercase().as_str() {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" => "md",
        _ => return None,
    })
}

/// `data:<type>;base64,<data>` split, for URL sources that are really inline.
fn data_url(url: &str) -> Option<(&str, &str)> {
    weir_model::inline_data_url(url)
}

/// `"source":{...}` of an image or document: inline bytes, or an S3 object. Bedrock
/// fetches nothing from the web: an http(s) URL is refused.
fn source(w: &mut JsonWriter, src: &MediaSource, what: &str) -> Result<(), String> {
    w.key("source");
    w.begin_object();
    match src {
        MediaSource::Base64 { data, .. } => {
            w.key("bytes");
            w.string(data);
        }
        MediaSource::Text { data, .. } => {
            w.key("bytes");
            w.string(&aws_smithy_types::base64::encode(data.as_bytes()));
        }
        MediaSource::Url(url) => {
            if let Some((_, data)) = data_url(url) {
                w.key("bytes");
                w.string(data);
            } else if url.starts_with("s3://") {
                w.key("s3Location");
                w.begin_object();
                w.key("uri");
                w.string(url);
                w.end_object();
            } else {
                return Err(format!(
                    "Bedrock needs the {what}'s bytes (or an s3:// URL); it cannot fetch {what}s by URL"
                ));
            }
        }
    }
    w.end_object();
    Ok(())
}

fn media_type(src: &MediaSource) -> Option<&str> {
    match src {
        MediaSource::Base64 { media_type, .. } | MediaSource::Text { media_type, .. } => {
            Some(media_type)
        }
        MediaSource::Url(url) => data_url(url).map(|(t, _)| t),
    }
}

fn image_format_of(img: &ImageBlock) -> Result<&'static str, String> {
    Ok(match &img.source {
        MediaSource::Url(url) if url.starts_with("s3://") => url
            .rsplit('.')
            .next()
            .and_then(|ext| image_format(&format!("image/{ext}")))
            .ok_or("the image's format cannot be told from its s3:// URL")?,
        src => {
            let t = media_type(src).unwrap_or("");
            match image_format(t) {
                Some(f) => f,
                None if matches!(src, MediaSource::Url(_)) => "png",
                None => {
                    return Err(format!(
                        "Bedrock takes png, jpeg, gif and webp images, not {t:?}"
                    ))
                }
            }
        }
    })
}

pub(super) fn image(w: &mut JsonWriter, img: &ImageBlock) -> Result<(), String> {
    let format = image_format_of(img)?;
    w.begin_object();
    w.key("image");
    w.begin_object();
    w.key("format");
    w.string(format);
    source(w, &img.source, "image")?;
    w.end_object();
    w.end_object();
    Ok(())
}

fn document_format_of(doc: &DocumentBlock) -> Result<&'static str, String> {
    Ok(match &doc.source {
        MediaSource::Text { media_type, .. } => document_format(media_type).unwrap_or("txt"),
        MediaSource::Url(url) if url.starts_with("s3://") => url
            .rsplit('.')
            .next()
            .and_then(|ext| {
                [
                    "pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md",
                ]
                .into_iter()
                .find(|f| f.eq_ignore_ascii_case(ext))
            })
            .ok_or("the document's format cannot be told from its s3:// URL")?,
        src => {
            let t = media_type(src).unwrap_or("");
            document_format(t).ok_or_else(|| {
                format!(
                    "Bedrock takes pdf, csv, doc(x), xls(x), html, txt and md documents, not {t:?}"
                )
            })?
        }
    })
}

pub(super) fn document(w: &mut JsonWriter, doc: &DocumentBlock, name: &str) -> Result<(), String> {
    let format = document_format_of(doc)?;
    w.begin_object();
    w.key("document");
    w.begin_object();
    w.key("format");
    w.string(format);
    w.key("name");
    w.string(name);
    source(w, &doc.source, "document")?;
    w.end_object();
    w.end_object();
    Ok(())
}

/// Checks that an image or document (or those inside a tool result) can be written, so
/// the error names the client's message.
pub(super) fn check_media(b: &ContentBlock) -> Result<(), String> {
    let mut scratch = JsonWriter::with_capacity(0);
    match b {
        ContentBlock::Image(i) if matches!(i.source, MediaSource::Url(_)) => image(&mut scratch, i),
        ContentBlock::Image(i) => image_format_of(i).map(|_| ()),
        ContentBlock::Document(d) => document_format_of(d).and_then(|_| match &d.source {
            MediaSource::Url(_) => document(&mut scratch, d, ""),
            _ => Ok(()),
        }),
        ContentBlock::ToolResult(r) => r.content.blocks.iter().try_for_each(check_media),
        _ => Ok(()),
    }
}
