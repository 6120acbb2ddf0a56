//! Weir's canonical model: the request, response, content and stream-event types every
//! dialect decodes into and encodes from, the [`Provider`] trait, and the error types.
//!
//! This crate knows nothing about any wire format, HTTP client, socket or config file. It
//! holds data and contracts. Lossless same-dialect routing is possible because every
//! canonical object keeps the fields it does not model in an [`Extra`], and every stream
//! [`Frame`] keeps the upstream event it came from; see [`raw`] for the rules.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ceiling;
pub mod content;
pub mod embed;
pub mod error;
pub mod json_str;
pub mod json_writer;
pub mod provider;
pub mod raw;
pub mod request;
pub mod response;
pub mod responses;
pub mod secret;
pub mod stream;
pub mod web_search;
pub mod wire;

/// The attribute [`Provider`] is declared with: implement it as
/// `#[weir_model::async_trait] impl Provider for MyProvider { ... }`.
pub use async_trait::async_trait;
pub use ceiling::{output_ceiling, OutputCeiling};
pub use content::{
    inline_data_url, parse_data_url, Content, ContentBlock, ContentForm, DocumentBlock, ImageBlock,
    MediaSource, Message, RedactedThinkingBlock, Role, TextBlock, ThinkingBlock, ToolInput,
    ToolResultBlock, ToolUseBlock, UnknownBlock,
};
pub use embed::{EmbedInput, EmbedRequest, EmbedResponse, EmbedTexts};
pub use error::{ApiError, ErrorKind, ProviderError, WireError};
pub use json_str::JsonStr;
pub use provider::{
    Attempted, CallContext, Capabilities, EventStream, KeyReport, Progress, Provider, Reply,
};
pub use raw::{Dialect, Extra, Key, RawJson};
pub use request::{
    ChatRequest, FunctionTool, MaxTokensField, Metadata, OutputFormat, StopSequences,
    ThinkingConfig, ThreadUse, Tool, ToolChoice, IMAGE_TOKENS,
};
pub use response::{generated_id, ChatResponse, StopReason, Usage};
pub use responses::{ByteStream, ResponsesReply, ResponsesRequest};
pub use secret::Secret;
pub use stream::{Delta, Frame, SourceEvent, StreamEvent};

/// `s` fit for a text log line: control characters (newlines, ESC) escaped, so a value a
/// client chose (a model name a glob route forwards) cannot forge or colour log lines.
pub fn log_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod log_safe_tests {
    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(super::log_safe("claude-é"), "claude-é");
        assert_eq!(
            super::log_safe("a\nFAKE INFO\u{1b}[31m"),
            "a\\nFAKE INFO\\u{1b}[31m"
        );
    }
}
