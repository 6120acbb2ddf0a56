//! The Anthropic Messages dialect: decoding and encoding requests, responses, streams and
//! errors between Anthropic's wire format and Weir's canonical model, in all four
//! directions (client request in, upstream request out, upstream response in, client
//! response out).
//!
//! Anthropic to Anthropic is lossless: unknown fields, block types, events and
//! `cache_control` survive decoding and encoding. Requests from other dialects are reshaped
//! to Anthropic's rules (see [`encode_request`]).
//!
//! The codec knows nothing about HTTP, sockets, routing or other dialects' wire formats;
//! the `provider` feature (default) adds the HTTP provider on top of `weir-upstream`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blocks;
mod encode;
mod error;
mod ids;
#[cfg(feature = "provider")]
mod provider;
mod request;
mod response;
mod schema;
mod stream;
mod write;

pub use encode::{
    claude_at_least, default_max_tokens, effort_level, encode_request, sampling_refused,
    thinking_form, EncodeOptions, ThinkingForm,
};
pub use error::{decode_error, encode_error, error_status};
pub use ids::sanitize_tool_id;
#[cfg(feature = "provider")]
pub use provider::{AnthropicConfig, AnthropicProvider, DEFAULT_BASE_URL, DEFAULT_VERSION};
pub use request::decode_request;
pub use response::{decode_response, decode_response_summary, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};
