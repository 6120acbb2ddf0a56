//! The built-in `mock` provider (config `kind = "mock"`): answers chat requests on its own,
//! with no credentials and no network, so the gateway can be tried, demoed and tested
//! offline. It echoes the user, calls the tools the user names (several at once, for
//! parallel tool-call demos), summarizes tool results it is sent back, honours
//! `max_tokens` and stop sequences, streams word by word at a configurable pace, and fails
//! on request through markers in the user's text (`[mock:error:529]`,
//! `[mock:error-after-first:500]`). The same request always gets the same answer, ids
//! included. Embeddings are unit vectors derived from each input's text (8 dimensions
//! unless `dimensions` asks otherwise). The Responses API gets the last user text echoed
//! as one message (no tool calls), whole or streamed with OpenAI's events.
//!
//! It knows nothing about wire formats, HTTP, routing or configuration files: it sees only
//! canonical [`ChatRequest`]s and produces canonical replies and frames, exactly in the
//! order an Anthropic stream would carry them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod args;
mod embed;
mod plan;
mod responses;
mod stream;

use std::time::Duration;

use weir_model::{
    CallContext, Capabilities, ChatRequest, EmbedRequest, EmbedResponse, Provider, ProviderError,
    Reply,
};

use crate::plan::Plan;

/// How a [`MockProvider`] behaves.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Pause before each streamed chunk (each word of text, each fragment of tool
    /// arguments). Zero streams as fast as the consumer reads. Default 20 ms.
    pub stream_delay: Duration,
    /// The model names the provider lists. Requests for other names are answered too (the
    /// answer echoes the requested name). Default `["mock"]`.
    pub models: Vec<String>,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            stream_delay: Duration::from_millis(20),
            models: vec!["mock".to_owned()],
        }
    }
}

/// The mock provider. See the crate documentation for what it answers.
#[derive(Clone, Debug)]
pub struct MockProvider {
    id: String,
    opts: MockOptions,
}

impl MockProvider {
    /// A mock provider named `id` (its config table name).
    pub fn new(id: impl Into<String>, opts: MockOptions) -> Self {
        MockProvider {
            id: id.into(),
            opts,
        }
    }

    /// The model names the provider lists.
    pub fn models(&self) -> &[String] {
        &self.opts.models
    }
}

#[async_trait::async_trait]
impl Provider for MockProvider {
    fn id(&self) -> &str {
        &self.id
    }

    /// Everything is supported; the mock speaks no native dialect.
    fn capabilities(&self, _model: &str) -> Capabilities {
        // It keeps no conversations.
        Capabilities {
            threads: false,
            ..Capabilities::ALL
        }
    }

    async fn send(&self, req: &ChatRequest, _cx: CallContext) -> Result<Reply, ProviderError> {
        let (answer, fail_after_first) = match plan::plan(req) {
            Plan::Fail(e) => return Err(e),
            Plan::Answer {
                answer,
                fail_after_first,
            } => (answer, fail_after_first),
        };
        if req.is_stream() {
            Ok(Reply::Stream(stream::event_stream(
                answer,
                fail_after_first,
                self.opts.stream_delay,
            )))
        } else if let Some(e) = fail_after_first {
            // Without a stream, failing after the first chunk is simply failing.
            Err(e)
        } else {
            Ok(Reply::Complete(Box::new(answer.to_response())))
        }
    }

    fn serves_embeddings(&self) -> bool {
        true
    }

    fn serves_responses(&self) -> bool {
        true
    }

    /// The last user text echoed, whole or streamed with OpenAI's events.
    async fn responses(
        &self,
        req: &weir_model::ResponsesRequest,
        _cx: CallContext,
    ) -> Result<weir_model::ResponsesReply, ProviderError> {
        responses::respond(req, self.opts.stream_delay)
    }

    /// Deterministic unit vectors (see the crate docs).
    async fn embed(
        &self,
        req: &EmbedRequest,
        _cx: CallContext,
    ) -> Result<EmbedResponse, ProviderError> {
        embed::embed(req)
    }
}
