//! InvokeModel for Anthropic models: the Anthropic Messages body in Bedrock's envelope,
//! and InvokeModelWithResponseStream chunks turned back into the Anthropic SSE events
//! they carry, so Anthropic clients receive the original events.

use std::borrow::Cow;

use http::HeaderMap;
use serde::Deserialize;
use weir_anthropic::{encode_request, EncodeOptions, StreamDecoder};
use weir_model::{ChatRequest, Frame, ProviderError, WireError};
use weir_upstream::decode_error as stream_decode_error;

use crate::eventstream::EventHandler;

/// The `anthropic_version` Bedrock requires in the body.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// The `anthropic-beta` values of the client's headers (comma-separated, possibly over
/// several header lines), in order, without duplicates.
pub fn betas_from_headers(headers: &HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in headers.get_all("anthropic-beta") {
        let Ok(v) = v.to_str() else { continue };
        for b in v.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            if !out.iter().any(|o| o == b) {
                out.push(b.to_owned());
            }
        }
    }
    out
}

/// Claude on Bedrock takes images and documents as bytes only (no `url` source, which
/// Anthropic's own API fetches): a request that links one is refused before the call,
/// naming the message, so the router passes the target over to one that can fetch it.
fn refuse_fetched_media(req: &ChatRequest) -> Result<(), WireError> {
    use weir_model::{ContentBlock, MediaSource};
    fn fetched(b: &ContentBlock) -> bool {
        match b {
            ContentBlock::Image(i) => {
                matches!(&i.source, MediaSource::Url(u) if !u.starts_with("data:"))
            }
            ContentBlock::Document(d) => {
                matches!(&d.source, MediaSource::Url(u) if !u.starts_with("data:"))
            }
            ContentBlock::ToolResult(r) => r.content.blocks.iter().any(fetched),
            _ => false,
        }
    }
    match req
        .messages
        .iter()
        .position(|m| m.content.blocks.iter().any(fetched))
    {
        Some(i) => Err(WireError::Unsupported(format!(
            "messages[{i}]: Claude on Bedrock takes images and documents as bytes (base64); it cannot fetch them by URL"
        ))),
        None => Ok(()),
    }
}

