//! The Google Vertex AI provider (`kind = "vertex"`): Claude models through Anthropic's
//! publisher (`rawPredict` / `streamRawPredict`, the Anthropic Messages codec of
//! `weir-anthropic`), Gemini models through Google's (`generateContent` /
//! `streamGenerateContent?alt=sse`, the codec of `weir-gemini`), authenticated with Google
//! OAuth access tokens (`gcp_auth`).
//!
//! It knows the Vertex envelope (URLs, `anthropic_version`, bearer tokens, Google's error
//! shapes) and nothing of routing, the server, config files or the wire formats
//! themselves, which belong to the dialect crates.
//!
//! # Decisions
//!
//! - **Which publisher.** A model whose name starts with `claude` is Anthropic's
//!   (`claude-sonnet-4-5@20250929`); every other model is Google's. The model id is one
//!   path segment, percent-encoded if it holds anything but letters, digits and `-._~@`.
//! - **Endpoints.** `base_url` defaults to `https://{region}-aiplatform.googleapis.com`
//!   (`https://aiplatform.googleapis.com` for `global`); the path is always
//!   `/v1/projects/{project}/locations/{region}/publishers/{anthropic|google}/models/{model}:{method}`.
//!   `project` and `region` are checked at construction so they cannot alter the path.
//! - **Claude bodies** are `weir-anthropic`'s encoding without `model` and with `stream`
//!   kept, plus `"anthropic_version":"vertex-2023-10-16"` written first; the rest of the
//!   body is the encoder's bytes, so an Anthropic client's request passes losslessly. A
//!   client's own `anthropic_version` field is replaced. The client's `anthropic-beta`
//!   headers are forwarded as headers; `anthropic-version` is not (the body carries it).
//!   Responses and streams go through `weir-anthropic`'s decoders, so stream frames carry
//!   the source events.
//! - **Gemini bodies** are `weir-gemini`'s encoding, sent to `:generateContent` or
//!   `:streamGenerateContent?alt=sse`, with `functionCall.id` / `functionResponse.id`
//!   always left out: Vertex refuses them (`Unknown name "id"`), unlike the Gemini API.
//!   Tool calls still get ids on the way back (the codec synthesizes them), and results
//!   are matched to calls by the codec before encoding.
//! - **Tokens** come from a [`TokenSource`]. [`GoogleTokens`] (production) finds
//!   credentials lazily, at the first request: `GOOGLE_APPLICATION_CREDENTIALS` (a
//!   service account key file), the file `gcloud auth application-default login` writes,
//!   the metadata server, then the `gcloud` CLI. Construction never blocks or fails for
//!   want of credentials (a gateway must start, and serve its other providers, on a
//!   machine without them); requests then fail with an authentication error that names
//!   `GOOGLE_APPLICATION_CREDENTIALS` and `gcloud auth application-default login`. Tokens
//!   are cached and replaced [`REFRESH_MARGIN`] (3 min 45 s) before they expire, one
//!   refresh at a time; failures are held for [`FAILURE_HOLD`] so a missing credential
//!   does not start a discovery per request.
//! - **401.** A 401 from Vertex invalidates the token that was refused
//!   ([`TokenSource::invalidate`] compares, so concurrent 401s on one stale token cause
//!   one fetch) and the request is sent once more with a new token. A second 401, or a
//!   source with no other token to give ([`StaticToken`]), is an
//!   [`ErrorKind::Authentication`](weir_model::ErrorKind) error: never a loop.
//! - **Errors.** Google's shape (`{"error":{"code","message","status"}}`, also wrapped in
//!   an array) maps by `status` ([`kind_of_status`]), else by HTTP status; a
//!   `google.rpc.RetryInfo` detail gives the wait when no `retry-after` header does.
//!   Anthropic-shaped errors (`{"type":"error",...}`) go to `weir-anthropic`'s decoder.
//!   The token is scrubbed from every error message; `Debug` never prints it.
//! - **Token counting.** Claude: `publishers/anthropic/models/count-tokens:rawPredict`
//!   with the model in the body (as Anthropic's SDKs do), no `max_tokens`, no `stream`.
//!   Gemini: the model's `:countTokens` with the body's `contents`, `systemInstruction`,
//!   `tools` and `generationConfig` (Vertex's `CountTokensRequest` has no `toolConfig`
//!   or `safetySettings`). The circuit breaker's probe stays the default one-token
//!   request: it proves the model answers, which a counter, a separate endpoint, does not.
//!
//! # Not supported
//!
//! Models of other publishers (Llama, Mistral: `endpoints/openapi`), quota projects
//! (`x-goog-user-project`), Vertex API keys (express mode), provisioned-throughput
//! headers, batch prediction, and Gemini context caching (`cachedContent`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod embed;
mod error;
mod gemini;
mod provider;
mod tokens;

pub use embed::PREDICT_BATCH;
pub use error::{decode_error, kind_of_status};
pub use provider::{default_base_url, is_claude, VertexConfig, VertexProvider, ANTHROPIC_VERSION};
pub use tokens::{
    FnTokenSource, GoogleTokens, StaticToken, TokenSource, FAILURE_HOLD, REFRESH_MARGIN, SCOPE,
};
