//! The AWS Bedrock provider (`kind = "bedrock"`).
//!
//! Anthropic models (ids containing `anthropic.`, plus any listed in
//! [`BedrockConfig::anthropic_models`]) go through InvokeModel with the Anthropic Messages
//! body (`weir-anthropic`'s encoder, plus `anthropic_version` and the client's betas in
//! `anthropic_beta`), so Anthropic clients pass through losslessly, streamed events
//! included. Every other model goes through Converse, translated from and to the
//! canonical model. Requests are signed with SigV4 (`aws-sigv4`, service `bedrock`) or
//! carry a Bedrock API key; streams are AWS event streams (`aws-smithy-eventstream`).
//! Credentials come from the environment or the shared AWS files, read by a small loader
//! of our own (see [`credentials`]).
//!
//! The crate knows nothing of routing, of the server, or of the OpenAI dialect; it uses no
//! AWS SDK client crates (`aws-config`, `aws-sdk-*`).
//!
//! Not supported yet: credentials from IAM Identity Center (SSO), `credential_process`,
//! assumed roles and the EC2/ECS metadata endpoints; InvokeModel with the native bodies
//! of non-Anthropic models; in Converse, `top_k`, `parallel_tool_calls: false`, an
//! enforced `tool_choice: none`, images or documents by web URL (Bedrock takes bytes or
//! `s3://`), video, guardrails, citations (their text is kept) and server tools.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod credentials;
pub mod sigv4;

mod converse;
mod embed;
mod error;
mod eventstream;
mod invoke;
mod models;
mod provider;

pub use converse::{decode_converse_response, encode_converse, stop_reason, ConverseStream};
pub use credentials::{Auth, AwsCredentials, CredentialsError, CredentialsLoader};
pub use embed::{EmbedPlan, Family as EmbedFamily, COHERE_BATCH};
pub use error::{decode_error, stream_exception, THROTTLE_RETRY_AFTER};
pub use eventstream::{EventHandler, EventStreamBody};
pub use invoke::{betas_from_headers, encode_invoke_body, InvokeStream, BEDROCK_ANTHROPIC_VERSION};
pub use models::{base_model, capabilities, check_model_id, is_anthropic};
pub use provider::{BedrockConfig, BedrockProvider, CredentialSource};
