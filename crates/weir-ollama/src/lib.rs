//! Ollama's native chat API (`POST /api/chat`): requests, whole answers, NDJSON streams
//! (errors included) and error bodies, translated to and from Weir's canonical model, and
//! the `kind = "ollama"` provider.
//!
//! Ollama's OpenAI- and Anthropic-compatible endpoints (`/v1/chat/completions`,
//! `/v1/messages`) need nothing of this crate: use `kind = "openai"` with `base_url =
//! "http://localhost:11434/v1"` or `kind = "anthropic"` with `base_url =
//! "http://localhost:11434"`.
//!
//! Mapping decisions:
//! - Ollama's tool calls carry no id (recent versions may send one, which is kept); Weir
//!   gives each a random `call_…` id, and a tool result finds its tool's name (Ollama's
//!   `tool_name`) by that id in the conversation.
//! - Images travel as base64 (`images`); image URLs and documents are not accepted by
//!   Ollama and are refused with a clear error (the router's capabilities skip such
//!   targets first).
//! - `tool_choice` has no Ollama equivalent: `none` sends no tools, a named tool is the
//!   only tool sent, and `required` sends the tools as they are (neither is enforced).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod provider;

pub use codec::{decode_error, decode_response, encode_request, NdjsonDecoder};
pub use provider::{OllamaConfig, OllamaProvider, DEFAULT_BASE_URL};