/// Encodes an InvokeModel body: the Anthropic Messages encoding of `req` (as
/// `weir-anthropic` writes it for Anthropic's own API, so Anthropic clients' requests
/// pass unchanged) without `model` and `stream`, with `anthropic_version` first and the
/// client's betas in `anthropic_beta` (joined to any the body already had). Betas named
/// in `drop_betas` are left out (Bedrock answers 400 "invalid beta flag" to betas it does
/// not serve).
pub fn encode_invoke_body(
    req: &mut ChatRequest,
    opts: &EncodeOptions,
    header_betas: &[String],
    drop_betas: &[String],
) -> Result<Vec<u8>, WireError> {
    let opts = EncodeOptions {
        omit_model: true,
        omit_stream: true,
        // (Bedrock has no Anthropic web search: `web_search_options` stays refused.)
        web_search: false,
        ..opts.clone()
    };
    // A body that already carries these (a client of Bedrock's own shape) keeps its
    // version; its betas are joined with the header's.
    let own_version = req.extra.remove("anthropic_version");
    let mut betas: Vec<String> = match req.extra.remove("anthropic_beta") {
        Some(raw) => serde_json::from_str::<Vec<String>>(raw.get()).map_err(|_| {
            WireError::Malformed("anthropic_beta is not an array of strings".to_owned())
        })?,
        None => Vec::new(),
    };
    for b in header_betas {
        if !betas.contains(b) {
            betas.push(b.clone());
        }
    }
    betas.retain(|b| !drop_betas.contains(b));
    refuse_fetched_media(req)?;
    if req.origin == Some(weir_model::Dialect::OpenAi) {
        // (Named for Bedrock: the encoder below would say Anthropic.)
        req.check_translatable("Bedrock")?;
    }
    let body = encode_request(req, &opts)?;
    let Some(rest) = body.strip_prefix(b"{") else {
        return Err(WireError::Malformed(
            "the encoded body is not an object".to_owned(),
        ));
    };
    let mut out = Vec::with_capacity(body.len() + 64 + betas.len() * 32);
    out.extend_from_slice(b"{\"anthropic_version\":");
    match &own_version {
        Some(v) => out.extend_from_slice(v.get().as_bytes()),
        None => {
            out.push(b'"');
            out.extend_from_slice(BEDROCK_ANTHROPIC_VERSION.as_bytes());
            out.push(b'"');
        }
    }
    if !betas.is_empty() {
        out.extend_from_slice(b",\"anthropic_beta\":");
        out.extend_from_slice(
            serde_json::to_string(&betas)
                .map_err(|e| WireError::Malformed(e.to_string()))?
                .as_bytes(),
        );
    }
    if !rest.starts_with(b"}") {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// Decodes InvokeModelWithResponseStream events: each `chunk` holds
/// `{"bytes": base64(Anthropic stream event JSON), "p": padding}`; the event is rebuilt as
/// the SSE event Anthropic would have sent (its `type` as the event name) and decoded by
/// `weir-anthropic`, so the frame's source is the original event.
#[derive(Debug, Default)]
pub struct InvokeStream {
    anthropic: StreamDecoder,
}

impl InvokeStream {
    /// A decoder for one stream.
    pub fn new() -> Self {
        InvokeStream::default()
    }
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    bytes: Cow<'a, str>,
}

#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
}

/// The `type` of an Anthropic event: read off the prefix Anthropic always writes, else
/// parsed.
fn event_type(json: &str) -> Result<String, WireError> {
    if let Some(rest) = json.strip_prefix("{\"type\":\"") {
        if let Some(end) = rest.find('"') {
            let t = &rest[..end];
            if !t.contains('\\') {
                return Ok(t.to_owned());
            }
        }
    }
    let t: TypeOnly<'_> =
        serde_json::from_str(json).map_err(|e| WireError::from_json("chunk", &e))?;
    t.ty.map(Cow::into_owned)
        .ok_or_else(|| WireError::Malformed("chunk event without a type".to_owned()))
}

impl InvokeStream {
    /// Decodes one `chunk` payload into a frame.
    pub fn chunk(&mut self, payload: &[u8]) -> Result<Frame, WireError> {
        let text = weir_model::wire::utf8("chunk", payload)?;
        let c: Chunk<'_> =
            serde_json::from_str(text).map_err(|e| WireError::from_json("chunk", &e))?;
        let bytes = aws_smithy_types::base64::decode(c.bytes.as_ref())
            .map_err(|e| WireError::Malformed(format!("chunk bytes are not base64: {e}")))?;
        let json = String::from_utf8(bytes)
            .map_err(|_| WireError::Malformed("chunk bytes are not UTF-8".to_owned()))?;
        let ty = event_type(&json)?;
        self.anthropic
            .decode(weir_sse::Event::new(json).with_event(ty))
    }
}

impl EventHandler for InvokeStream {
    fn event(
        &mut self,
        event_type: &str,
        payload: &[u8],
        out: &mut Vec<Frame>,
    ) -> Result<(), ProviderError> {
        match event_type {
            "chunk" => {
                out.push(self.chunk(payload).map_err(stream_decode_error)?);
                Ok(())
            }
            other => {
                tracing::debug!(event_type = other, "ignoring an InvokeModel stream event");
                Ok(())
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), ProviderError> {
        if let Some(f) = self.anthropic.finish().map_err(stream_decode_error)? {
            out.push(f);
        }
        Ok(())
    }
}

/// An InvokeModel error for a request that could not be encoded.
pub(crate) fn encode_error(e: &WireError) -> ProviderError {
    ProviderError::unexpressible(e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use weir_model::{Delta, StreamEvent};

    fn anthropic_request(body: &str) -> ChatRequest {
        weir_anthropic::decode_request(body.as_bytes()).unwrap()
    }

    #[test]
    fn invoke_body_has_the_bedrock_envelope_and_nothing_else_changes() {
        let mut req = anthropic_request(
            r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled","budget_tokens":1024},"context_management":{"edits":[]},"metadata":{"user_id":"u1"}}"#,
        );
        let mut h = HeaderMap::new();
        h.append(
            "anthropic-beta",
            "interleaved-thinking-2025-05-14, context-management-2025-06-27"
                .parse()
                .unwrap(),
        );
        h.append(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14"
                .parse()
                .unwrap(),
        );
        let betas = betas_from_headers(&h);
        let body = encode_invoke_body(
            &mut req,
            &EncodeOptions::default(),
            &betas,
            &["claude-code-20250219".to_owned()],
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["interleaved-thinking-2025-05-14","context-management-2025-06-27"],"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"Hi"}],"max_tokens":64,"thinking":{"type":"enabled","budget_tokens":1024},"metadata":{"user_id":"u1"},"context_management":{"edits":[]}}"#
        );
    }

    #[test]
    fn body_betas_and_version_are_kept_and_joined() {
        let mut req = anthropic_request(
            r#"{"model":"m","anthropic_version":"bedrock-2023-05-31","anthropic_beta":["a"],"max_tokens":8,"messages":[{"role":"user","content":"Hi"}]}"#,
        );
        let body = encode_invoke_body(
            &mut req,
            &EncodeOptions::default(),
            &["b".to_owned(), "a".to_owned()],
            &[],
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["a","b"],"messages":[{"role":"user","content":"Hi"}],"max_tokens":8}"#
        );
        // No betas at all: no field.
        let mut req = anthropic_request(
            r#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"Hi"}]}"#,
        );
        let body = encode_invoke_body(&mut req, &EncodeOptions::default(), &[], &[]).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"Hi"}],"max_tokens":8}"#
        );
    }

    #[test]
    fn a_translated_request_linking_an_image_is_refused_by_message() {
        use weir_model::{Content, ContentBlock, ImageBlock, MediaSource, Message, Role};
        let image = |src: MediaSource| {
            ContentBlock::Image(ImageBlock {
                source: src,
                detail: None,
                cache_control: None,
                extra: Default::default(),
            })
        };
        let mut req = ChatRequest {
            model: "anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
            origin: Some(weir_model::Dialect::OpenAi),
            messages: vec![Message {
                role: Role::User,
                content: Content::blocks(vec![image(MediaSource::Url(
                    "https://example.com/cat.png".into(),
                ))]),
                extra: Default::default(),
            }],
            ..Default::default()
        };
        let e = encode_invoke_body(&mut req, &EncodeOptions::default(), &[], &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("messages[0]: Claude on Bedrock takes images"),
            "{e}"
        );
        // Bytes go.
        req.messages[0].content = Content::blocks(vec![image(MediaSource::Base64 {
            media_type: "image/png".into(),
            data: "iVBORw0KGgo=".into(),
        })]);
        assert!(encode_invoke_body(&mut req, &EncodeOptions::default(), &[], &[]).is_ok());
    }

    #[test]
    fn chunks_become_the_original_anthropic_events() {
        let json =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        let payload = format!(
            r#"{{"bytes":"{}","p":"abcdefgh"}}"#,
            aws_smithy_types::base64::encode(json)
        );
        let f = InvokeStream::new().chunk(payload.as_bytes()).unwrap();
        let src = f.source.unwrap();
        assert_eq!(src.dialect, weir_model::Dialect::Anthropic);
        assert_eq!(src.event.event(), Some("content_block_delta"));
        assert_eq!(src.event.data(), json);
        assert!(
            matches!(&f.events[..], [StreamEvent::BlockDelta { index: 0, delta: Delta::Text(t) }] if t == "Hi")
        );
        let e = InvokeStream::new().chunk(br#"{"bytes":"!!"}"#).unwrap_err();
        assert!(e.to_string().contains("base64"), "{e}");
    }
}
