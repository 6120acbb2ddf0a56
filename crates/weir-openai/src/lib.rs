//! The OpenAI Chat Completions dialect: decoding and encoding requests, responses,
//! streams and errors between OpenAI's wire format and Weir's canonical model, in all four
//! directions.
//!
//! OpenAI to OpenAI is lossless: unknown fields, parts and chunks survive. Requests from
//! other dialects are reshaped to OpenAI's rules (see [`encode_request`]); streams are
//! re-framed by small state machines ([`StreamDecoder`], [`StreamEncoder`]).
//!
//! The codec knows nothing about HTTP, sockets, routing or other dialects' wire formats;
//! the `provider` feature (default) adds the HTTP provider on top of `weir-upstream`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod args_check;
pub mod bridge;
#[cfg(feature = "provider")]
mod bridge_provider;
mod error;
mod parts;
#[cfg(feature = "provider")]
mod provider;
mod request;
mod response;
mod stream;

#[cfg(feature = "provider")]
pub use bridge_provider::ResponsesBridge;
pub use error::{decode_error, encode_error, error_status};
pub use parts::parse_data_url;
#[cfg(feature = "provider")]
mod preset;
#[cfg(feature = "provider")]
pub use preset::{is_google_openai, Preset, PRESETS};
#[cfg(feature = "provider")]
pub use provider::{Flavor, OpenAiConfig, OpenAiProvider, AZURE_API_VERSION, DEFAULT_BASE_URL};
pub use request::{decode_request, encode_request, EncodeOptions};
pub use response::{decode_response, decode_response_summary, encode_response};
pub use stream::{is_usage_only_chunk, StreamDecoder, StreamEncodeOptions, StreamEncoder};

/// The prefix of a canonical thinking signature that is an upstream's `reasoning_details`
/// (OpenRouter: reasoning signatures, encrypted reasoning) as JSON: a client of another
/// dialect keeps it with the thinking block and sends it back, and it goes back to the
/// upstream as the assistant message's `reasoning_details`
/// ([`EncodeOptions::reasoning_details_in_history`]).
pub const REASONING_DETAILS_SIGNATURE: &str = weir_model::content::CARRIED_SIGNATURE_PREFIXES[2];

/// DeepSeek's `finish_reason` for an answer cut short because the service ran out of
/// capacity.
pub(crate) const OUT_OF_CAPACITY: &str = "insufficient_system_resource";

/// OpenRouter's (and Mistral's) `finish_reason` for an answer its provider failed
/// mid-way, with an `error` object on the choice.
pub(crate) const FAILED_MID_ANSWER: &str = "error";

/// Z.AI's `finish_reason` for an answer cut by a failure on its side.
pub(crate) const NETWORK_ERROR: &str = "network_error";

/// Whether a stop reason says the upstream cut the answer short: for lack of capacity
/// (reported as overloaded), or failing (OpenRouter's `error`), which clients and the
/// router retry (as a stop, an agent would carry on from half an answer).
pub(crate) fn cut_short(stop: &Option<weir_model::StopReason>) -> bool {
    matches!(stop, Some(weir_model::StopReason::Other(s)) if failed(s))
}

/// Whether a `finish_reason` says the answer was cut short ([`cut_short`]).
pub(crate) fn failed(reason: &str) -> bool {
    matches!(reason, OUT_OF_CAPACITY | FAILED_MID_ANSWER | NETWORK_ERROR)
}

/// The error a client gets for an answer [`cut_short`] with `reason`, given the choice's
/// `error` object, if any.
pub(crate) fn cut_short_error(
    reason: &str,
    choice_error: Option<&serde_json::value::RawValue>,
) -> weir_model::ApiError {
    if reason == OUT_OF_CAPACITY {
        return out_of_capacity();
    }
    let said = choice_error
        .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).ok())
        .filter(|v| v.is_object() || v.is_string())
        .map(|v| error::api_error_from_value(None, &v));
    let mut e = said.unwrap_or_else(|| {
        weir_model::ApiError::new(weir_model::ErrorKind::Upstream, String::new())
    });
    // The answer was under way: the upstream failed, whatever the choice's code says
    // (but for a rate or overload, which clients wait on); never the client's fault or key.
    use weir_model::ErrorKind::{Overloaded, RateLimited, Timeout};
    if !matches!(e.kind, RateLimited | Overloaded | Timeout) {
        e.kind = weir_model::ErrorKind::Upstream;
        e.status = 502;
    }
    e.message = if e.message.is_empty() {
        format!("the upstream failed mid-answer (finish_reason {reason})")
    } else {
        format!(
            "the upstream failed mid-answer (finish_reason {reason}): {}",
            e.message
        )
    };
    e
}

/// The error a client gets for an answer [`cut_short`].
pub(crate) fn out_of_capacity() -> weir_model::ApiError {
    weir_model::ApiError::new(
        weir_model::ErrorKind::Overloaded,
        "the upstream ran out of capacity mid-answer (finish_reason insufficient_system_resource); retry",
    )
}
